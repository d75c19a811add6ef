"""Blocks and variables from Python, unchanged Prefect code: a Secret block,
a custom Block subclass with a SecretStr field, a Variable; saved, then
loaded inside a flow. The secret's value comes from HW_TEST_SECRET.

`python blocks_flow.py save` saves them; `python blocks_flow.py load` runs
the flow that loads them and prints what it read.
"""

import os
import sys

from prefect import flow, task
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.variables import Variable
from pydantic import SecretStr

SECRET = os.environ["HW_TEST_SECRET"]


class TaxiBucket(Block):
    """Where the course's taxi files land."""

    bucket: str
    token: SecretStr


@task
def use_blocks() -> str:
    secret = Secret.load("gcp-creds").get()
    bucket = TaxiBucket.load("zoom-bucket")
    color = Variable.get("taxi_color")
    assert secret == SECRET, "the secret came back changed"
    assert bucket.token.get_secret_value() == SECRET
    return f"{bucket.bucket} {color}"


@flow(name="use-blocks")
def load() -> str:
    line = use_blocks()
    print(f"loaded: {line}")
    return line


if __name__ == "__main__":
    if sys.argv[1] == "save":
        Secret(value=SECRET).save("gcp-creds", overwrite=True)
        TaxiBucket(bucket="taxi-lake", token=SECRET).save("zoom-bucket", overwrite=True)
        Variable.set("taxi_color", "yellow", overwrite=True)
    else:
        print(f"flow returned: {load()}")
