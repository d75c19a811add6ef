"""A two-year backfill against the sequential parent flow.

Both load the same months (yellow and green, 2019 and 2020: 48 colour-months
of generated trips served on loopback) web → lake → DuckDB with the taxi
program:

- sequential: today's course loop, `taxi etl-parent-flow` with a `months`
  list, one process per colour and year, one after the other, on the
  embedded store;
- backfill: `headwater backfill taxi-months --max-concurrent N` through a
  server, run by one worker with room for N.

Prints the wall times and their ratio, the orchestration overhead per
partition run (creating it, handing it to the worker, starting its process:
not the work), and the peak memory of the server and the worker.
"""
import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

import httpx

from server import free_port, pct, stop, tree_rss_mib, wait_health


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Peak resident memory of some processes, sampled every 20 ms."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.running = pids, {k: 0.0 for k in pids}, True

    def run(self):
        while self.running:
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mib(pid))
            time.sleep(0.02)


def serve(folder, mbps=0.0):
    """The folder on loopback; each download paced to `mbps` MB/s when
    given (a stand-in for the web's bandwidth, which loopback does not have)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=folder, **kw)

        def log_message(self, *a):
            pass

        def copyfile(self, source, outputfile):
            if mbps <= 0:
                return super().copyfile(source, outputfile)
            chunk, start, sent = 64 * 1024, time.perf_counter(), 0
            while data := source.read(chunk):
                outputfile.write(data)
                sent += len(data)
                ahead = sent / (mbps * 1e6) - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def run(cmd, env, quiet=True):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out.stdout


def blocks(hw, env, home):
    run([hw, "block", "create", "local-file-system", "taxi-lake", "-f", f"basepath={home}/lake"], env)
    run([hw, "block", "create", "duckdb-warehouse", "taxi-warehouse", "-f", f"path={home}/warehouse.duckdb"], env)
    run([hw, "concurrency-limit", "create", "warehouse", "1"], env)


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--headwater-bin", required=True, help="the release folder with headwater, taxi and hw-lake")
    ap.add_argument("--rows", type=int, default=3000, help="trips per colour-month")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--mbps", type=float, default=0.0,
                    help="pace each download to this many MB/s (default: loopback's speed)")
    args = ap.parse_args()
    hw, taxi, lake = (os.path.join(args.headwater_bin, b) for b in ("headwater", "taxi", "hw-lake"))
    work = tempfile.mkdtemp(prefix="hw-bench-backfill-")
    web = os.path.join(work, "web")
    colors, years = ["yellow", "green"], [2019, 2020]
    for c in colors:
        os.makedirs(os.path.join(web, c), exist_ok=True)
        for y in years:
            for m in range(1, 13):
                out = os.path.join(web, c, f"{c}_tripdata_{y}-{m:02}.csv.gz")
                run([lake, "generate", "--color", c, "--year", str(y), "--month", str(m), "--rows", str(args.rows),
                     "--malformed", "0", out], os.environ.copy())
    base = serve(web, args.mbps)
    n = len(colors) * len(years) * 12
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    base_env["HEADWATER_LOGGING_CONSOLE"] = "false"

    # The sequential loop: one parent flow per colour and year.
    seq_home = os.path.join(work, "sequential")
    seq_env = dict(base_env, HEADWATER_HOME=seq_home)
    blocks(hw, seq_env, seq_home)
    t0 = time.perf_counter()
    seq_peak = 0.0
    for c in colors:
        for y in years:
            p = subprocess.Popen([taxi, "etl-parent-flow", "-p", f"months={list(range(1, 13))}", "-p", f"year={y}",
                                  "-p", f"color={c}", "-p", f"base_url={base}"], env=seq_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(p.pid, 0)
            seq_peak = max(seq_peak, usage.ru_maxrss / 1024)
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit(f"etl-parent-flow {c} {y} failed:\n{p.stderr.read().decode()[-3000:]}")
    seq_wall = time.perf_counter() - t0

    # The backfill through a server.
    bf_home = os.path.join(work, "backfill")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    bf_env = dict(base_env, HEADWATER_HOME=bf_home, HEADWATER_API_URL=api)
    server = subprocess.Popen([hw, "server", "start", "--port", str(port)], env={k: v for k, v in bf_env.items() if k != "HEADWATER_API_URL"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(f"{api}/health")
        blocks(hw, bf_env, bf_home)
        manifest = os.path.join(work, "headwater.yaml")
        with open(manifest, "w") as f:
            f.write(f"""deployments:
  - name: taxi-months
    flow: etl-month
    entrypoint: ["{taxi}", "etl-month"]
    parameters: {{lake: taxi-lake, warehouse: taxi-warehouse, base_url: "{base}"}}
    work_pool: {{name: taxi}}
    partitions:
      time: {{every: month, start: "2019-01", timezone: America/New_York}}
      static: {{color: [yellow, green]}}
      parameters: {{color: color, year: year, month: month}}
