"""The one grammar of names and paths: what a string must be before it becomes a file, a folder or
a key, whether it comes from a user, a folder being logged or a record read from a store.

- an artifact name or alias: NAME_RE (letters, digits, '.', '_', '-', at most 128, starting with a
  letter or digit); a version label vN: VERSION_RE; a run id: RUN_ID_RE (the same, at most 64);
- a split of a dataset (a folder of the version): SPLIT_NAME_RE (the name's letters, any length);
- a version-relative file path (a manifest path, a pulled file): check_relative_path;
- a tree entry name (one file or folder of a tree): check_entry_name;
- a path about to be logged: check_log_path (the above, and encodable as UTF-8);
- whether a resolved path lies in a resolved folder: is_within / check_inside.

Light on purpose (re, os and errors only): folderscan's worker processes import it.
"""

from __future__ import annotations

import os
import re

from .errors import InvalidInput

# Full-string patterns (\Z, not $: "$" also matches before a trailing newline). Use fullmatch;
# [0-9] and not \d, which would accept any Unicode digit ("²").
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
VERSION_RE = re.compile(r"v(0|[1-9][0-9]*)\Z")
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# NAME:vN, one version of one artifact as a run record names it (fencing.py: pending deletes)
VERSION_REF_RE = re.compile("(" + NAME_RE.pattern[: -len(r"\Z")] + r"):v(0|[1-9][0-9]{0,17})\Z")
SPLIT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # a split becomes a folder name in a version

# Absolute paths, a drive letter starting any name ("C:x" is a drive-relative path on Windows),
# backslashes, NUL, lone surrogates (no UTF-8 form: not storable, not restorable), empty parts,
# "." or ".." parts: anything that could land outside the folder it is joined to. One compiled
# search: this runs once per file.
_UNSAFE_PATH = re.compile(r"^/|(^|/)[A-Za-z]:|[\\\0\ud800-\udfff]|//|/\Z|(^|/)\.\.?(/|\Z)")


def check_name(name: str, what: str = "artifact name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' (at most 128), "
            "starting with a letter or digit"
        )
    return name


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise InvalidInput(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-', at most 64")
    return run_id


def is_split_name(name: str) -> bool:
    return SPLIT_NAME_RE.fullmatch(name) is not None


def is_relative_path(path: str) -> bool:
    """A relative POSIX path that stays inside its folder once joined, on any OS."""
    return isinstance(path, str) and path != "" and _UNSAFE_PATH.search(path) is None


def check_relative_path(path: str) -> str:
    """A version-relative path (ValueError if not: pydantic validators report it)."""
    if not is_relative_path(path):
        raise ValueError(
            f"unsafe manifest path {path!r}: must be relative, without '..', empty parts, "
            "drive letters, backslashes or NUL"
        )
    return path


def check_entry_name(name: str) -> str:
    """One name of a tree: a safe relative path without '/' (ValueError if not)."""
    if "/" in name:
        raise ValueError(f"unsafe tree entry name {name!r}: a single file or folder name")
    return check_relative_path(name)


def check_encodable(name: str, where: str | None = None) -> None:
    """A name that is not UTF-8 cannot be stored in a manifest and restored: refuse it before
    anything is written, naming the file (its undecodable bytes shown as \\xNN)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(where or name).decode("utf-8", "backslashreplace")
        raise InvalidInput(f"{shown}: file name is not valid UTF-8; rename it to log this folder") from None


def check_log_path(path: str) -> str:
    """A path to log: safe as a version path, so every name in it is a safe tree entry name,
    wherever the folder logged begins (InvalidInput if not)."""
    check_encodable(path)
    try:
        return check_relative_path(path)
    except ValueError as e:
        raise InvalidInput(str(e)) from None


def stays_inside(path: str) -> bool:
    """A path given relative to a folder (a data.yaml's split) that, normalised without following
    links, names the folder or something in it."""
    rel = os.path.normpath(path)
    return not os.path.isabs(rel) and rel != ".." and not rel.startswith("../")


def is_within(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it; both resolved already (os.path.realpath), so
    this compares names only ("/data2" is not within "/data")."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def is_below(path: str, folder: str) -> bool:
    """Whether `path` lies below `folder`, not being it; both resolved already."""
    return path != folder and is_within(path, folder)


def check_inside(path: str, real_root: str, root: str) -> None:
    """A file or link met in a folder being logged must resolve inside it (real_root: the
    folder's realpath), so a link cannot add a file from elsewhere to a version."""
    real = os.path.realpath(path)
    if not is_within(real, real_root):
        raise InvalidInput(f"{path}: symlink points outside {root} (to {real})")


def is_settable_alias(name: str) -> bool:
    """An alias someone may set: a valid name, but not the derived `latest` or a version label."""
    return bool(NAME_RE.fullmatch(name)) and name != "latest" and not VERSION_RE.fullmatch(name)
