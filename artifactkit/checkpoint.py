"""Training state <-> a store version: one blob per tensor plus a JSON skeleton. No pickle.

The state is any nesting of dicts, lists and tuples holding tensors, numpy arrays and plain JSON
values. Tensors and arrays become entries `tensors/<n>` (raw bytes, dtype and shape in the entry's
meta); everything else stays in `state.json`, with tags that keep what JSON would lose (tuples,
non-string dict keys). Since blobs are named by content, a tensor that did not change between two
checkpoints (a frozen layer, a buffer) is stored once.
"""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch

from .errors import IntegrityError, InvalidInput, NotFound
from .lifecycle import FULL_STATE, full_state_version
from .records import VersionRecord
from .store import LogResult, Store

SKELETON = "state.json"
_TENSOR, _ARRAY, _TUPLE, _DICT = "__tensor__", "__ndarray__", "__tuple__", "__dict__"
# A trainer's state nests about 6 deep; a forged skeleton must not exhaust the stack.
MAX_DEPTH = 100
MAX_DIMS = 32
MAX_ELEMENTS = 1 << 40  # of a tensor, empty sides counted as 1: [2^62, 2^62, 0] passed as 0 bytes and broke torch.empty
# The dtypes a checkpoint holds: plain numbers whose raw bytes are the whole value. An object
# array's bytes would be pointers, so it is refused on save and on load alike.
TORCH_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.complex64,
        torch.complex128,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}
NUMPY_KINDS = "biufc"  # bool, signed, unsigned, float, complex


