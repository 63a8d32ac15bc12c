"""Child processes for the reliability tests (run as ``python _child.py MODE ...``)."""

from __future__ import annotations

import os
import sys
import time


def log_points(run_id: str, shared_run_id: str, rank: int, n: int) -> None:
    import keel

    client = keel.get_client()
    with keel.start_run(run_id=run_id) as own:
        shared = client.buffer  # the shared run is logged through the same buffer
        for i in range(n):
            own.log_metric("loss", i / n, step=i)
            shared.add(shared_run_id, (f"loss_rank{rank}", float(i), i, time.time_ns() // 1000))
        keel.flush()


def flush_then_hang(experiment: str, n: int) -> None:
    import keel

    with keel.start_run(experiment=experiment) as run:
        for i in range(n):
            keel.log_metric("m", float(i), step=i)
        keel.flush()
        print(run.run_id, flush=True)  # the parent kills us once it reads this
        i = n
        while True:  # keep logging unflushed points until SIGKILL
            keel.log_metric("m", float(i), step=i)
            i += 1
            time.sleep(0.001)


def slow_upload(uri: str, endpoint: str) -> None:
    import io

    from keel.objects import open_object_store

    class Slow(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            time.sleep(0.05)
            if n == 0:
                return b""
            print("chunk", flush=True)
            return os.urandom(max(1, min(n if n > 0 else 1 << 20, 1 << 20)))

    store = open_object_store(uri, s3_endpoint_url=endpoint or None)
    store.put_stream(Slow())  # endless: killed mid-upload


def crash_without_with(experiment: str, crash: str) -> None:
    import keel

    run = keel.start_run(experiment=experiment)
    keel.log_metric("m", 1.0)
    print(run.run_id, flush=True)
    if crash == "crash":
        raise ValueError("boom in the training script")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "log":
        log_points(args[0], args[1], int(args[2]), int(args[3]))
    elif mode == "hang":
        flush_then_hang(args[0], int(args[1]))
    elif mode == "script":
        crash_without_with(args[0], args[1])
    elif mode == "upload":
        slow_upload(args[0], args[1] if len(args) > 1 else "")
