"""Four submitted tasks tagged `warehouse`, each holding its slot a moment:
with a limit of 1 on the tag they must run one at a time."""

import time

from prefect import flow, task


@task(tags=["warehouse"])
def load(i: int) -> int:
    time.sleep(0.5)
    return i


@flow(name="limited")
def limited() -> int:
    return sum(f.result() for f in [load.submit(i) for i in range(4)])


if __name__ == "__main__":
    limited()
