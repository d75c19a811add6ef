"""A course-shaped Prefect flow, unchanged Prefect code: a task with retries
that fails once, a cached task with an expiry, printed logs, .submit() and
.map(), and a subflow. The test runs it twice against Headwater's server.

The first attempt of `fetch` fails only while the file named by
HW_TEST_FAIL_ONCE does not exist (it is created then), so the first run
retries and the second does not.
"""

import os
from datetime import timedelta

from prefect import flow, task
from prefect.tasks import task_input_hash

FAIL_ONCE = os.environ["HW_TEST_FAIL_ONCE"]


@task(retries=2, retry_delay_seconds=1)
def fetch(url: str) -> int:
    if not os.path.exists(FAIL_ONCE):
        open(FAIL_ONCE, "w").close()
        raise RuntimeError("the web server hung up (first attempt)")
    return len(url)


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def clean(rows: int) -> int:
    return rows * 2


@task(log_prints=True, tags=["report"])
def report(rows: int) -> int:
    print(f"rows: {rows}")
    return rows


@flow(name="course-child")
def load(rows: int) -> int:
    return report(rows)


@flow(name="course-etl", log_prints=True)
def etl(url: str = "http://127.0.0.1/yellow_tripdata_2021-01.csv.gz") -> int:
    rows = fetch(url)
    cleaned = clean(rows)
    mapped = sum(f.result() for f in report.map([1, 2, 3]))
    submitted = report.submit(cleaned).result()
    print(f"mapped {mapped}, submitted {submitted}")
    return load(cleaned)


if __name__ == "__main__":
    etl()
