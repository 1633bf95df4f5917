"""Modules hold what their names say (issue 28 item 6), read from the source with ast: hashing.py
hashes, and the stat cache (an SQLite index of file stats) lives in statcache.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def defined_and_imported(module: str) -> tuple[set[str], set[str]]:
    """(top-level names defined, modules imported anywhere) of artifactkit/<module>.py."""
    tree = ast.parse((ROOT / "artifactkit" / f"{module}.py").read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    return defined, imported


def test_hashing_hashes_and_the_stat_cache_is_its_own_module():
    defined, imported = defined_and_imported("hashing")
    assert {"digest_bytes", "hash_file", "HashingReader"} <= defined
    assert not {d for d in defined if "stat" in d.lower() or "racy" in d.lower()}, defined
    assert "sqlite3" not in imported
    defined, imported = defined_and_imported("statcache")
    assert {"StatCache", "NullStatCache", "is_racy", "default_stat_cache"} <= defined and "sqlite3" in imported
