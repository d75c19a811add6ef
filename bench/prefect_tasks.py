"""The benchmark shapes of bench/tasks.py, in Prefect 3.

usage: prefect_tasks.py N sequential|concurrent|one-task

Prints one JSON line: the flow call's wall time ("returned") and the time
until all N task runs are visible as COMPLETED through the API ("recorded"),
since Prefect records task runs asynchronously.
"""
import json
import logging
import sys
import time

from prefect import flow, task


@task
def noop(i):
    return i


@flow
def bench_sequential(n):
    return sum(noop(i) for i in range(n))


@flow
def bench_concurrent(n):
    futures = [noop.submit(i) for i in range(n)]
    return sum(f.result() for f in futures)


@flow
def one_task():
    return noop(1)


def completed_task_runs(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client._client.post(
            "/task_runs/count",
            json={
                "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
                "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
            },
        )
        response.raise_for_status()
        return response.json()


class RetryCounter(logging.Handler):
    """Counts the answers Prefect's client retried, by status (503s, 429s)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.by_status = {}

    def emit(self, record):
        message = record.getMessage()
        marker = "retryable status code "
        if marker in message:
            status = message.split(marker, 1)[1].split(".", 1)[0]
            self.by_status[status] = self.by_status.get(status, 0) + 1


def main():
    retries = RetryCounter()
    client_logger = logging.getLogger("prefect.client")
    client_logger.addHandler(retries)
    client_logger.setLevel(logging.DEBUG)
    n, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "one-task":
        one_task()
        return
    fn = bench_sequential if mode == "sequential" else bench_concurrent
    t0 = time.perf_counter()
    state = fn(n, return_state=True)
    returned = time.perf_counter() - t0
    assert state.is_completed(), state
    # The client sends task runs' events from a queue of its own, which may
    # still hold many when the flow returns (its sender shares the GIL with
    # the flow): wait until it has sent them all, to tell the client's share
    # of the delay from the server's.
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    sent = time.perf_counter() - t0
    flow_run_id = state.state_details.flow_run_id
    # Wait for all N task runs, or until the count has not grown for 60 s:
    # under load Prefect's in-memory event queue drops messages, and the
    # missing task runs then never appear.
    seen, last_growth = 0, time.monotonic()
    while seen < n and time.monotonic() - last_growth < 60:
        count = completed_task_runs(flow_run_id)
        if count > seen:
            seen, last_growth = count, time.monotonic()
        else:
            time.sleep(0.1)
    recorded = time.perf_counter() - t0 if seen >= n else None
    print(json.dumps({"n": n, "mode": mode, "returned": returned, "sent": sent, "recorded": recorded, "visible": seen,
                      "retried": retries.by_status}))


if __name__ == "__main__":
    main()
