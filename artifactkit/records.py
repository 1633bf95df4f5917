"""The records of the store: immutable, validated pydantic models with canonical JSON.

A Manifest lists files by content digest; its digest (xxh3-128 of its canonical JSON) is its
identity. A VersionRecord names one manifest as version N of an artifact.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidInput
from .names import check_name, check_relative_path, check_run_id

SCHEMA_VERSION = 1
DIGEST_RE = re.compile(r"[0-9a-f]{32}\Z")  # full match (\Z, not $: "$" passes a trailing newline)


class Record(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import (start-up time)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


def check_digest(digest: str) -> str:
    """A digest becomes a key (objects/ab/cd…): 32 lowercase hex digits, nothing else."""
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise InvalidInput(f"invalid digest {digest!r}: expected 32 lowercase hex digits")
    return digest


def validator_of(check):
    """A pydantic field validator from a check_* function (pydantic reports the ValueError)."""

    def validate(value):
        try:
            return check(value)
        except InvalidInput as e:
            raise ValueError(str(e)) from None

    return validate


class FileRef(Record):
    """A file's content as a manifest entry and a tree file both hold it (JSON keys are sorted when
    written, so the field order of a subclass changes no digest)."""

    digest: str
    size: int = Field(ge=0)
    meta: dict[str, Any] | None = None

    _check_digest = field_validator("digest")(validator_of(check_digest))


class Entry(FileRef):
    path: str

    _check_path = field_validator("path")(check_relative_path)

    @classmethod
    def checked_already(cls, path: str, digest: str, size: int, meta: dict[str, Any] | None) -> "Entry":
        """An entry of fields validated already (a tree read, a file just hashed): what
        model_construct makes, at a quarter of its cost (a pull makes one per file, twice).
        tests/test_store_format.py checks it equals model_construct's."""
        entry = _new(cls)
        _set(entry, "__dict__", {"digest": digest, "size": size, "meta": meta, "path": path})
        _set(entry, "__pydantic_fields_set__", {"digest", "size", "meta", "path"})
        _set(entry, "__pydantic_extra__", None)
        _set(entry, "__pydantic_private__", None)
        return entry


_new, _set = object.__new__, object.__setattr__


class Manifest(Record):
    schema_version: int = SCHEMA_VERSION
    entries: tuple[Entry, ...]

    @field_validator("entries")
    @classmethod
    def _sorted_unique(cls, entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
        paths = [e.path for e in entries]
        if paths != sorted(set(paths)):
            raise ValueError("manifest entries must be sorted by path and unique")
        _check_tree(paths)
        return entries

    @classmethod
    def of(cls, entries: list[Entry]) -> "Manifest":
        try:
            return cls(entries=tuple(sorted(entries, key=lambda e: e.path)))
        except ValidationError as e:
            raise InvalidInput(f"invalid manifest: {e.errors()[0]['msg']}") from None

    def canonical_json(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}


def check_tree(paths: list[str]) -> None:
    """Refuse paths that no folder could hold (before anything is written)."""
    try:
        _check_tree(paths)
    except ValueError as e:
        raise InvalidInput(f"invalid set of files: {e}") from None


def _check_tree(paths: list[str]) -> None:
    """`a` and `a/b` cannot both be files: no folder could hold that version."""
    files = set(paths)
    for path in paths:
        cut = path.find("/")
        while cut != -1:
            if path[:cut] in files:
                raise ValueError(f"{path[:cut]!r} is both a file and the folder of {path!r}")
            cut = path.find("/", cut + 1)


class VersionRecord(Record):
    schema_version: int = SCHEMA_VERSION
    name: str
    version: int = Field(ge=0)
    type: str
    # The digest of the version's content: a flat Manifest (layout "flat", store format 1) or the
    # root tree (layout "tree", trees.py). Equal digests and layouts mean equal content.
    manifest: str
    layout: Literal["flat", "tree"] = "flat"
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)
    metadata: dict[str, Any] = {}
    created: str
    run_id: str | None = None
    generation: int | None = Field(None, ge=0)  # the lease generation of the run holder that claimed it

    _check_name = field_validator("name")(validator_of(check_name))
    _check_manifest = field_validator("manifest")(validator_of(check_digest))
    _check_run_id = field_validator("run_id")(validator_of(lambda v: v if v is None else check_run_id(v)))

    @property
    def label(self) -> str:
        return f"v{self.version}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def iso_of(seconds: float) -> str:
    """A time in seconds since the epoch, as UTC ISO text to the second."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


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
