"""Bounds on nested data from untrusted input (data.yaml, COCO JSON, --metadata, stored JSON).

json and yaml parse nesting by recursion: `[[[[...` 5,000 deep is a RecursionError traceback.
Each parser of such input turns it into one InvalidInput naming the file (RecursionError is raised
cleanly by both parsers). What we store must also read back: pydantic's JSON parser stops near 128
levels, so metadata written into a record is bounded at MAX_DEPTH before it is written.
A leaf module: it imports nothing of artifactkit but errors.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidInput

MAX_DEPTH = 64  # levels of lists/objects a value we store may nest


def too_deep(where: str) -> InvalidInput:
    return InvalidInput(f"{where}: lists/objects nested too deeply")


def check_depth(value: Any, where: str) -> Any:
    """`value` itself, or InvalidInput when its lists/dicts nest deeper than MAX_DEPTH (walked
    without recursion; shared sub-objects are walked once)."""
    stack, seen = [(value, 1)], set()
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list, tuple)) or id(item) in seen:
            continue
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{where}: lists/objects nested more than {MAX_DEPTH} deep")
        seen.add(id(item))
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return value


def loads_json(data: str | bytes, where: str) -> Any:
    """json.loads, too deep nesting an InvalidInput naming `where` (a JSON error is left to the
    caller, who knows what the text was meant to be)."""
    import json

    try:
        return json.loads(data)
    except RecursionError:
        raise too_deep(where) from None
