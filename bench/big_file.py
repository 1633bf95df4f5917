"""Peak memory of log, pull and verify of a folder holding one large sparse file (issue 14).

    python bench/big_file.py [--gb 2] [--code PATH]

Each step runs in a child process of its own and reports that child's peak RSS
(resource.getrusage(RUSAGE_SELF).ru_maxrss) and its wall time. --code runs the children against
another checkout (e.g. --code /work/main for the figures before streaming), via PYTHONPATH (the
children run in a scratch folder, so the current directory's code never shadows it).
The stat cache is off, so the log really reads and hashes the file. Target: < 300 MB each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STEP = """
import json, resource, sys, time
import artifactkit
step, store_dir, folder, dest = sys.argv[1:5]
store = artifactkit.open_store(store_dir)
start = time.perf_counter()
if step == "log":
    store.log_folder(folder, name="big")
elif step == "pull":
    artifactkit.pull(store, "big", dest)
else:
    assert artifactkit.verify(store).ok
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="checkout to measure")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": args.code, "ARTIFACTKIT_CACHE_DIR": "off"}
    with tempfile.TemporaryDirectory(prefix="ak-bigfile-") as tmp:
        work = Path(tmp)
        folder = work / "data"
        folder.mkdir()
        with open(folder / "big.bin", "wb") as f:  # sparse: holes read as zeros, cost no disk
            f.truncate(int(args.gb * (1 << 30)))
            f.write(b"a header, so the file is not all zeros")
        results = {}
        for step in ("log", "pull", "verify"):
            out = subprocess.run(
                [sys.executable, "-c", STEP, step, str(work / "store"), str(folder), str(work / "out")],
                check=True,
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp,
            ).stdout
            results[step] = json.loads(out.strip().splitlines()[-1])
    print(f"one {args.gb:g} GB sparse file, code from {args.code}")
    for step, r in results.items():
        print(f"{step:<7} peak RSS {r['peak_rss_mb']:8.0f} MB   {r['seconds']:6.2f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
