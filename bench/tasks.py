"""Per-task overhead, one-task process time and peak memory: Headwater
against Prefect 3, side by side in one run. Run it through bench/run.

Each measurement is a fresh process with a fresh state folder (Headwater's
HEADWATER_HOME, Prefect's PREFECT_HOME), console logging off for both.
Peak memory is the process's maximum resident set size (wait4).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import run_measured  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def headwater_env(home):
    env = dict(os.environ)
    env.update(HEADWATER_HOME=home, HEADWATER_LOGGING_CONSOLE="false")
    env.pop("HEADWATER_API_URL", None)
    return env


def prefect_env(home):
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=home,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    env.pop("PREFECT_API_URL", None)
    return env


def stored_bytes(path):
    """The bytes a SQLite database holds (its WAL folded in, free pages not
    counted), or None when there is no database."""
    if not os.path.exists(path):
        return None
    import sqlite3
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    used = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
    con.close()
    return used * page


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--headwater-bin", required=True, help="folder with hw-bench and hw-examples")
    ap.add_argument("--python", required=True, help="python of the venv with Prefect")
    ap.add_argument("--sizes", default="40,1000,10000")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the one-task process")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    hw_bench = os.path.join(args.headwater_bin, "hw-bench")
    hw_examples = os.path.join(args.headwater_bin, "hw-examples")
    prefect_script = os.path.join(HERE, "prefect_tasks.py")

    print("| shape | tasks | Headwater µs/task | Prefect µs/task (flow returned) | Prefect µs/task (all recorded) | ratio | Headwater peak RSS | Prefect peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    totals = {}
    stored = []
    for mode in ("sequential", "concurrent"):
        for n in sizes:
            with tempfile.TemporaryDirectory() as h1, tempfile.TemporaryDirectory() as h2:
                out, _, hw_rss = run_measured([hw_bench, str(n), mode], headwater_env(h1))
                hw = json.loads(out)
                out, _, pf_rss = run_measured([args.python, prefect_script, str(n), mode], prefect_env(h2))
                pf = json.loads(out)
                stored.append((mode, n, stored_bytes(os.path.join(h1, "headwater.db")),
                               stored_bytes(os.path.join(h2, "prefect.db")), pf["visible"] if pf["recorded"] is None else n))
            hw_us = hw["seconds"] / n * 1e6
            pf_ret_us = pf["returned"] / n * 1e6
            totals[(mode, n)] = (hw["seconds"], pf["returned"], pf["recorded"])
            if pf["recorded"] is not None:
                pf_us = pf["recorded"] / n * 1e6
                recorded, ratio = f"{pf_us:.1f}", f"**{pf_us / hw_us:.0f}×**"
            else:
                # Prefect lost task runs: compare on the flow's return instead, and say so.
                recorded = f"never: only {pf['visible']} of {n} task runs recorded"
                ratio = f"**{pf_ret_us / hw_us:.0f}×** (vs. return)"
            print(
                f"| {mode} | {n} | {hw_us:.1f} | {pf_ret_us:.1f} | {recorded} | {ratio} | {hw_rss:.0f} MiB | {pf_rss:.0f} MiB |",
                flush=True,
            )

    if len(sizes) >= 2:
        small, large = sorted(sizes)[-2:]
        print()
        print(f"Marginal cost of one more task (between {small} and {large} tasks; cancels start-up costs on both sides):")
        print()
        print("| shape | Headwater µs/task | Prefect µs/task | ratio |")
        print("|---|---:|---:|---:|")
        for mode in ("sequential", "concurrent"):
            (hw_s, ret_s, rec_s), (hw_l, ret_l, rec_l) = totals[(mode, small)], totals[(mode, large)]
            # One basis for both sizes: all runs recorded if Prefect got there
            # both times, else the flow's return.
            if rec_s is not None and rec_l is not None:
                pf_s, pf_l, basis = rec_s, rec_l, "all recorded"
            else:
                pf_s, pf_l, basis = ret_s, ret_l, "flow returned (Prefect never recorded them all)"
            hw_m = (hw_l - hw_s) / (large - small) * 1e6
            pf_m = (pf_l - pf_s) / (large - small) * 1e6
            print(f"| {mode} | {hw_m:.1f} | {pf_m:.1f} ({basis}) | **{pf_m / hw_m:.0f}×** |", flush=True)

    if len(sizes) >= 2:
        # Bytes per recorded task run, between the two largest sizes: the
        # database's fixed part (schema, flows) cancels.
        small, large = sorted(sizes)[-2:]
        print()
        print(f"Bytes stored per task run (with its states; between {small} and {large} tasks):")
        print()
        print("| shape | Headwater bytes/task run | Prefect bytes/task run | ratio |")
        print("|---|---:|---:|---:|")
        by = {(m, n): (h, p, rec) for m, n, h, p, rec in stored}
        for mode in ("sequential", "concurrent"):
            (hs, ps, rs), (hl, pl, rl) = by[(mode, small)], by[(mode, large)]
            if None in (hs, ps, hl, pl):
                print(f"| {mode} | n/a | n/a | |")
                continue
            # Per task run the flow made: Prefect's database also holds the
            # events of the task runs it then failed to record.
            hw_b, pf_b = (hl - hs) / (large - small), (pl - ps) / (large - small)
            lost = "" if rl == large else f" (it recorded {rl} of {large})"
            print(f"| {mode} | {hw_b:.0f} | {pf_b:.0f}{lost} | **{pf_b / hw_b:.1f}×** |", flush=True)

    hw_one, pf_one = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as h1, tempfile.TemporaryDirectory() as h2:
            hw_one.append(run_measured([hw_examples, "one-task"], headwater_env(h1))[1])
            pf_one.append(run_measured([args.python, prefect_script, "1", "one-task"], prefect_env(h2))[1])
    hw_med, pf_med = statistics.median(hw_one), statistics.median(pf_one)
    print()
    print("| one-task flow, whole process (median of %d) | Headwater | Prefect | ratio |" % args.repeat)
    print("|---|---:|---:|---:|")
    print(f"| wall time | {hw_med * 1000:.0f} ms | {pf_med * 1000:.0f} ms | **{pf_med / hw_med:.0f}×** |")


if __name__ == "__main__":
    main()
