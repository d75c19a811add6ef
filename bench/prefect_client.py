"""Prefect's own client against two servers, side by side in one run: the
same flows (bench/prefect_tasks.py) with the same prefect 3.9.1 client,
once against `prefect server start` and once against `headwater server
start` (its Prefect-compatible API, /prefect/api). Run it through
`bench/run prefect-client`.

For N trivial tasks, sequential and submitted: the flow's wall time, the
time until every task run is recorded (COMPLETED through the server's own
API), how many were recorded at all, and the answers the client had to
retry (503s, 429s). Each server's memory, idle and after the runs. And the
dispatch latency with Prefect's own process worker at its default poll
interval: a deployment's run created through the API until its flow is
RUNNING (both times from the server's own records, the same calls on both).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


from server import free_port, pct, prefect_worker_dispatch, stop, tree_rss_mib, wait_health

HERE = os.path.dirname(os.path.abspath(__file__))


def run_flows(python, api, env, sizes, modes):
    results = []
    for n in sizes:
        for mode in modes:
            p = subprocess.run([python, os.path.join(HERE, "prefect_tasks.py"), str(n), mode],
                               env=dict(env, PREFECT_API_URL=api), capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{mode} {n} against {api} failed:\n{p.stderr[-4000:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"    {api}: {r}", file=sys.stderr)
            results.append(r)
    return results


def side(name, start, api, python, sizes, modes, home, latency_runs):
    env = dict(os.environ, PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_API_KEY", None)
    server = start(env)
    try:
        wait_health(f"{api}/health")
        time.sleep(3)
        idle = tree_rss_mib(server.pid)
        runs = run_flows(python, api, env, sizes, modes)
        time.sleep(1)
        after = tree_rss_mib(server.pid)
        lat = prefect_worker_dispatch(python, api, env, latency_runs, spread=True) if latency_runs else []
    finally:
        stop(server)
    print(f"  {name}: idle {idle:.0f} MiB, after {after:.0f} MiB, dispatch {lat}", file=sys.stderr)
    return {"idle_mib": idle, "after_mib": after, "runs": runs, "dispatch_ms": lat}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--headwater-bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--modes", default="sequential,concurrent")
    ap.add_argument("--latency-runs", type=int, default=10)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    modes = a.modes.split(",")
    python = os.path.abspath(a.python)
    prefect_bin = os.path.join(os.path.dirname(python), "prefect")

    hw_port, pf_port = free_port(), free_port()
    hw_home, pf_home = tempfile.mkdtemp(), tempfile.mkdtemp()

    def start_headwater(env):
        return subprocess.Popen([os.path.join(os.path.abspath(a.headwater_bin), "headwater"), "server", "start",
                                 "--port", str(hw_port)], env=dict(env, HEADWATER_HOME=hw_home),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_prefect(env):
        return subprocess.Popen([prefect_bin, "server", "start", "--port", str(pf_port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        hw = side("headwater", start_headwater, f"http://127.0.0.1:{hw_port}/prefect/api", python, sizes, modes,
                  tempfile.mkdtemp(), a.latency_runs)
        pf = side("prefect", start_prefect, f"http://127.0.0.1:{pf_port}/api", python, sizes, modes, pf_home,
                  a.latency_runs)
    finally:
        # Prefect's server runs uvicorn in a child that can outlive it.
        subprocess.run(["pkill", "-f", f"prefect.server.api.server:create_app .*--port {pf_port}"], check=False)
        subprocess.run(["pkill", "-f", f"server start --port {pf_port}"], check=False)

    print("| measure | Headwater | Prefect 3.9.1 | Headwater's advantage |")
    print("|---|---:|---:|---:|")
    for h, p in zip(hw["runs"], pf["runs"]):
        what = f"{h['n']:,} tasks, {'submitted' if h['mode'] == 'concurrent' else 'sequential'}"

        def recorded(r):
            return f"{r['recorded']:.1f} s" if r["recorded"] is not None else "never"

        ratio = (p["recorded"] / h["recorded"]) if (p["recorded"] and h["recorded"]) else None
        print(f"| {what}: until every task run is recorded | {recorded(h)} | {recorded(p)} | "
              f"{f'**{ratio:.1f}×**' if ratio else '—'} |")
        print(f"| {what}: task runs recorded | {h['visible']:,} of {h['n']:,} | {p['visible']:,} of {p['n']:,} | |")
        lag = lambda r: f"{r['recorded'] - r['returned']:.2f} s" if r["recorded"] is not None else "—"
        print(f"| {what}: recorded after the flow returned | {lag(h)} | {lag(p)} | |")
        # The client may still be sending from its own queue when the flow
        # returns; this is the server's share alone.
        sent_lag = lambda r: f"{r['recorded'] - r['sent']:.2f} s" if r["recorded"] is not None else "—"
        print(f"| {what}: recorded after the client sent its last event | {sent_lag(h)} | {sent_lag(p)} | |")
        retried = lambda r: ", ".join(f"{c} × {s}" for s, c in sorted(r["retried"].items())) or "0"
        print(f"| {what}: answers the client retried (503, 429) | {retried(h)} | {retried(p)} | |")
    if hw["dispatch_ms"] and pf["dispatch_ms"]:
        for key, what in [("handed", "created → handed to the worker"), ("running", "created → RUNNING")]:
            h, p = [d[key] for d in hw["dispatch_ms"]], [d[key] for d in pf["dispatch_ms"]]
            h50, p50 = statistics.median(h), statistics.median(p)
            print(f"| dispatch with Prefect's worker, p50 ({what}) | {h50:.0f} ms | {p50:.0f} ms | "
                  f"**{p50 / max(h50, 1):.0f}×** |")
            h99, p99 = pct(h, 99), pct(p, 99)
            print(f"| dispatch with Prefect's worker, p99 ({what}) | {h99:.0f} ms | {p99:.0f} ms | "
                  f"**{p99 / max(h99, 1):.0f}×** |")
    print(f"| server memory, idle | {hw['idle_mib']:.0f} MiB | {pf['idle_mib']:.0f} MiB | "
          f"**{pf['idle_mib'] / hw['idle_mib']:.0f}×** |")
    print(f"| server memory, after the runs | {hw['after_mib']:.0f} MiB | {pf['after_mib']:.0f} MiB | "
          f"**{pf['after_mib'] / hw['after_mib']:.0f}×** |")


if __name__ == "__main__":
    main()
