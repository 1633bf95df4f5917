"""The Backend protocol: bytes by key, with declared capabilities.

Keys are relative POSIX paths ("objects/ab/cdef…"). Backends raise only artifactkit's NotFound,
AlreadyExists and BackendError, and every message names the store URI and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence, Union

Source = Union[bytes, memoryview, Path]  # what write_many accepts: bytes in hand, or a local file
# (LocalBackend also streams from a hashing.HashingReader, checking its digest before the rename)


@dataclass(frozen=True)
class Capabilities:
    atomic_create: bool  # create_only writes are exclusive even across processes and machines
    atomic_replace: bool  # a plain write replaces the old value in one step (readers never see half)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float | None  # seconds since the epoch; None where the system does not say


class Backend(Protocol):
    uri: str
    capabilities: Capabilities

    def read(self, key: str) -> bytes: ...

    def read_many(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (key, bytes) for every key, in any order; concurrent where the system allows."""
        ...

    def read_to(self, key: str, path: Path) -> None:
        """Stream one object into a local file (for objects too large to hold in memory)."""
        ...

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Write one object durably. create_only raises AlreadyExists if the key is taken."""
        ...

    def write_many(self, items: Sequence[tuple[str, Source]]) -> None:
        """Write many immutable objects (blobs); durability comes with the next sync()."""
        ...

    def exists(self, keys: Iterable[str]) -> set[str]:
        """The subset of keys that exist, in one batched check."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def sync(self) -> None:
        """Make everything written so far durable before records that reference it are written."""
        ...
