"""Cost of fencing a run holder's writes on S3 (issue 27), against a local moto server, in one run.

    python bench/fenced_writes.py [--writes 100]

Times N writes of a run record (the write a trainer makes at each epoch end) three ways, on one
store: unfenced (one PUT), fenced the old way (list the lease generations, then PUT: what S3 did
before the compare-and-swap, and what a backend without conditional replace still does), and
fenced by compare-and-swap (GET with the ETag, list the lease generations, PUT If-Match;
fencing.py). moto runs in this process here, so read the ratios and the request counts, not the
absolute milliseconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=100)
    n = parser.parse_args().writes

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    bucket = f"ak-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)

    import artifactkit
    from artifactkit import runs
    from artifactkit.lease import Lease
    from artifactkit.records import now_iso

    uri = f"s3://{bucket}/ak"
    store = artifactkit.open_store(uri)
    now = now_iso()
    record = runs.RunRecord(run_id="r1", created=now, updated=now, config={}, model_artifact="r1-model", total_epochs=n)
    runs.create_run(store, record)
    lease = Lease.claim(store, "r1", "run r1", ttl=600)
    cas = store.fenced_by(lease)
    old_way = artifactkit.open_store(uri)
    caps = old_way.backend.capabilities
    old_way.backend.capabilities = dataclasses.replace(caps, conditional_replace=False)
    old_way = old_way.fenced_by(lease)
    runs.save_run(cas, record)  # probes (If-None-Match, If-Match) once, outside the timing

    results = {}
    for label, target in (
        ("unfenced (PUT)", store),
        ("check then PUT (before)", old_way),
        ("compare-and-swap (now)", cas),
    ):
        start = time.perf_counter()
        for epoch in range(n):
            runs.save_run(target, record.with_(epochs_completed=epoch))
        results[label] = time.perf_counter() - start
    server.stop()
    base = results["unfenced (PUT)"]
    print(f"{n} run-record writes on moto ({endpoint}), one process:")
    for label, seconds in results.items():
        print(f"  {label:26s} {seconds:7.3f} s  {seconds / n * 1000:6.2f} ms/write  x{seconds / base:.2f}")
    print("requests per write: unfenced 1 PUT; before 1 LIST + 1 PUT; now 1 GET + 1 LIST + 1 PUT If-Match")


if __name__ == "__main__":
    main()
