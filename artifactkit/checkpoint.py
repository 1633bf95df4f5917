"""Training state <-> a store version: one blob per tensor plus a JSON skeleton. No pickle.

The state is any nesting of dicts, lists and tuples holding tensors, numpy arrays and plain JSON
values. Tensors and arrays become entries `tensors/<n>` (raw bytes, dtype and shape in the entry's
meta); everything else stays in `state.json`, with tags that keep what JSON would lose (tuples,
non-string dict keys). Since blobs are named by content, a tensor that did not change between two
checkpoints (a frozen layer, a buffer) is stored once.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from .errors import IntegrityError, InvalidInput
from .manifest import Entry
from .store import LogResult, Store

SKELETON = "state.json"
_TENSOR, _ARRAY, _TUPLE, _DICT = "__tensor__", "__ndarray__", "__tuple__", "__dict__"


def flatten(state: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor | np.ndarray]]:
    """(JSON skeleton, {entry path: tensor}) — tensors are detached CPU copies, safe to keep
    while training goes on mutating the originals."""
    tensors: dict[str, torch.Tensor | np.ndarray] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            path = f"tensors/{len(tensors):06d}"
            tensors[path] = value.detach().to("cpu", copy=True)
            return {_TENSOR: path}
        if isinstance(value, np.ndarray):
            path = f"tensors/{len(tensors):06d}"
            tensors[path] = value.copy()
            return {_ARRAY: path}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: walk(v) for k, v in value.items()}
            return {_DICT: [[walk(k), walk(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [walk(v) for v in value]}
        if isinstance(value, list):
            return [walk(v) for v in value]
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


def tensor_from_bytes(data: bytes, meta: dict[str, Any], where: str) -> torch.Tensor | np.ndarray:
    shape = tuple(meta["shape"])
    if meta.get("kind") == "ndarray":
        arr = np.frombuffer(data, dtype=np.dtype(meta["dtype"]))
        return arr.reshape(shape).copy()
    dtype = getattr(torch, meta["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise InvalidInput(f"{where}: unknown tensor dtype {meta['dtype']!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
    if len(data) != expected:
        raise IntegrityError(f"{where}: {len(data)} bytes where {meta['dtype']}{list(shape)} needs {expected}")
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)


def unflatten(skeleton: Any, tensors: dict[str, Any]) -> Any:
    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _ARRAY in value:
            return tensors[value[_ARRAY]]
        if _TUPLE in value:
            return tuple(walk(v) for v in value[_TUPLE])
        if _DICT in value:
            return {_hashable(walk(k)): walk(v) for k, v in value[_DICT]}
        return {k: walk(v) for k, v in value.items()}

    return walk(skeleton)


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def encode(skeleton: Any, tensors: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """flatten()'s output -> ({entry path: bytes}, {entry path: meta}) ready for Store.log_files."""
    files: dict[str, bytes] = {SKELETON: json.dumps(skeleton).encode()}  # key order kept
    metas: dict[str, dict[str, Any]] = {}
    for path, t in tensors.items():
        files[path], metas[path] = tensor_bytes(t)
    return files, metas


def save(store: Store, name: str, state: Any, **log_options: Any) -> LogResult:
    return _write(store, name, *flatten(state), **log_options)


def _write(store: Store, name: str, skeleton: Any, tensors: dict[str, Any], **log_options: Any) -> LogResult:
    files, metas = encode(skeleton, tensors)
    return store.log_files(files, name=name, type="model", entry_meta=metas, dedup_latest=False, **log_options)


def load(store: Store, ref: str) -> Any:
    """The state saved at a version (NAME:vN / NAME:ALIAS), every blob checked against its digest."""
    record = store.resolve(ref)
    entries = store.manifest(record).by_path()
    if SKELETON not in entries:
        raise InvalidInput(f"{store.uri}: {record.name}:{record.label} is not a checkpoint (no {SKELETON})")
    skeleton = json.loads(store.read_blob(entries[SKELETON].digest))
    tensors = {}
    for path, entry in entries.items():
        if path == SKELETON:
            continue
        where = f"{store.uri}: {record.name}:{record.label} {path}"
        tensors[path] = tensor_from_bytes(store.read_blob(entry.digest), _meta(entry, where), where)
    return unflatten(skeleton, tensors)


def _meta(entry: Entry, where: str) -> dict[str, Any]:
    if not entry.meta or "dtype" not in entry.meta or "shape" not in entry.meta:
        raise InvalidInput(f"{where}: entry has no dtype/shape metadata")
    return entry.meta


class BackgroundSaver:
    """Saves off the training thread. save() copies the state to CPU on the caller's thread (so
    training may go on mutating it), then encodes and writes in a worker. The next save() and
    wait() first wait for the previous one, and re-raise its error: an upload never fails silently."""

    def __init__(self, store: Store, name: str):
        self.store, self.name = store, name
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="artifactkit-save")
        self._pending: Future | None = None
        self._lock = threading.Lock()

    def save(self, state: Any, then: Callable[[LogResult], None] | None = None, **log_options: Any) -> None:
        self.wait()
        skeleton, tensors = flatten(state)  # the only part on the training thread: CPU copies

        def work() -> LogResult:
            result = _write(self.store, self.name, skeleton, tensors, **log_options)
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
