"""Twenty tasks, with a pause in the middle while the test restarts the
server: the task runs of both halves must all be recorded.

It prints HALFWAY when ten tasks are done, then waits until the file named
by HW_TEST_GO exists.
"""

import os
import time

from prefect import flow, task

GO = os.environ["HW_TEST_GO"]


@task
def step(i: int) -> int:
    return i


@flow(name="survives-a-restart")
def twenty() -> int:
    total = sum(step(i) for i in range(10))
    print("HALFWAY", flush=True)
    while not os.path.exists(GO):
        time.sleep(0.1)
    return total + sum(step(i) for i in range(10, 20))


if __name__ == "__main__":
    twenty()
