"""Server-side benchmarks: Headwater against Prefect 3, side by side in one
run. Run it through `bench/run server`.

For each system: its server's memory idle; dispatch latency (a run created
through the API until its flow is RUNNING, through a process worker); a
40-task sequential flow reported to the server; API throughput for creating
flow runs (one per request) and logs (batches of 100); server memory after
10,000 runs. Times come from each server's own API (created vs. the RUNNING
state), so both are measured the same way.
"""
import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mib(pid):
    """Resident memory of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return total / 1024


def wait_health(url, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} never answered")


def iso(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def post(http, url, **kw):
    """POST, retrying 503/429 with backoff as Prefect's own client does; the
    retries count in the measured time."""
    for attempt in range(20):
        r = http.post(url, **kw)
        if r.status_code not in (429, 503):
            r.raise_for_status()
            return r
        time.sleep(min(0.05 * 2**attempt, 2))
    r.raise_for_status()
    return r


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def prefect_worker_dispatch(python, api, env, runs, spread):
    """Prefect's own process worker against the server at `api`, per run
    (ms): created → handed to the worker (its first PENDING state) and
    created → RUNNING (the flow's Python process has started and reported
    in). With `spread`, runs are created at random points of the worker's
    poll cycle; without, each right after the last one ended."""
    prefect_bin = os.path.join(os.path.dirname(python), "prefect")
    client_env = dict(env, PREFECT_API_URL=api)
    subprocess.run([prefect_bin, "work-pool", "create", "bench", "--type", "process"], env=client_env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([python, os.path.join(HERE, "prefect_server_flows.py"), HERE, "bench"], env=client_env, check=True,
                   stdout=subprocess.DEVNULL, cwd=HERE)
    worker = subprocess.Popen([prefect_bin, "worker", "start", "--pool", "bench"], env=client_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE)
    try:
        time.sleep(5)
        http = httpx.Client(base_url=api, timeout=60)
        dep = http.get("/deployments/name/noop-flow/lat").json()
        lat = []
        for _ in range(runs):
            run = post(http, f"/deployments/{dep['id']}/create_flow_run", json={}).json()
            while True:
                r = http.get(f"/flow_runs/{run['id']}").json()
                if r["state_type"] == "COMPLETED" and r.get("start_time"):
                    break
                time.sleep(0.1)
            created = iso(run["created"])
            states = http.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
            handed = min(iso(st["timestamp"]) for st in states if st["type"] == "PENDING")
            lat.append({"handed": (handed - created).total_seconds() * 1000,
                        "running": (iso(r["start_time"]) - created).total_seconds() * 1000})
            if spread:
                time.sleep(random.uniform(0, 12))
        return lat
    finally:
        stop(worker)



# ---------------------------------------------------------------- Headwater


def headwater(bin_dir, runs, logs, latency_runs, many):
    out = {}
    home = tempfile.mkdtemp()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, HEADWATER_HOME=home, HEADWATER_LOGGING_CONSOLE="false")
    env.pop("HEADWATER_API_URL", None)
    server = subprocess.Popen([f"{bin_dir}/headwater", "server", "start", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(f"{api}/health")
        time.sleep(3)
        out["idle_mib"] = tree_rss_mib(server.pid)
        client_env = dict(env, HEADWATER_API_URL=api, HEADWATER_HOME=tempfile.mkdtemp())

        # Dispatch latency through a process worker.
        manifest = os.path.join(client_env["HEADWATER_HOME"], "headwater.yaml")
        with open(manifest, "w") as f:
            f.write(f'deployments:\n  - name: lat\n    flow: one-task\n    entrypoint: ["{bin_dir}/hw-examples", "one-task"]\n'
                    "    work_pool: {name: bench}\n")
        subprocess.run([f"{bin_dir}/headwater", "deploy", "--file", manifest, "--no-check"], env=client_env, check=True,
                       stdout=subprocess.DEVNULL)
        worker = subprocess.Popen([f"{bin_dir}/headwater", "worker", "start", "--pool", "bench"], env=client_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        lat = []
        for _ in range(latency_runs):
            before = {r["id"] for r in httpx.post(f"{api}/flow_runs/filter", json={"limit": 10000}).json()}
            subprocess.run([f"{bin_dir}/headwater", "deployment", "run", "lat", "--no-check"], env=client_env, check=True,
                           stdout=subprocess.DEVNULL)
            new = None
            while new is None:
                rows = httpx.post(f"{api}/flow_runs/filter", json={"limit": 10000}).json()
                new = next((r for r in rows if r["id"] not in before), None)
            while True:
                states = httpx.get(f"{api}/states/{new['id']}").json()
                running = next((s for s in states if s["state"]["type"] == "RUNNING"), None)
                done = any(s["state"]["type"] == "COMPLETED" for s in states)
                if running and done:
                    break
                time.sleep(0.02)
            lat.append((iso(running["state"]["timestamp"]) - iso(new["created"])).total_seconds() * 1000)
        stop(worker)
        out["dispatch_ms"] = lat

        # A 40-task sequential flow reporting to the server.
        t = json.loads(subprocess.run([f"{bin_dir}/hw-bench", "40", "sequential"], env=client_env, check=True,
                                      capture_output=True, text=True).stdout)
        out["flow40_s"] = t["seconds"]

        # API throughput: flow runs one per request, logs in batches of 100.
        http = httpx.Client(base_url=api, timeout=30)
        now = datetime.now(timezone.utc).isoformat()

        def flow_run():
            return {"id": str(uuid.uuid4()), "flow_id": str(uuid.uuid4()), "flow_name": "api-bench", "name": "r",
                    "parameters": {}, "tags": [], "state": {"type": "PENDING", "name": "Pending", "timestamp": now},
                    "parent_flow_run_id": None, "run_count": 0, "start_time": None, "end_time": None, "created": now}

        t0 = time.perf_counter()
        for _ in range(runs):
            post(http, "/batches", json={"flow_runs": [flow_run()]})
        out["runs_per_s"] = runs / (time.perf_counter() - t0)
        target = flow_run()
        post(http, "/batches", json={"flow_runs": [target]})
        t0 = time.perf_counter()
        for b in range(logs // 100):
            batch = [{"id": 0, "flow_run_id": target["id"], "task_run_id": None, "level": "INFO", "timestamp": now,
                      "message": f"log {b}-{i}"} for i in range(100)]
            post(http, "/batches", json={"logs": batch})
        out["logs_per_s"] = logs / (time.perf_counter() - t0)
        for _ in range(many // 1000):
            post(http, "/batches", json={"flow_runs": [flow_run() for _ in range(1000)]})
        time.sleep(1)
        out["after_runs_mib"] = tree_rss_mib(server.pid)
    finally:
        stop(server)
    return out


# ------------------------------------------------------------------ Prefect


def prefect(python, runs, logs, latency_runs, many):
    out = {}
    home = tempfile.mkdtemp()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect_bin = os.path.join(os.path.dirname(python), "prefect")
    env = dict(os.environ, PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen([prefect_bin, "server", "start", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(f"{api}/health")
        time.sleep(3)
        out["idle_mib"] = tree_rss_mib(server.pid)
        client_env = dict(env, PREFECT_API_URL=api)
        dispatch = prefect_worker_dispatch(python, api, env, latency_runs, spread=False)
        out["dispatch_ms"] = [d["running"] for d in dispatch]
        http = httpx.Client(base_url=api, timeout=60)

        t = json.loads(subprocess.run([python, os.path.join(HERE, "prefect_tasks.py"), "40", "sequential"], env=client_env,
                                      check=True, capture_output=True, text=True).stdout)
        out["flow40_s"] = t["recorded"] if t["recorded"] is not None else t["returned"]

        flow = post(http, "/flows/", json={"name": "api-bench"}).json()
        t0 = time.perf_counter()
        for _ in range(runs):
            post(http, "/flow_runs/", json={"flow_id": flow["id"], "state": {"type": "PENDING"}})
        out["runs_per_s"] = runs / (time.perf_counter() - t0)
        target = post(http, "/flow_runs/", json={"flow_id": flow["id"]}).json()
        now = datetime.now(timezone.utc).isoformat()
        t0 = time.perf_counter()
        for b in range(logs // 100):
            batch = [{"name": "bench", "level": 20, "message": f"log {b}-{i}", "timestamp": now,
                      "flow_run_id": target["id"]} for i in range(100)]
            post(http, "/logs/", json=batch)
        out["logs_per_s"] = logs / (time.perf_counter() - t0)
        # Prefect has no bulk create for flow runs: one request each.
        for _ in range(many - runs - 1):
            post(http, "/flow_runs/", json={"flow_id": flow["id"], "state": {"type": "PENDING"}})
        time.sleep(1)
        out["after_runs_mib"] = tree_rss_mib(server.pid)
    finally:
        stop(server)
        # Prefect's server runs uvicorn in a child that can outlive it.
        subprocess.run(["pkill", "-f", f"prefect.server.api.server:create_app .*--port {port}"], check=False)
        subprocess.run(["pkill", "-f", f"server start --port {port}"], check=False)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--headwater-bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--logs", type=int, default=10000)
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--many", type=int, default=10000)
    ap.add_argument("--only", choices=["headwater", "prefect"], help="measure one side (for checking a change)")
    a = ap.parse_args()
    a.python = os.path.abspath(a.python)
    a.headwater_bin = os.path.abspath(a.headwater_bin)
    if a.only != "prefect":
        hw = headwater(a.headwater_bin, a.runs, a.logs, a.latency_runs, a.many)
        print(f"  headwater: {hw}", file=sys.stderr)
    if a.only != "headwater":
        pf = prefect(a.python, a.runs, a.logs, a.latency_runs, a.many)
        print(f"  prefect: {pf}", file=sys.stderr)
    if a.only:
        return
    rows = [
        ("server memory, idle", f"{hw['idle_mib']:.0f} MiB", f"{pf['idle_mib']:.0f} MiB", pf["idle_mib"] / hw["idle_mib"]),
        ("dispatch latency p50 (created → RUNNING)", f"{statistics.median(hw['dispatch_ms']):.0f} ms",
         f"{statistics.median(pf['dispatch_ms']):.0f} ms", statistics.median(pf["dispatch_ms"]) / statistics.median(hw["dispatch_ms"])),
        ("dispatch latency p99", f"{pct(hw['dispatch_ms'], 99):.0f} ms", f"{pct(pf['dispatch_ms'], 99):.0f} ms",
         pct(pf["dispatch_ms"], 99) / pct(hw["dispatch_ms"], 99)),
        ("40 sequential tasks, reported to the server", f"{hw['flow40_s'] * 1000:.0f} ms", f"{pf['flow40_s'] * 1000:.0f} ms",
         pf["flow40_s"] / hw["flow40_s"]),
        ("API: flow runs created per second (one per request)", f"{hw['runs_per_s']:.0f}", f"{pf['runs_per_s']:.0f}",
         hw["runs_per_s"] / pf["runs_per_s"]),
        ("API: logs written per second (batches of 100)", f"{hw['logs_per_s']:.0f}", f"{pf['logs_per_s']:.0f}",
         hw["logs_per_s"] / pf["logs_per_s"]),
        (f"server memory after {a.many} runs", f"{hw['after_runs_mib']:.0f} MiB", f"{pf['after_runs_mib']:.0f} MiB",
         pf["after_runs_mib"] / hw["after_runs_mib"]),
    ]
    print("| measure | Headwater | Prefect 3.9.1 | Headwater's advantage |")
    print("|---|---:|---:|---:|")
    for name, h, p, ratio in rows:
        print(f"| {name} | {h} | {p} | **{ratio:.0f}×** |")


if __name__ == "__main__":
    main()
