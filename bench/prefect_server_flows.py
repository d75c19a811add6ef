"""The flow Prefect's process worker runs in bench/server.py."""
from prefect import flow


@flow
def noop_flow():
    return 1


if __name__ == "__main__":
    import sys

    source, pool = sys.argv[1], sys.argv[2]
    noop_flow.from_source(source=source, entrypoint="prefect_server_flows.py:noop_flow").deploy(
        name="lat", work_pool_name=pool
    )
