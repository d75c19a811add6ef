"""Served the way the course's first deployment is: `python serve_flow.py`
registers `served/here` and runs its runs in this process's children until
it is stopped (SIGTERM pauses the deployment, as Prefect's runner does)."""

from prefect import flow


@flow(name="served", log_prints=True)
def served(x: int = 1) -> int:
    print(f"served {3 * x}")
    return 3 * x


if __name__ == "__main__":
    served.serve(name="here")
