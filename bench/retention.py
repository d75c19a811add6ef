"""Retention at scale: `headwater db prune` deleting a million runs while the
web UI is used. Run it through `bench/run retention`.

Seeds the embedded SQLite database (created and migrated by the real
server first) the way bench/ui.py does: 1,000,000 flow runs over 30 days
with their state histories and logs. Then starts `headwater server start` on
it and, while `headwater db prune --older-than 1h` runs beside it on the same
file, sends the UI's calls in a loop (the dashboard's, the runs list's and a
run page's; each call timed by the client over loopback) and reports their
latency during the prune against the 100 ms target, the prune's time and
rate, and the file's size before, after, and after `--vacuum`.

Prefect is not run: its open-source server has no retention to compare with
(its database grows until it is deleted by hand).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import httpx

from ui import FLOWS, TARGET_MS, pages, seed_sqlite, start_server  # bench/ui.py


def db_bytes(path):
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--headwater-bin", required=True)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--logs-per-run", type=int, default=5)
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="hw-retention-bench-")
    server, api = start_server(args.headwater_bin, home)
    server.terminate()
    server.wait()
    db = os.path.join(home, "headwater.db")
    now = time.time()
    print(f"seeding SQLite with {args.runs} runs and {args.runs * args.logs_per_run} logs", file=sys.stderr)
    deployments = [str(uuid.uuid4()) for _ in range(10)]
    big = seed_sqlite(db, args.runs, args.logs_per_run, 1000, int(now * 1_000_000), deployments)
    before = db_bytes(db)

    server, api = start_server(args.headwater_bin, home)
    time.sleep(3)
    client = httpx.Client(timeout=60)
    calls = []
    for page in ("dashboard", "flow runs"):
        calls += pages(api, big, None, FLOWS[3], None, now, "heron")[page][:6]
    calls = [c for c in calls if not (c[2] and ("deployment_id" in c[2] or "before" in c[2]))]
    latencies = []
    done = threading.Event()

    def use_the_ui():
        while not done.is_set():
            for method, path, body in calls:
                t = time.perf_counter()
                r = client.request(method, api + path, json=body)
                latencies.append(((time.perf_counter() - t) * 1000, path))
                r.raise_for_status()

    env = dict(os.environ, HEADWATER_HOME=home, HEADWATER_LOGGING_CONSOLE="false")
    env.pop("HEADWATER_API_URL", None)
    user = threading.Thread(target=use_the_ui)
    try:
        # Before: the same calls with nothing else going on.
        user.start()
        time.sleep(5)
        idle = list(latencies)
        latencies.clear()
        t0 = time.monotonic()
        out = subprocess.run([f"{args.headwater_bin}/headwater", "db", "prune", "--older-than", "1h"], env=env,
                             check=True, capture_output=True, text=True).stdout
        pruned_s = time.monotonic() - t0
        during = list(latencies)
        done.set()
        user.join()
        after = db_bytes(db)
        server.terminate()
        server.wait()
        t0 = time.monotonic()
        subprocess.run([f"{args.headwater_bin}/headwater", "db", "prune", "--older-than", "1h", "--kind", "runs",
                        "--vacuum"], env=env, check=True, capture_output=True)
        vacuum_s = time.monotonic() - t0
        vacuumed = db_bytes(db)
    finally:
        done.set()
        server.terminate()
        server.wait()

    deleted = next((int(l.split()[2]) for l in out.splitlines() if l.startswith("runs: deleted")), 0)
    print("\n" + out.strip())
    print(f"\nSQLite, {args.runs} flow runs, {args.runs * args.logs_per_run} logs: "
          f"pruned {deleted} flow runs (with their states and logs) in {pruned_s:.1f} s, "
          f"{deleted / max(pruned_s, 1e-9):.0f} runs/s\n")

    def row(name, xs):
        ms = sorted(x for x, _ in xs)
        if not ms:
            return f"| {name} | 0 | | | |"
        p50, p99 = statistics.median(ms), ms[int(0.99 * (len(ms) - 1))]
        flag = "" if ms[-1] < TARGET_MS else " **over**"
        return f"| {name} | {len(ms)} | {p50:.1f} | {p99:.1f} | {ms[-1]:.1f}{flag} |"

    print("| UI calls | calls | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    print(row("before the prune", idle))
    print(row("during the prune", during))
    slowest = max(during, default=(0, ""))
    print(f"\nslowest call during the prune: {slowest[0]:.1f} ms ({slowest[1]}); target {TARGET_MS:.0f} ms")
    print(f"\n| database file | bytes | per flow run seeded |")
    print("|---|---:|---:|")
    for name, b in (("before", before), ("after the prune", after), (f"after --vacuum ({vacuum_s:.1f} s)", vacuumed)):
        print(f"| {name} | {b:,} | {b / args.runs:.0f} |")


if __name__ == "__main__":
    main()
