"""The store's format marker (artifactkit-store.json): written on the first write, a store without
it is format 1, a store of a newer format is refused in one line before anything is read or written."""

from __future__ import annotations

import json

import pytest

import artifactkit
from artifactkit.errors import InvalidInput
from artifactkit.layout import FORMAT_KEY
from artifactkit.store import STORE_FORMAT
from test_cli_store import check_error
from test_store import make_folder


def files_in(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_first_write_marks_the_format_and_unmarked_stores_are_format_1(tmp_path):
    root = tmp_path / "s"
    store = artifactkit.open_store(str(root))
    assert store.format() == 1 and not (root / FORMAT_KEY).exists()  # opening writes nothing
    store.log_folder(make_folder(tmp_path / "d"))
    assert json.loads((root / FORMAT_KEY).read_text()) == {"format": STORE_FORMAT}
    (root / FORMAT_KEY).unlink()  # a store written before the marker existed
    old = artifactkit.open_store(str(root))
    assert old.format() == 1
    assert old.versions("d")[0].record.files == 12
    old.log_folder(tmp_path / "d")  # unchanged: the same version, and the marker is back
    assert json.loads((root / FORMAT_KEY).read_text()) == {"format": STORE_FORMAT}


def test_a_newer_format_is_refused_in_one_line_and_nothing_written(tmp_path, cli):
    root = tmp_path / "s"
    data = make_folder(tmp_path / "d")
    artifactkit.open_store(str(root)).log_folder(data)
    (root / FORMAT_KEY).write_text('{"format": 99}\n')
    before = files_in(root)
    with pytest.raises(InvalidInput, match="store format 99 is newer"):
        artifactkit.open_store(str(root))
    (data / "new.txt").write_text("new")
    for args in (["versions", "d"], ["log-dataset", str(data)], ["verify"], ["gc", "--grace", "0"],
                 ["pull", "d", str(tmp_path / "out")]):
        check_error(cli(*args, "--store", str(root), check=False), "store format 99 is newer", "upgrade artifactkit")
    assert files_in(root) == before and not (tmp_path / "out").exists()


def test_a_damaged_marker_is_named(tmp_path, cli):
    root = tmp_path / "s"
    artifactkit.open_store(str(root)).log_folder(make_folder(tmp_path / "d"))
    (root / FORMAT_KEY).write_bytes(b"\x00garbage")
    check_error(cli("versions", "d", "--store", str(root), check=False), FORMAT_KEY, "not a store format marker")
