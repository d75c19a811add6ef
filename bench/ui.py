"""The web UI's API calls against a big database. Run it through `bench/run ui`.

Seeds Headwater's embedded SQLite database, or with --postgres (`bench/run
ui-postgres`) a PostgreSQL database (either created and migrated by the real
server first), with 1,000,000 flow runs over 30 days and 10,000,000 logs, one
run with 10,000 task runs and deployments; then starts
`headwater server start` on it and times every API call each page of the UI
makes (the same requests app.js sends), 20 times each after one warm-up, and
prints p50/p95/max per call and per page. Times are measured by the client
over loopback, so they are an upper bound of the server's own time.

Prefect is not run: its API creates about 40 runs per second here (see
`bench/run server`), so seeding it with a million runs takes hours; the
target compared against is the issue's absolute one, 100 ms per call.
"""
import argparse
import csv
import datetime
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import quote

import httpx

from server import free_port, wait_health  # bench/server.py

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_MS = 100.0


def start_server(bin_dir, home, database_url=None):
    port = free_port()
    env = dict(os.environ, HEADWATER_HOME=home, HEADWATER_LOGGING_CONSOLE="false")
    env.pop("HEADWATER_API_URL", None)
    env.pop("HEADWATER_DATABASE_URL", None)
    if database_url:
        env["HEADWATER_DATABASE_URL"] = database_url
    server = subprocess.Popen([f"{bin_dir}/headwater", "server", "start", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api"
    wait_health(api + "/health")
    return server, api


def uuid7(ms, n):
    """A UUID v7 for time `ms` (milliseconds), made unique by `n`: the ids
    sort by time, as the store's own do."""
    rand = (n * 0x9E3779B97F4A7C15) & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


FLOWS = [f"etl-{i:02d}" for i in range(40)]
FLOW_IDS = {f: str(uuid.uuid5(uuid.NAMESPACE_URL, "headwater:flow:" + f)) for f in FLOWS}
FLOW_SCHEMA = json.dumps({"type": "object", "properties": {"month": {"type": "integer"}}})
RUN_COLS = ("id, flow_id, flow_name, name, parameters, tags, state_type, state_name, state_message, "
            "state_timestamp, state_scheduled, run_count, start_time, end_time, created, deployment_id, work_pool")
TASK_COLS = ("id, flow_run_id, task_name, name, dynamic_key, tags, state_type, state_name, state_message, "
             "state_timestamp, state_scheduled, run_count, cache_key, cache_expiration, start_time, end_time, created")
LOG_MESSAGE = "': loaded 12345 rows from yellow_tripdata_2024-01.parquet'"


def run_rows(runs, now_us, deployments):
    """1,000,000 runs over 30 days as (row, history row), times in
    microseconds: 88 % completed, 5 % failed, 2 % crashed, 2 % cancelled,
    late, scheduled and running runs, 40 flows, tags on one run in five."""
    pools = ["default", "docker"]
    span_us = 30 * 86400 * 1_000_000
    step = span_us // runs
    states = [("COMPLETED", "Completed")] * 88 + [("FAILED", "Failed")] * 5 + [("CRASHED", "Crashed")] * 2 + \
             [("CANCELLED", "Cancelled")] * 2 + [("SCHEDULED", "Late")] * 1 + [("SCHEDULED", "Scheduled")] * 1 + \
             [("RUNNING", "Running")] * 1
    words = ["amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hazy", "icy", "jolly"]
    animals = ["otter", "heron", "lynx", "crane", "marten", "ibis", "vole", "wren", "stoat", "newt"]
    for n in range(runs):
        created = now_us - span_us + n * step
        rid = uuid7(created // 1000, n)
        st, name = states[(n * 7919) % len(states)]
        flow = FLOWS[n % len(FLOWS)]
        dep = deployments[n % 10] if n % 3 else None
        tags = ["nightly", "taxi"] if n % 5 == 0 else ["nightly"]
        end = created + 30_000_000 if st not in ("SCHEDULED", "RUNNING") else None
        yield ((rid, FLOW_IDS[flow], flow, f"{words[n % 10]}-{animals[(n // 10) % 10]}-{n}",
                json.dumps({"month": 1 + n % 12}), json.dumps(tags), st, name, None, created,
                created if st == "SCHEDULED" else None, 1,
                created if st != "SCHEDULED" else None, end, created,
                dep, pools[n % 2] if dep else None),
               (rid, "flow", st, name, created))


def task_rows(big, big_created, big_tasks):
    """The newest run's task runs, for the timeline's page."""
    for i in range(big_tasks):
        start = big_created + i * 1_000_000
        yield (str(uuid.uuid4()), big, "chunk", f"chunk-{i}", i, "[]",
               "FAILED" if i % 97 == 0 else "COMPLETED", "Failed" if i % 97 == 0 else "Completed",
               None, start + 900_000, None, 1, None, None, start, start + 900_000, start)


def seed_sqlite(db_path, runs, logs_per_run, big_tasks, now_us, deployments):
    """Writes the rows in the store's own formats (ids as text, times as
    microseconds, JSON as text, log levels as numbers)."""
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")
    con.executemany("INSERT OR IGNORE INTO flows (id, name, version, description, parameter_schema, created, updated) "
                    "VALUES (?, ?, '1', 'seeded', ?, ?, ?)",
                    [(FLOW_IDS[f], f, FLOW_SCHEMA, now_us, now_us) for f in FLOWS])
    t0 = time.monotonic()
    batch, history = [], []
    last = None
    for row, state in run_rows(runs, now_us, deployments):
        batch.append(row)
        history.append(state)
        last = row
        if len(batch) == 50_000:
            flush_runs(con, batch, history)
            batch, history = [], []
    flush_runs(con, batch, history)
    con.commit()
    print(f"  {runs} runs in {time.monotonic() - t0:.0f} s", file=sys.stderr)

    # Logs: set-based, in the store's order (by run, then id).
    t0 = time.monotonic()
    con.execute("CREATE TEMP TABLE k(k INTEGER)")
    con.executemany("INSERT INTO k VALUES (?)", [(k,) for k in range(logs_per_run)])
    con.execute(
        "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, message) "
        "SELECT r.id, NULL, CASE WHEN k.k = 7 THEN 30 ELSE 20 END, r.created + k.k * 1000, "
        f"'step ' || k.k || ' of ' || r.name || {LOG_MESSAGE} "
        "FROM flow_runs r CROSS JOIN k ORDER BY r.id, k.k")
    con.commit()
    print(f"  {runs * logs_per_run} logs in {time.monotonic() - t0:.0f} s", file=sys.stderr)

    big = last[0]
    con.executemany(f"INSERT INTO task_runs ({TASK_COLS}) VALUES ({', '.join('?' * 17)})",
                    list(task_rows(big, last[14], big_tasks)))
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return big


def flush_runs(con, batch, history):
    con.executemany(f"INSERT INTO flow_runs ({RUN_COLS}) VALUES ({', '.join('?' * 17)})", batch)
    con.executemany("INSERT INTO run_states (run_id, run_kind, state_type, state_name, timestamp) "
                    "VALUES (?, ?, ?, ?, ?)", history)


def psql(url, sql, rows=None):
    """Runs SQL through psql; with `rows`, `sql` is a COPY … FROM STDIN fed
    those rows as CSV."""
    proc = subprocess.Popen(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                            stdin=subprocess.PIPE if rows is not None else subprocess.DEVNULL, text=True)
    if rows is not None:
        out = csv.writer(proc.stdin)
        for r in rows:
            out.writerow(r)
        proc.stdin.close()
    if proc.wait() != 0:
        sys.exit(f"psql failed: {sql[:200]}")


def pg_time(us):
    return None if us is None else \
        datetime.datetime.fromtimestamp(us / 1e6, datetime.timezone.utc).isoformat()


def seed_postgres(url, runs, logs_per_run, big_tasks, now_us, deployments):
    """The same rows as seed_sqlite, in PostgreSQL's types, loaded with COPY."""
    now = pg_time(now_us)
    psql(url, f"COPY flows (id, name, version, description, parameter_schema, created, updated) FROM STDIN "
              "WITH (FORMAT csv)", [(FLOW_IDS[f], f, "1", "seeded", FLOW_SCHEMA, now, now) for f in FLOWS])
    t0 = time.monotonic()
    last = []
    histories = []

    def runs_as_pg():
        for row, state in run_rows(runs, now_us, deployments):
            last[:] = row
            histories.append((state[0], state[1], state[2], state[3], pg_time(state[4])))
            yield tuple(pg_time(v) if i in (9, 10, 12, 13, 14) else v for i, v in enumerate(row))

    psql(url, f"COPY flow_runs ({RUN_COLS}) FROM STDIN WITH (FORMAT csv)", runs_as_pg())
    psql(url, "COPY run_states (run_id, run_kind, state_type, state_name, timestamp) FROM STDIN WITH (FORMAT csv)",
         histories)
    print(f"  {runs} runs in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    t0 = time.monotonic()
    psql(url, "INSERT INTO logs (flow_run_id, task_run_id, level, timestamp, message) "
              "SELECT r.id, NULL, CASE WHEN k = 7 THEN 30 ELSE 20 END, r.created + k * interval '1 ms', "
              f"'step ' || k || ' of ' || r.name || {LOG_MESSAGE} "
              f"FROM flow_runs r CROSS JOIN generate_series(0, {logs_per_run - 1}) k ORDER BY r.id, k")
    print(f"  {runs * logs_per_run} logs in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    big = last[0]
    psql(url, f"COPY task_runs ({TASK_COLS}) FROM STDIN WITH (FORMAT csv)",
         (tuple(pg_time(v) if i in (9, 10, 13, 14, 15, 16) else v for i, v in enumerate(r))
          for r in task_rows(big, last[14], big_tasks)))
    psql(url, "VACUUM ANALYZE")
    return big


def pages(api, big, deployment_id, flow, older_cursor, now, rare_name):
    """The requests each page sends (see crates/headwater-server/ui/app.js)."""
    day = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(now - 86400))
    until = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(now + 3600))
    week = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 7 * 86400))
    f = lambda **kw: ("POST", "/flow_runs/filter", dict({"limit": 50}, **kw))
    g = lambda path: ("GET", path, None)
    return {
        "dashboard": [
            g(f"/flow_runs/history?since={quote(day)}&until={quote(until)}&buckets=25"),
            f(states=["FAILED", "CRASHED"], limit=10), f(state_names=["Late"], limit=10), f(limit=10),
            g("/work_pools"), g("/workers"),
        ],
        "flow runs": [
            g("/flows"), g("/deployments"), f(), f(states=["FAILED"]), f(state_names=["Late"]), f(flow_name=flow),
            f(deployment_id=deployment_id), f(name="heron"), f(name=rare_name), f(tags=["taxi"]), f(since=week),
            f(before=older_cursor), f(states=["COMPLETED"], flow_name=flow, tags=["taxi"]),
        ],
        "flow run (10,000 task runs)": [
            g(f"/flow_runs/{big}"), g(f"/flow_runs/{big}/timeline"), g(f"/states/{big}"),
            ("POST", "/logs/filter", {"flow_run_id": big, "after_id": 0, "limit": 5000}),
            f(parent_flow_run_id=big, limit=1000), ("POST", "/artifacts/filter", {"flow_run_id": big}),
        ],
        "deployments": [g("/deployments"), g("/deployments/name/nightly-0"), g("/deployments/name/nightly-0/schedules")],
        "work pools": [g("/work_pools"), g("/workers"), g("/work_pools/default/queues")],
        "blocks / variables / artifacts": [g("/blocks"), g("/block_types"), g("/variables"),
                                           ("POST", "/artifacts/filter", {"latest_only": True})],
    }


def label(method, path, body):
    if body is None:
        return f"{method} {path.split('?')[0]}"
    shown = {k: v for k, v in body.items() if k != "limit"}
    return f"{method} {path} {json.dumps(shown, separators=(',', ':'))[:70]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--headwater-bin", required=True)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--logs-per-run", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--postgres", metavar="URL",
                    help="measure the PostgreSQL store: a server URL whose user may create databases "
                         "(bench/run ui-postgres passes the machine's); default: the embedded SQLite")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="hw-ui-bench-")
    database_url = None
    if args.postgres:
        psql(args.postgres, "DROP DATABASE IF EXISTS hw_ui_bench")
        psql(args.postgres, "CREATE DATABASE hw_ui_bench")
        database_url = args.postgres.rsplit("/", 1)[0] + "/hw_ui_bench"
    # The real server creates and migrates the database, then stops.
    server, api = start_server(args.headwater_bin, home, database_url)
    # Deployments through `headwater deploy`, as a user makes them (YAML is
    # a superset of JSON).
    client_home = tempfile.mkdtemp()
    manifest = os.path.join(client_home, "headwater.yaml")
    with open(manifest, "w") as fh:
        json.dump({"deployments": [
            {"name": f"nightly-{i}", "flow": f"etl-{i:02d}", "entrypoint": ["./etl"], "parameters": {"month": 1},
             "schedules": [{"cron": "0 5 * * *"}], "work_pool": {"name": "default"}} for i in range(10)]}, fh)
    subprocess.run([f"{args.headwater_bin}/headwater", "deploy", "--file", manifest, "--all", "--no-check"],
                   env=dict(os.environ, HEADWATER_HOME=client_home, HEADWATER_API_URL=api),
                   check=True, stdout=subprocess.DEVNULL)
    deployments = sorted(httpx.get(api + "/deployments").json(), key=lambda d: d["name"])
    server.terminate()
    server.wait()
    now = time.time()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"seeding {store} with {args.runs} runs, {args.runs * args.logs_per_run} logs, {args.tasks} task runs",
          file=sys.stderr)
    seeded = (args.runs, args.logs_per_run, args.tasks, int(now * 1_000_000), [d["id"] for d in deployments])
    if args.postgres:
        big = seed_postgres(database_url, *seeded)
    else:
        db = os.path.join(home, "headwater.db")
        big = seed_sqlite(db, *seeded)
        print(f"  database: {os.path.getsize(db) / 2**30:.1f} GiB", file=sys.stderr)

    server, api = start_server(args.headwater_bin, home, database_url)
    # Let the scheduler's first pass (runs due, late runs) settle first.
    time.sleep(5)
    client = httpx.Client(timeout=60)
    try:
        first = client.post(api + "/flow_runs/filter", json={"limit": 50}).json()
        count = len(first)
        older = {"created": first[-1]["created"], "id": first[-1]["id"]}
        dep = next(d for d in deployments if d["name"] == "nightly-0")["id"]
        rows = []
        worst_page = {}
        # A name matching one run in the middle of the span: the search reads
        # the runs newer than it (substring search has no index).
        rare = f"-{args.runs // 2}"
        for page, calls in pages(api, big, dep, FLOWS[3], older, now, rare).items():
            for method, path, body in calls:
                send = lambda: client.request(method, api + path, json=body)
                r = send()
                if r.status_code != 200:
                    sys.exit(f"{method} {path} {body}: {r.status_code} {r.text[:300]}")
                n = len(r.json()) if isinstance(r.json(), list) else 1
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    resp = send()
                    times.append((time.perf_counter() - t) * 1000)
                    resp.raise_for_status()
                times.sort()
                p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
                rows.append((page, label(method, path, body), n, len(r.content), p50, p95, times[-1]))
                worst_page[page] = max(worst_page.get(page, 0), p95)
        print(f"\n{store}: {args.runs} flow runs, {args.runs * args.logs_per_run} logs; first page {count} runs; "
              f"{args.repeat} timed requests per call\n")
        print("| page | call | items | bytes | p50 ms | p95 ms | max ms |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for page, call, n, size, p50, p95, mx in rows:
            flag = "" if p95 < TARGET_MS else " **over**"
            print(f"| {page} | `{call}` | {n} | {size} | {p50:.1f} | {p95:.1f}{flag} | {mx:.1f} |")
        print("\n| page | slowest call p95 | target | ratio to target |")
        print("|---|---:|---:|---:|")
        for page, worst in worst_page.items():
            print(f"| {page} | {worst:.1f} ms | {TARGET_MS:.0f} ms | {TARGET_MS / max(worst, 0.01):.1f}× under |"
                  if worst < TARGET_MS else f"| {page} | {worst:.1f} ms | {TARGET_MS:.0f} ms | over |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
