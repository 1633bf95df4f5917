"""The records of the store: immutable, validated pydantic models with canonical JSON.

A Manifest lists files by content digest; its digest (xxh3-128 of its canonical JSON) is its
identity. A VersionRecord names one manifest as version N of an artifact.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidInput

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")
VERSION_RE = re.compile(r"^v(0|[1-9][0-9]*)$")


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Absolute, drive-lettered, backslashed or NUL paths, empty parts, "." or ".." parts: anything that
# could land outside the folder it is joined to. One compiled search: this runs once per file.
_UNSAFE_PATH = re.compile(r"^/|^[A-Za-z]:|[\\\0]|//|/$|(^|/)\.\.?(/|$)")


def check_relative_path(path: str) -> str:
    """A manifest path is a relative POSIX path that stays inside its folder once joined."""
    if not path or _UNSAFE_PATH.search(path):
        raise ValueError(f"unsafe manifest path {path!r}: must be relative, without '..' or empty parts")
    return path


def check_name(name: str, what: str = "artifact name") -> str:
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' (at most 128), starting with a letter or digit"
        )
    return name


class Entry(Record):
    path: str
    digest: str = Field(pattern=DIGEST_RE.pattern)
    size: int = Field(ge=0)
    meta: dict[str, Any] | None = None

    _check_path = field_validator("path")(check_relative_path)


class Manifest(Record):
    schema_version: int = SCHEMA_VERSION
    entries: tuple[Entry, ...]

    @field_validator("entries")
    @classmethod
    def _sorted_unique(cls, entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
        paths = [e.path for e in entries]
        if paths != sorted(set(paths)):
            raise ValueError("manifest entries must be sorted by path and unique")
        return entries

    @classmethod
    def of(cls, entries: list[Entry]) -> "Manifest":
        return cls(entries=tuple(sorted(entries, key=lambda e: e.path)))

    def canonical_json(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}


class VersionRecord(Record):
    schema_version: int = SCHEMA_VERSION
    name: str
    version: int = Field(ge=0)
    type: str
    manifest: str = Field(pattern=DIGEST_RE.pattern)
    files: int
    bytes: int
    metadata: dict[str, Any] = {}
    created: str
    run_id: str | None = None

    @property
    def label(self) -> str:
        return f"v{self.version}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def to_json(record: BaseModel) -> bytes:
    return json.dumps(record.model_dump(mode="json"), sort_keys=True, indent=1).encode()


def parse_record(model: type[Record], data: bytes, where: str) -> Any:
    """Parse a stored record, naming the key it came from when it is damaged."""
    try:
        return model.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: invalid {model.__name__} at {loc or 'top level'}: {first['msg']}") from e
