"""The course's first pipeline, in plain Prefect 3: a month of NYC taxi trips
from the web (CSV.gz) → cleaned with pandas → Parquet → the lake, through a
`LocalFileSystem` block. Nothing here knows about Headwater: point
PREFECT_API_URL at `headwater server start`'s /prefect/api and run it.

    headwater block create local-file-system taxi-lake -f basepath=$HOME/taxi-lake
    PREFECT_API_URL=http://127.0.0.1:4200/prefect/api \
        python examples/prefect/etl_web_to_lake.py --base-url http://127.0.0.1:8000

`--base-url` is where the monthly files are (the TLC's public release by
default; Headwater's `hw-lake serve` or any static server for offline use).

Deployed instead, to a process work pool that Prefect's worker serves:

    prefect work-pool create taxi --type process
    python examples/prefect/etl_web_to_lake.py --deploy taxi
    prefect worker start --pool taxi &
    prefect deployment run etl-web-to-lake/taxi-month -p month=2 -p base_url=http://127.0.0.1:8000
"""

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.filesystems import LocalFileSystem

TLC = "https://github.com/DataTalksClub/nyc-tlc-data/releases/download"


@task(retries=3, retry_delay_seconds=2)
def fetch(dataset_url: str) -> pd.DataFrame:
    """Reads the month's CSV.gz straight from the web."""
    return pd.read_csv(dataset_url, compression="gzip", low_memory=False)


@task(log_prints=True)
def clean(df: pd.DataFrame) -> pd.DataFrame:
    """Parses the timestamps and drops trips without passengers."""
    df["tpep_pickup_datetime"] = pd.to_datetime(df["tpep_pickup_datetime"])
    df["tpep_dropoff_datetime"] = pd.to_datetime(df["tpep_dropoff_datetime"])
    before = len(df)
    df = df[df["passenger_count"].fillna(0) > 0]
    print(f"rows: {len(df)} kept, {before - len(df)} without passengers dropped")
    return df


@task
def write_local(df: pd.DataFrame, dataset_file: str) -> Path:
    path = Path(tempfile.mkdtemp()) / f"{dataset_file}.parquet"
    df.to_parquet(path, compression="gzip")
    return path


@task(log_prints=True)
def write_lake(path: Path, color: str, dataset_file: str) -> str:
    lake = LocalFileSystem.load("taxi-lake")
    target = f"data/{color}/{dataset_file}.parquet"
    lake.write_path(target, path.read_bytes())
    print(f"wrote {target} to the lake")
    return target


@flow(name="etl-web-to-lake")
def etl_web_to_lake(color: str = "yellow", year: int = 2021, month: int = 1, base_url: str = TLC) -> str:
    dataset_file = f"{color}_tripdata_{year}-{month:02}"
    dataset_url = f"{base_url}/{color}/{dataset_file}.csv.gz"
    df = clean(fetch(dataset_url))
    return write_lake(write_local(df, dataset_file), color, dataset_file)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--color", default="yellow")
    ap.add_argument("--year", type=int, default=2021)
    ap.add_argument("--month", type=int, default=1)
    ap.add_argument("--base-url", default=TLC)
    ap.add_argument("--deploy", metavar="POOL", help="deploy to this work pool instead of running")
    a = ap.parse_args()
    if a.deploy:
        here = Path(__file__).resolve().parent
        etl_web_to_lake.from_source(source=str(here), entrypoint="etl_web_to_lake.py:etl_web_to_lake").deploy(
            name="taxi-month", work_pool_name=a.deploy
        )
    else:
        etl_web_to_lake(a.color, a.year, a.month, a.base_url)
