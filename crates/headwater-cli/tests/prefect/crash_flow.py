"""A flow whose task never ends: the test kills its process with kill -9
once it prints STARTED, and the server must mark the run CRASHED."""

import time

from prefect import flow, task


@task
def forever() -> None:
    print("STARTED", flush=True)
    time.sleep(3600)


@flow(name="killed")
def killed() -> None:
    forever()


if __name__ == "__main__":
    killed()
