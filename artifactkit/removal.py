"""What `rm REF` may delete, decided before it asks (lifecycle.delete_versions deletes)."""

from __future__ import annotations

from typing import NamedTuple

from .errors import InvalidInput, NotFound


class Removal(NamedTuple):
    name: str
    version: int | None  # None: every version of `name`
    count: int  # how many versions that is (what the confirmation prompt says)


def planned_removal(s, ref: str) -> Removal:
    """NAME:vN (one version) or NAME (all of them: NotFound if it has none). NAME:ALIAS is refused:
    an alias moves, so deleting through one could delete another version than the user saw."""
    from .uri import parse_ref

    parsed = parse_ref(ref)
    if parsed.selector is not None and parsed.version is None:
        raise InvalidInput(f"rm {ref}: give NAME:vN (an alias moves; delete the version it points at by number)")
    if parsed.version is not None:
        return Removal(parsed.name, parsed.version, 1)
    count = len(s.version_numbers(parsed.name))
    if not count:
        raise NotFound(f"{s.uri}: no artifact named {parsed.name!r}")
    return Removal(parsed.name, None, count)
