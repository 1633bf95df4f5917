"""Memory of the packed-blob index map (packs.py) at a million blobs, beside its floor, in one run.

    python bench/pack_index_memory.py [--blobs 1000000] [--per-pack 8000] [--checkout PATH]

Writes --blobs blob entries in indexes of --per-pack blobs (with their packs: random bytes of
the stated size) into an in-process memory:// store, then opens it again through PackedBackend
and makes its map (what every S3 command does before it finds a blob), and prints the bytes the
map holds per blob (tracemalloc: what stays allocated once the map is made) beside the floor:
the bytes a blob's location needs in compact arrays (16-byte digest, 8-byte offset, 4-byte
length). It also prints the seconds the map took and of one lookup of every blob. The index
cache is off (ARTIFACTKIT_CACHE_DIR=off), so nothing is read from or written to disk.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

FLOOR = 16 + 8 + 4  # digest, offset, length of one blob


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blobs", type=int, default=1_000_000)
    ap.add_argument("--per-pack", type=int, default=8000)
    ap.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent))
    args = ap.parse_args()
    os.environ["ARTIFACTKIT_CACHE_DIR"] = "off"
    sys.path.insert(0, args.checkout)
    from artifactkit.backends.fs import FsspecBackend
    from artifactkit.hashing import digest_bytes
    from artifactkit.layout import index_key, object_key, pack_key
    from artifactkit.packs import PackedBackend

    inner = FsspecBackend(f"memory://ak-bench-{os.getpid()}")
    digests: list[str] = []
    for first in range(0, args.blobs, args.per_pack):
        count = min(args.per_pack, args.blobs - first)
        rows, offset = [], 0
        for _ in range(count):
            length = 1000
            digests.append(os.urandom(16).hex())
            rows.append([digests[-1], offset, length])
            offset += length
        pack = os.urandom(16).hex()  # the map checks a pack's size against its index, not its bytes
        inner.write(pack_key(pack), b"\0" * offset)
        index = json.dumps({"pack": pack, "size": offset, "blobs": rows}, separators=(",", ":")).encode()
        inner.write(index_key(digest_bytes(index)), index)
    backend = PackedBackend(inner)
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    backend._refresh(force=True)
    seconds = time.perf_counter() - start
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    keys = [object_key(d) for d in digests]
    start = time.perf_counter()
    found = backend.exists(keys)
    lookup = time.perf_counter() - start
    assert len(found) == len(keys), "every blob is found"
    print(f"{args.blobs} blobs in indexes of {args.per_pack}, code from {args.checkout}")
    print(f"index map held   {held / args.blobs:6.1f} B per blob   ({held / 1e6:.0f} MB)   made in {seconds:.2f} s")
    print(f"  floor: compact arrays (digest, offset, length) {FLOOR} B per blob   x{held / args.blobs / FLOOR:.2f}")
    print(f"exists() of every blob {lookup:.2f} s")


if __name__ == "__main__":
    main()