def flatten(state: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor | np.ndarray]]:
    """(JSON skeleton, {entry path: tensor}) — tensors are detached CPU copies, safe to keep
    while training goes on mutating the originals."""
    tensors: dict[str, torch.Tensor | np.ndarray] = {}

    def walk(value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"checkpoint state is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided or str(value.dtype).removeprefix("torch.") not in TORCH_DTYPES:
                raise InvalidInput(
                    f"checkpoint state holds a {value.layout} {value.dtype} tensor, which has no safe encoding"
                )
            path = f"tensors/{len(tensors):06d}"
            tensors[path] = value.detach().to("cpu", copy=True)
            return {_TENSOR: path}
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in NUMPY_KINDS:
                raise InvalidInput(
                    f"checkpoint state holds an array of dtype {value.dtype}, which has no safe encoding"
                )
            path = f"tensors/{len(tensors):06d}"
            tensors[path] = value.copy()
            return {_ARRAY: path}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: walk(v, depth + 1) for k, v in value.items()}
            return {_DICT: [[walk(k, depth + 1), walk(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [walk(v, depth + 1) for v in value]}
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, (np.integer, np.floating)):
            return value.item()
        if isinstance(value, torch.dtype):
            return str(value)
        raise InvalidInput(f"checkpoint state holds a {type(value).__name__}, which has no safe encoding")

    return walk(state), tensors


def tensor_bytes(t: torch.Tensor | np.ndarray) -> tuple[bytes, dict[str, Any]]:
    if isinstance(t, np.ndarray):
        arr = np.ascontiguousarray(t)
        return arr.tobytes(), {"kind": "ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape)}
    t = t.contiguous()
    # Raw bytes through a uint8 view: works for every dtype, bfloat16 included (numpy has none).
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return data, {"kind": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}


def tensor_from_bytes(data: bytes, meta: Any, where: str) -> torch.Tensor | np.ndarray:
    """The tensor or array an entry's bytes and meta describe; anything forged is refused naming `where`."""
    kind, dtype, shape = _check_meta(meta, where)
    expected = math.prod(shape) * (dtype.itemsize if kind == "ndarray" else torch.empty((), dtype=dtype).element_size())
    if len(data) != expected:
        raise IntegrityError(f"{where}: {len(data)} bytes where {meta['dtype']}{list(shape)} needs {expected}")
    if math.prod(max(n, 1) for n in shape) > MAX_ELEMENTS:  # no bytes, but sides torch cannot lay out
        raise InvalidInput(f"{where}: shape {list(shape)} is larger than any tensor a checkpoint holds")
    if kind == "ndarray":
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)


def _check_meta(meta: Any, where: str) -> tuple[str, Any, tuple[int, ...]]:
    if not isinstance(meta, dict) or "dtype" not in meta or "shape" not in meta:
        raise InvalidInput(f"{where}: entry has no dtype/shape metadata")
    kind, name, shape = meta.get("kind", "tensor"), meta["dtype"], meta["shape"]
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(type(n) is int and n >= 0 for n in shape)):
        raise InvalidInput(f"{where}: shape {shape!r} is not a list of at most {MAX_DIMS} sizes")
    if kind == "tensor" and isinstance(name, str) and name in TORCH_DTYPES:
        return kind, TORCH_DTYPES[name], tuple(shape)
    if kind == "ndarray" and isinstance(name, str):
        try:
            dtype = np.dtype(name)
        except (TypeError, ValueError, SyntaxError):  # what numpy raises for a string it cannot parse
            dtype = None
        if dtype is not None and dtype.kind in NUMPY_KINDS:
            return kind, dtype, tuple(shape)
    raise InvalidInput(f"{where}: {kind!r} entry of dtype {name!r} is not a number type a checkpoint holds")


def unflatten(skeleton: Any, tensors: dict[str, Any], where: str = "checkpoint") -> Any:
    """flatten()'s skeleton with its tensors put back; a skeleton that is not one flatten() could
    have written (a dangling tensor path, a bad tag, nesting deeper than MAX_DEPTH) is refused."""

    def bad(what: str) -> InvalidInput:
        return InvalidInput(f"{where} {SKELETON}: {what}")

    def walk(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise bad(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            return value
        tag = next((t for t in (_TENSOR, _ARRAY, _TUPLE, _DICT) if t in value), None)
        if tag is None:
            return {k: walk(v, depth + 1) for k, v in value.items()}
        item = value[tag]
        if len(value) != 1 or (tag in (_TENSOR, _ARRAY)) != isinstance(item, str) or not isinstance(item, (str, list)):
            raise bad(f"malformed {tag} tag")
        if tag in (_TENSOR, _ARRAY):
            if item not in tensors:
                raise bad(f"entry {item!r} is missing")
            return tensors[item]
        if tag == _TUPLE:
            return tuple(walk(v, depth + 1) for v in item)
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in item):
            raise bad(f"malformed {tag} tag")
        pairs = [(walk(k, depth + 1), walk(v, depth + 1)) for k, v in item]
        try:
            return dict(pairs)
        except TypeError:  # a key that is a list or dict
            raise bad("a dict key that cannot be one") from None

    return walk(skeleton, 0)


def encode(skeleton: Any, tensors: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """flatten()'s output -> ({entry path: bytes}, {entry path: meta}) ready for Store.log_files."""
    files: dict[str, bytes] = {SKELETON: json.dumps(skeleton).encode()}  # key order kept
    metas: dict[str, dict[str, Any]] = {}
    for path, t in tensors.items():
        files[path], metas[path] = tensor_bytes(t)
    return files, metas


def save(store: Store, name: str, state: Any, **log_options: Any) -> LogResult:
    return _write(store, name, *flatten(state), **log_options)


def thin(skeleton: Any, tensors: dict[str, Any], drop: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """flatten()'s output without the top-level keys `drop`, and only the tensors the rest uses
    (under the same entry paths, so they are the same blobs as in the full state)."""
    kept = {k: v for k, v in skeleton.items() if k not in drop}
    used: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for tag in (_TENSOR, _ARRAY):
                if isinstance(value.get(tag), str):
                    used.add(value[tag])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(kept)
    return kept, {path: t for path, t in tensors.items() if path in used}


def _write(store: Store, name: str, skeleton: Any, tensors: dict[str, Any], **log_options: Any) -> LogResult:
    files, metas = encode(skeleton, tensors)
    return store.log_files(files, name=name, type="model", entry_meta=metas, dedup_latest=False, **log_options)


def load(store: Store, ref: str | VersionRecord) -> Any:
    """The state saved at a version (NAME:vN / NAME:ALIAS, or its record), every blob checked
    against its digest. A version that is not a checkpoint flatten() wrote is refused, naming it
    and the entry; one deleted (and collected by gc) while it loads is one line saying so."""
    record = ref if isinstance(ref, VersionRecord) else store.resolve(ref)
    with store.reading(record, "loading it"):
        return _load(store, record)


def _load(store: Store, record: VersionRecord) -> Any:
    entries = store.manifest(record).by_path()
    version = f"{store.uri}: {record.name}:{record.label}"
    if SKELETON not in entries:
        raise InvalidInput(f"{version} is not a checkpoint (no {SKELETON})")
    try:
        skeleton = json.loads(store.read_blob(entries[SKELETON].digest))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidInput(f"{version} {SKELETON}: not JSON a checkpoint writes ({type(e).__name__})") from None
    tensors = {}
    for path, entry in entries.items():
        if path == SKELETON:
            continue
        where = f"{version} {path}"
        tensors[path] = tensor_from_bytes(store.read_blob(entry.digest), entry.meta, where)
    return unflatten(skeleton, tensors, version)


def _write_pair(
    store: Store,
    name: str,
    full: str,
    skeleton: Any,
    tensors: dict[str, Any],
    drop: tuple[str, ...],
    log_options: dict[str, Any],
) -> LogResult:
    """The full state first (so a thin checkpoint never names a state that is not there yet),
    then the thin one; the result is the thin one's, counting both uploads."""
    options = {**log_options, "aliases": tuple(a for a in log_options.get("aliases", ()) if a != "best")}
    whole = _write(store, full, skeleton, tensors, **options)
    metadata = {**(log_options.get("metadata") or {}), FULL_STATE: f"{full}:{whole.record.label}"}
    part = _write(store, name, *thin(skeleton, tensors, drop), **{**log_options, "metadata": metadata})
    return replace(
        part,
        uploaded_files=part.uploaded_files + whole.uploaded_files,
        uploaded_bytes=part.uploaded_bytes + whole.uploaded_bytes,
    )


def load_full(store: Store, name: str, full: str, latest: VersionRecord | None = None) -> Any:
    """The full training state of the newest checkpoint of `name` (or of `latest`, one of its
    versions already resolved), whose full states are versions of `full`: the state its metadata
    names, or the checkpoint itself if it names none (saved before thin history: it holds
    everything). A thinned newest checkpoint is refused, naming the newest full one."""
    latest = store.latest(name) if latest is None else latest
    if latest is None:
        raise NotFound(f"{store.uri}: no checkpoint {name}")
    ref = latest.metadata.get(FULL_STATE)
    if ref is None:
        return load(store, latest)
    where = f"{store.uri}: {name}:{latest.label}"
    version = full_state_version(ref, full, where)
    if version not in store.version_numbers(full):
        newest = _newest_full(store, name, full)
        raise InvalidInput(
            f"{where} is thinned (its training state {ref} was deleted), so the run cannot resume "
            "from it; "
            + (
                f"the newest full checkpoint is {newest}"
                if newest
                else "no checkpoint of the run keeps its full training state"
            )
        )
    return load(store, f"{full}:v{version}")


def _newest_full(store: Store, name: str, full: str) -> str | None:
    """NAME:vN of the newest checkpoint whose full state is still there (or that is full itself)."""
    held = set(store.version_numbers(full))
    for number in reversed(store.version_numbers(name)):
        record = store.record(name, number)
        ref = record.metadata.get(FULL_STATE)
        if ref is None or full_state_version(ref, full, f"{store.uri}: {name}:{record.label}") in held:
            return f"{name}:{record.label}"
    return None


class BackgroundSaver:
    """Saves off the training thread. save() copies the state to CPU on the caller's thread (so
    training may go on mutating it), then encodes and writes in a worker. The next save() and
    wait() first wait for the previous one, and re-raise its error: an upload never fails silently."""

    def __init__(self, store: Store, name: str):
        self.store, self.name = store, name
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="artifactkit-save")
        self._pending: Future | None = None
        self._lock = threading.Lock()

    def save(
        self,
        state: Any,
        then: Callable[[LogResult], None] | None = None,
        full: str | None = None,
        drop: tuple[str, ...] = (),
        **log_options: Any,
    ) -> None:
        """full: first save the whole state as a version of that artifact, then only what `drop`
        leaves (a thin checkpoint, its metadata naming the full one: FULL_STATE) under our name."""
        self.wait()
        skeleton, tensors = flatten(state)  # the only part on the training thread: CPU copies

        def work() -> LogResult:
            if full is None:
                result = _write(self.store, self.name, skeleton, tensors, **log_options)
            else:
                result = _write_pair(self.store, self.name, full, skeleton, tensors, drop, log_options)
            if then is not None:
                then(result)
            return result

        self._pending = self._pool.submit(work)

    def wait(self) -> LogResult | None:
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
