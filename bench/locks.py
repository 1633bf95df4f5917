"""What the writer lock (issue 27, locks.py) costs each log: one lock taken (a create-only write
and a listing of locks/) and released (a delete), with no gc around, on a local folder and on S3
(moto server on 127.0.0.1, as the tests use), against a log of one small file that re-uses its
blob (the cheapest log there is, so the lock's share is at its largest).

    python bench/locks.py [--n 50] [--s3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def measure(uri: str, n: int, options: dict | None = None) -> dict[str, float]:
    import artifactkit
    from artifactkit.locks import writing

    store = artifactkit.open_store(uri, options)
    store.log_files({"a.txt": b"a"}, name="x")
    lock, log = [], []
    for _ in range(n):
        start = time.perf_counter()
        with writing(store, "bench"):
            pass
        lock.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.log_files({"a.txt": b"a"}, name="x")  # same content: no new version, lock included
        log.append(time.perf_counter() - start)
    return {"lock_ms_median": statistics.median(lock) * 1e3, "log_ms_median": statistics.median(log) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--s3", action="store_true", help="also on a moto server (needs moto[server])")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("local", {k: round(v, 2) for k, v in measure(f"{tmp}/s", args.n).items()})
    if args.s3:
        import os
        import socket

        import boto3
        from moto.server import ThreadedMotoServer

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        try:
            os.environ.update(
                AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                AWS_ACCESS_KEY_ID="x",
                AWS_SECRET_ACCESS_KEY="x",
                AWS_DEFAULT_REGION="us-east-1",
            )
            boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket="bench")
            print("s3 (moto)", {k: round(v, 2) for k, v in measure("s3://bench/ak", args.n).items()})
        finally:
            server.stop()


if __name__ == "__main__":
    main()
