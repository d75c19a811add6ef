"""The lake's hot paths against the tools data engineers use today, side by
side in one run. Run it through bench/run lake.

1. CSV.gz -> Parquet (zstd): hw-lake convert vs pandas (read_csv +
   to_parquet) vs pyarrow (csv.read_csv + parquet.write_table).
2. CSV.gz -> PostgreSQL: hw-lake load-postgres (binary COPY, streamed) vs
   the course's pandas to_sql in 100,000-row chunks vs psql \\copy fed by
   gunzip (the practical limit: the server parses the CSV itself).
3. Peak memory of ours on a file 10x larger (flat or not).

The input is a generated yellow_tripdata_2021-01-shaped file with the real
month's 1,369,765 rows (no malformed lines: pandas and pyarrow would stop
or drop them silently, ours quarantines them). Each measurement is a fresh
process; peak memory is its maximum resident set size (wait4, which covers
gunzip and psql in the pipeline). PostgreSQL's own server memory is not
counted for anyone.
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import run_measured  # noqa: E402

YELLOW = [
    ("VendorID", "BIGINT"), ("tpep_pickup_datetime", "TIMESTAMP"), ("tpep_dropoff_datetime", "TIMESTAMP"),
    ("passenger_count", "BIGINT"), ("trip_distance", "DOUBLE PRECISION"), ("RatecodeID", "BIGINT"),
    ("store_and_fwd_flag", "TEXT"), ("PULocationID", "BIGINT"), ("DOLocationID", "BIGINT"),
    ("payment_type", "BIGINT"), ("fare_amount", "DOUBLE PRECISION"), ("extra", "DOUBLE PRECISION"),
    ("mta_tax", "DOUBLE PRECISION"), ("tip_amount", "DOUBLE PRECISION"), ("tolls_amount", "DOUBLE PRECISION"),
    ("improvement_surcharge", "DOUBLE PRECISION"), ("total_amount", "DOUBLE PRECISION"),
    ("congestion_surcharge", "DOUBLE PRECISION"),
]

PANDAS_PARQUET = """
import sys, pandas as pd
src, dst = sys.argv[1:3]
df = pd.read_csv(src, parse_dates=["tpep_pickup_datetime", "tpep_dropoff_datetime"])
df.to_parquet(dst, compression="zstd")
print(len(df))
"""

PYARROW_PARQUET = """
import sys, pyarrow.csv as csv, pyarrow.parquet as pq
src, dst = sys.argv[1:3]
t = csv.read_csv(src)
pq.write_table(t, dst, compression="zstd")
print(t.num_rows)
"""

# The course's ingest script (week 1), as taught.
PANDAS_TO_SQL = """
import sys, pandas as pd
from sqlalchemy import create_engine

src, url, table = sys.argv[1:4]
engine = create_engine(url.replace("postgres://", "postgresql+psycopg2://", 1))
n, first = 0, True
for df in pd.read_csv(src, iterator=True, chunksize=100000):
    df.tpep_pickup_datetime = pd.to_datetime(df.tpep_pickup_datetime)
    df.tpep_dropoff_datetime = pd.to_datetime(df.tpep_dropoff_datetime)
    df.to_sql(name=table, con=engine, if_exists="replace" if first else "append", index=False)
    n, first = n + len(df), False