""")
        run([hw, "deploy", "--file", manifest], bf_env)
        t0 = time.perf_counter()
        run([hw, "backfill", "taxi-months", "--from", "2019-01", "--to", "2020-12",
             "--max-concurrent", str(args.concurrency)], bf_env)
        created = time.perf_counter() - t0
        worker = subprocess.Popen([hw, "worker", "start", "--pool", "taxi", "--limit", str(args.concurrency),
                                   "--exit-when-idle", "--poll-ms", "50"], env=bf_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler = Sampler({"server": server.pid, "worker": worker.pid})
        sampler.start()
        worker.wait()
        bf_wall = time.perf_counter() - t0
        sampler.running = False
        sampler.join()
        if worker.returncode != 0:
            sys.exit(f"the worker failed ({worker.returncode})")

        http = httpx.Client(timeout=30)
        dep = http.get(f"{api}/deployments/name/taxi-months").json()
        runs = http.post(f"{api}/flow_runs/filter", json={"deployment_id": dep["id"], "limit": 1000}).json()
        if len(runs) != n or any(r["state"]["type"] != "COMPLETED" for r in runs):
            sys.exit(f"expected {n} completed runs, got {[(r['name'], r['state']['type']) for r in runs]}")
        dispatch, handoff, work_s = [], [], []
        ends = sorted(ts(r["end_time"]) for r in runs)
        for r in runs:
            history = http.get(f"{api}/states/{r['id']}").json()
            at = {}
            for s in sorted(history, key=lambda s: s["state"]["timestamp"]):
                # The first of each: the claim's PENDING, not the flow process's own.
                at.setdefault(s["state"]["type"], ts(s["state"]["timestamp"]))
            # Claimed (PENDING) → the flow's process reports RUNNING.
            dispatch.append(at["RUNNING"] - at["PENDING"])
            work_s.append(ts(r["end_time"]) - at["RUNNING"])
            # A claim that waited for a slot: how soon after a run ended.
            before = [e for e in ends if e <= at["PENDING"]]
            if before and at["PENDING"] - before[-1] < 1.0:
                handoff.append(at["PENDING"] - before[-1])
        per_run_create = created / n
        overhead = per_run_create + statistics.median(dispatch) + (statistics.median(handoff) if handoff else 0)
    finally:
        stop(server)

    web_speed = f", downloads paced to {args.mbps:g} MB/s each" if args.mbps > 0 else ", downloads at loopback speed"
    print(f"{n} colour-months of {args.rows} trips, web → lake → DuckDB{web_speed}")
    print(f"  sequential etl-parent-flow (4 processes, one after another): {seq_wall:7.2f} s, peak {seq_peak:.0f} MiB")
    print(f"  backfill, --max-concurrent {args.concurrency}, one worker:       {bf_wall:7.2f} s")
    print(f"  ratio (sequential / backfill): {seq_wall / bf_wall:.2f}x")
    print(f"  orchestration per partition run: {overhead * 1000:.0f} ms = creating {per_run_create * 1000:.1f} ms"
          f" + dispatch (claimed → RUNNING, starting the flow's process) p50 {statistics.median(dispatch) * 1000:.0f} ms"
          f" (p95 {pct(dispatch, 95) * 1000:.0f})"
          f" + handoff (a run ends → the next claimed) p50 {(statistics.median(handoff) if handoff else 0) * 1000:.0f} ms")
    print(f"  the work itself per run (RUNNING → end): p50 {statistics.median(work_s):.2f} s")
    print(f"  peak memory: server {sampler.peak['server']:.0f} MiB, worker {sampler.peak['worker']:.0f} MiB"
          f" (its flows not counted: each is a process of its own)")


if __name__ == "__main__":
    main()
