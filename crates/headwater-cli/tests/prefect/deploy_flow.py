"""Deployed from source to a process work pool, the way the course does it:
`python deploy_flow.py SOURCE_DIR POOL` registers `deployed/dep`; Prefect's
worker then runs it in a process of its own. With a third argument, a cron
expression, it registers `deployed/every-minute` on that schedule instead."""

import sys

from prefect import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow(name="deployed", log_prints=True)
def deployed(x: int = 1) -> int:
    y = double(x)
    print(f"got {y}")
    return y


if __name__ == "__main__":
    source, pool = sys.argv[1], sys.argv[2]
    flow_from_source = deployed.from_source(source=source, entrypoint="deploy_flow.py:deployed")
    if len(sys.argv) > 3:
        flow_from_source.deploy(name="every-minute", work_pool_name=pool, cron=sys.argv[3])
    else:
        flow_from_source.deploy(name="dep", work_pool_name=pool)