print(n)
"""


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True, stdout=subprocess.DEVNULL)


def count(url, table):
    out = subprocess.run(["psql", "-tA", url, "-c", f'SELECT count(*) FROM "{table}"'], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.strip())


def row(name, wall, mib, note=""):
    print(f"| {name:<44} | {wall:8.2f} s | {mib:8.0f} MiB | {note}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw-lake", required=True, help="the hw-lake binary (release)")
    ap.add_argument("--python", required=True, help="python of the venv with pandas and pyarrow")
    ap.add_argument("--postgres", required=True, help="postgres:// URL of a database to load into")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "lake"))
    ap.add_argument("--rows", type=int, default=1_369_765)
    ap.add_argument("--scale", type=int, default=10, help="the large file is this many times bigger")
    ap.add_argument("--skip-to-sql", action="store_true", help="skip pandas to_sql (the slowest by far)")
    args = ap.parse_args()
    os.makedirs(args.data, exist_ok=True)
    hw, py, url = args.hw_lake, args.python, args.postgres

    files = {}
    for label, rows in (("1x", args.rows), (f"{args.scale}x", args.rows * args.scale)):
        path = os.path.join(args.data, f"yellow_{rows}.csv.gz")
        if not os.path.exists(path):
            print(f"generating {path} ({rows:,} rows)", file=sys.stderr)
            subprocess.run([hw, "generate", "--rows", str(rows), "--malformed", "0", path], check=True,
                           stdout=subprocess.DEVNULL)
        files[label] = path
    src = files["1x"]
    big = files[f"{args.scale}x"]
    size = os.path.getsize(src) / 1e6
    print(f"\nInput: {src} ({args.rows:,} rows, {size:.0f} MB gzip); {os.cpu_count()} cores\n")

    print("## CSV.gz -> Parquet (zstd)\n")
    print("| tool | wall | peak RSS | |")
    print("|---|---|---|---|")
    out = os.path.join(args.data, "out.parquet")
    _, hw_t, hw_m = run_measured([hw, "convert", src, out])
    row("Headwater hw-lake convert", hw_t, hw_m, "typed by the TLC schema, snake_case, rejects quarantined")
    _, pa_t, pa_m = run_measured([py, "-c", PYARROW_PARQUET, src, out])
    row("pyarrow csv.read_csv + write_table", pa_t, pa_m, f"{pa_t / hw_t:.1f}x our time")
    _, pd_t, pd_m = run_measured([py, "-c", PANDAS_PARQUET, src, out])
    row("pandas read_csv + to_parquet", pd_t, pd_m, f"{pd_t / hw_t:.1f}x our time")
    _, big_t, big_m = run_measured([hw, "convert", big, out])
    row(f"Headwater hw-lake convert, {args.scale}x rows", big_t, big_m,
        f"memory {big_m / hw_m:.2f}x the 1x run's")

    print("\n## CSV.gz -> PostgreSQL\n")
    print("| tool | wall | peak RSS | |")
    print("|---|---|---|---|")
    _, l_t, l_m = run_measured([hw, "load-postgres", src, "--url", url, "--table", "hw_yellow"])
    assert count(url, "hw_yellow") == args.rows
    row("Headwater hw-lake load-postgres (binary COPY)", l_t, l_m, "one transaction")
    psql(url, "DROP TABLE IF EXISTS psql_yellow")
    psql(url, "CREATE TABLE psql_yellow (" + ", ".join(f'"{c}" {t}' for c, t in YELLOW) + ")")
    copy = f"gunzip -c '{src}' | psql -q -v ON_ERROR_STOP=1 '{url}' -c \"\\copy psql_yellow FROM STDIN WITH (FORMAT csv, HEADER true)\""
    _, c_t, c_m = run_measured(["bash", "-o", "pipefail", "-c", copy])
    assert count(url, "psql_yellow") == args.rows
    row("gunzip | psql \\copy (CSV parsed by the server)", c_t, c_m, f"ours is {l_t / c_t:.2f}x its time")
    if not args.skip_to_sql:
        _, s_t, s_m = run_measured([py, "-c", PANDAS_TO_SQL, src, url, "pandas_yellow"])
        assert count(url, "pandas_yellow") == args.rows
        row("pandas to_sql, 100,000-row chunks (the course)", s_t, s_m, f"{s_t / l_t:.1f}x our time")
    _, lb_t, lb_m = run_measured([hw, "load-postgres", big, "--url", url, "--table", "hw_yellow_big"])
    row(f"Headwater hw-lake load-postgres, {args.scale}x rows", lb_t, lb_m,
        f"memory {lb_m / l_m:.2f}x the 1x run's")
    for t in ("hw_yellow", "psql_yellow", "pandas_yellow", "hw_yellow_big"):
        psql(url, f"DROP TABLE IF EXISTS {t}")


if __name__ == "__main__":
    main()
