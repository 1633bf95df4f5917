"""What `ls` shows: one row per artifact that has a version (its latest and the bytes all hold)."""

from __future__ import annotations

from typing import Any


def artifact_rows(s) -> list[dict[str, Any]]:
    """{name, type, versions, latest, files, bytes, total_bytes, created} per artifact of store `s`.
    An artifact with only aliases left (or a first write in progress) has no version to show: skipped."""
    from .usage import artifact_bytes

    rows = []
    for name in s.artifact_names():
        nums = s.version_numbers(name)
        if not nums:
            continue
        latest = s.record(name, nums[-1])
        rows.append(
            {
                "name": name,
                "type": latest.type,
                "versions": len(nums),
                "latest": latest.label,
                "files": latest.files,
                "bytes": latest.bytes,
                "total_bytes": artifact_bytes(s, name),
                "created": latest.created,
            }
        )
    return rows
