"""Running one measured process, shared by the benchmarks."""
import os
import subprocess
import sys
import tempfile
import time


def run_measured(cmd, env=None):
    """Runs cmd; returns (stdout, wall seconds, peak RSS in MiB). The peak
    is wait4's maximum resident set size, which covers the process and the
    children it waited for (gunzip and psql in a shell pipeline)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-4000:]
            sys.exit(f"{' '.join(cmd)} failed with status {code}:\n{tail}")
    return out.decode(), wall, usage.ru_maxrss / 1024.0
