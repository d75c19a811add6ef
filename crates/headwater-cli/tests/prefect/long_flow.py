"""A deployed flow that runs until it is stopped: `python long_flow.py
SOURCE_DIR POOL` registers `long/until-cancelled`."""

import sys
import time

from prefect import flow


@flow(name="long")
def long() -> None:
    time.sleep(600)


if __name__ == "__main__":
    source, pool = sys.argv[1], sys.argv[2]
    long.from_source(source=source, entrypoint="long_flow.py:long").deploy(name="until-cancelled", work_pool_name=pool)
