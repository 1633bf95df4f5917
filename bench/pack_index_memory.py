"""Memory of the packed-blob index map (packs.py) at a million blobs, beside its floor, in one run.

    python bench/pack_index_memory.py [--blobs 1000000] [--per-pack 8000] [--checkout PATH ...]

For each --checkout (default: this one; each in a process of its own) it writes --blobs blob
entries in indexes of --per-pack blobs (with their packs: zero bytes of the stated size) into an
in-process memory:// store, opens it again through PackedBackend and makes its map (what every
S3 command does before it finds a blob), and prints the bytes the map holds per blob
(tracemalloc: what stays allocated once it is made) beside the floor: what a blob's location
needs in compact arrays (16-byte digest, 8-byte offset, 4-byte length). It also prints the
seconds of making the map and of exists() of every blob, both without tracemalloc. The index
cache is off (ARTIFACTKIT_CACHE_DIR=off): nothing is read from or written to disk.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

FLOOR = 16 + 8 + 4  # digest, offset, length of one blob


def _refresh(backend) -> None:
    """Make the index map (pack_index.PackIndex since issue 28; PackedBackend itself before)."""
    index = getattr(backend, "index", None)
    index.refresh(force=True) if index is not None else backend._refresh(force=True)


def measure(checkout: str, blobs: int, per_pack: int) -> dict:
    os.environ["ARTIFACTKIT_CACHE_DIR"] = "off"
    sys.path.insert(0, checkout)
    from artifactkit.backends.fs import FsspecBackend
    from artifactkit.hashing import digest_bytes
    from artifactkit.layout import index_key, object_key, pack_key
    from artifactkit.packs import PackedBackend

    inner = FsspecBackend(f"memory://ak-bench-{os.getpid()}")
    digests: list[str] = []
    for first in range(0, blobs, per_pack):
        rows, offset = [], 0
        for _ in range(min(per_pack, blobs - first)):
            digests.append(os.urandom(16).hex())
            rows.append([digests[-1], offset, 1000])
            offset += 1000
        pack = os.urandom(16).hex()  # the map checks a pack's size against its index, not its bytes
        inner.write(pack_key(pack), bytes(offset))
        index = json.dumps({"pack": pack, "size": offset, "blobs": rows}, separators=(",", ":")).encode()
        inner.write(index_key(digest_bytes(index)), index)
    backend = PackedBackend(inner)
    start = time.perf_counter()
    _refresh(backend)
    made = time.perf_counter() - start
    keys = [object_key(d) for d in digests]
    start = time.perf_counter()
    assert len(backend.exists(keys)) == len(keys), "every blob is found"
    lookups = time.perf_counter() - start
    del backend
    backend = PackedBackend(inner)
    gc.collect()
    tracemalloc.start()
    _refresh(backend)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"checkout": checkout, "blobs": blobs, "bytes_per_blob": held / blobs, "map_s": made, "exists_s": lookups}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blobs", type=int, default=1_000_000)
    ap.add_argument("--per-pack", type=int, default=8000)
    ap.add_argument("--checkout", action="append", help="a source checkout to run (repeatable; default: this one)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # measure this checkout here and print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.blobs, args.per_pack)))
        return
    print(
        f"{args.blobs} blobs in indexes of {args.per_pack}; floor: compact arrays (digest, offset, length) "
        f"{FLOOR} B per blob"
    )
    for checkout in args.checkout or [str(Path(__file__).resolve().parent.parent)]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", checkout, "--blobs", str(args.blobs), "--per-pack", str(args.per_pack)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{checkout:40s} index map {r['bytes_per_blob']:6.1f} B per blob (x{r['bytes_per_blob'] / FLOOR:.2f} of "
            f"the floor), made in {r['map_s']:.2f} s, exists() of every blob {r['exists_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
