"""The web UI's API calls against a big database. Run it through `bench/run ui`.

Seeds Headwater's embedded SQLite database (created and migrated by the real
server first) with 1,000,000 flow runs over 30 days and 10,000,000 logs, one
run with 10,000 task runs, deployments, pools and workers; then starts
`headwater server start` on it and times every API call each page of the UI
makes (the same requests app.js sends), 20 times each after one warm-up, and
prints p50/p95/max per call and per page. Times are measured by the client
over loopback, so they are an upper bound of the server's own time.

Prefect is not run: its API creates about 40 runs per second here (see
`bench/run server`), so seeding it with a million runs takes hours; the
target compared against is the issue's absolute one, 100 ms per call.
"""
import argparse
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


def start_server(bin_dir, home):
    port = free_port()
    env = dict(os.environ, HEADWATER_HOME=home, HEADWATER_LOGGING_CONSOLE="false")
    env.pop("HEADWATER_API_URL", None)
    env.pop("HEADWATER_DATABASE_URL", None)
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


def seed(db_path, runs, logs_per_run, big_tasks, now_us):
    """Writes the rows in the store's own formats (ids as text, times as
    microseconds, JSON as text, log levels as numbers)."""
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")
    flows = [f"etl-{i:02d}" for i in range(40)]
    flow_ids = {f: str(uuid.uuid5(uuid.NAMESPACE_URL, "headwater:flow:" + f)) for f in flows}
    schema = json.dumps({"type": "object", "properties": {"month": {"type": "integer"}}})
    con.executemany("INSERT OR IGNORE INTO flows (id, name, version, description, parameter_schema, created, updated) "
                    "VALUES (?, ?, '1', 'seeded', ?, ?, ?)",
                    [(flow_ids[f], f, schema, now_us, now_us) for f in flows])
    pools = ["default", "docker"]
    deployments = [row[0] for row in con.execute("SELECT id FROM deployments ORDER BY name")]
    span_us = 30 * 86400 * 1_000_000
    step = span_us // runs
    states = [("COMPLETED", "Completed")] * 88 + [("FAILED", "Failed")] * 5 + [("CRASHED", "Crashed")] * 2 + \
             [("CANCELLED", "Cancelled")] * 2 + [("SCHEDULED", "Late")] * 1 + [("SCHEDULED", "Scheduled")] * 1 + \
             [("RUNNING", "Running")] * 1
    words = ["amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hazy", "icy", "jolly"]
    animals = ["otter", "heron", "lynx", "crane", "marten", "ibis", "vole", "wren", "stoat", "newt"]
    t0 = time.monotonic()
    batch, history = [], []
    run_ids = []
    for n in range(runs):
        created = now_us - span_us + n * step
        rid = uuid7(created // 1000, n)
        st, name = states[(n * 7919) % len(states)]
        flow = flows[n % len(flows)]
        dep = deployments[n % 10] if n % 3 else None
        tags = ["nightly", "taxi"] if n % 5 == 0 else ["nightly"]
        end = created + 30_000_000 if st not in ("SCHEDULED", "RUNNING") else None
        batch.append((rid, flow_ids[flow], flow, f"{words[n % 10]}-{animals[(n // 10) % 10]}-{n}",
                      json.dumps({"month": 1 + n % 12}), json.dumps(tags), st, name, None, created,
                      created if st == "SCHEDULED" else None, 1,
                      created if st != "SCHEDULED" else None, end, created,
                      dep, pools[n % 2] if dep else None))
        history.append((rid, "flow", st, name, created))
        run_ids.append((rid, created))
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
        "'step ' || k.k || ' of ' || r.name || ': loaded 12345 rows from yellow_tripdata_2024-01.parquet' "
        "FROM flow_runs r CROSS JOIN k ORDER BY r.id, k.k")
    con.commit()
    print(f"  {runs * logs_per_run} logs in {time.monotonic() - t0:.0f} s", file=sys.stderr)

    # One run with many task runs, the newest, for the timeline's page.
    big, big_created = run_ids[-1]
    tasks = []
    for i in range(big_tasks):
        start = big_created + i * 1_000_000
        tasks.append((str(uuid.uuid4()), big, "chunk", f"chunk-{i}", i, "[]",
                      "FAILED" if i % 97 == 0 else "COMPLETED", "Failed" if i % 97 == 0 else "Completed",
                      None, start + 900_000, None, 1, None, None, start, start + 900_000, start))
    con.executemany("INSERT INTO task_runs (id, flow_run_id, task_name, name, dynamic_key, tags, state_type, "
                    "state_name, state_message, state_timestamp, state_scheduled, run_count, cache_key, "
                    "cache_expiration, start_time, end_time, created) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tasks)
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return big, deployments, flows


def flush_runs(con, batch, history):
    con.executemany(
        "INSERT INTO flow_runs (id, flow_id, flow_name, name, parameters, tags, state_type, state_name, "
        "state_message, state_timestamp, state_scheduled, run_count, start_time, end_time, created, "
        "deployment_id, work_pool) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    con.executemany("INSERT INTO run_states (run_id, run_kind, state_type, state_name, timestamp) "
                    "VALUES (?, ?, ?, ?, ?)", history)


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
            g(f"/flow_runs/{big}"), g(f"/flow_runs/{big}/task_runs"), g(f"/states/{big}"),
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
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="hw-ui-bench-")
    # The real server creates and migrates the database, then stops.
    server, api = start_server(args.headwater_bin, home)
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
    deployments = httpx.get(api + "/deployments").json()
    server.terminate()
    server.wait()
    now = time.time()
    print(f"seeding {args.runs} runs, {args.runs * args.logs_per_run} logs, {args.tasks} task runs", file=sys.stderr)
    db = os.path.join(home, "headwater.db")
    big, _, flows = seed(db, args.runs, args.logs_per_run, args.tasks, int(now * 1_000_000))
    print(f"  database: {os.path.getsize(db) / 2**30:.1f} GiB", file=sys.stderr)

    server, api = start_server(args.headwater_bin, home)
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
        for page, calls in pages(api, big, dep, flows[3], older, now, rare).items():
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
        print(f"\n{args.runs} flow runs, {args.runs * args.logs_per_run} logs; first page {count} runs; "
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
