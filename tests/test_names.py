"""The one grammar of names and paths (artifactkit/names.py, issue 28): each rule checked against a
plain reference written the slow, obvious way, over generated strings (unicode, '..' variants,
Windows forms, surrogates, long names); and no other module keeps a rule of its own."""

from __future__ import annotations

import ast
import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifactkit import names
from artifactkit.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[1]
NAME_CHARS = set(string.ascii_letters + string.digits + "._-")


# -- the references ---------------------------------------------------------------------------------
def ref_entry_name(name: str) -> bool:
    """One file or folder name that is the same single name on every OS, storable as UTF-8."""
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not (len(name) >= 2 and name[0] in string.ascii_letters and name[1] == ":")
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in name)
    )


def ref_relative_path(path: str) -> bool:
    return path != "" and all(ref_entry_name(part) for part in path.split("/"))


def ref_name(name: str, longest: int | None) -> bool:
    return (
        0 < len(name)
        and (longest is None or len(name) <= longest)
        and name[0] in string.ascii_letters + string.digits
        and set(name) <= NAME_CHARS
    )


def ref_stays_inside(path: str) -> bool:
    """Walk the names, '..' climbing one folder: the path never climbs above where it began."""
    if path.startswith("/"):
        return False
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def ref_is_within(path: str, folder: str) -> bool:
    return Path(folder) in (Path(path), *Path(path).parents)


def accepts(check, value) -> bool:
    try:
        check(value)
    except (ValueError, InvalidInput):
        return False
    return True


# -- generated strings ------------------------------------------------------------------------------
NASTY = [
    "",
    ".",
    "..",
    "...",
    ". ",
    " ..",
    "..\n",
    ".\n",
    "a/",
    "/a",
    "//a",
    "a//b",
    "a/./b",
    "a/../b",
    "./a",
    "a/..",
    "../a",
    "..\\a",
    "a\\b",
    "C:",
    "C:x",
    "c:\\x",
    "a/C:x",
    "a/Z:",
    "1:x",
    "é:x",
    "\\\\srv\\share",
    "a\x00b",
    "\x00",
    "\ud800",
    "a/\udcff",
    "\u2024\u2024",
    "\uff0e\uff0e",
    "CON",
    "nul.txt",
    "a" * 300,
    "é" * 200,
    "中/文",
    "\u202eevil",
    "\n",
    "a\tb",
    "-x",
    "_x",
    ".x",
    "x.",
    "x" * 128,
    "x" * 129,
    "x" * 64,
    "x" * 65,
    "v0",
    "v01",
    "latest",
    "²",
    "Ａ",
]
piece = st.sampled_from(
    [
        "",
        ".",
        "..",
        "a",
        "Z",
        "0",
        "C:",
        "c:x",
        "\\",
        "\x00",
        "\ud800",
        "é",
        "中",
        " ",
        "\n",
        "-",
        "_",
        ".a",
        "\u2024",
        "x" * 130,
    ]
)
paths = (
    st.sampled_from(NASTY)
    | st.text(alphabet=st.sampled_from("aZ09._-:/\\\x00 \n\u00e9\u4e2d\ud800"), max_size=10)
    | st.lists(piece, min_size=1, max_size=5).map("/".join)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
)
FAST = settings(max_examples=1500, deadline=None)


@FAST
@given(paths)
def test_relative_paths_and_entry_names_agree_with_the_reference(path):
    assert names.is_relative_path(path) == ref_relative_path(path), repr(path)
    assert accepts(names.check_relative_path, path) == ref_relative_path(path), repr(path)
    assert accepts(names.check_entry_name, path) == ref_entry_name(path), repr(path)
    assert accepts(names.check_log_path, path) == ref_relative_path(path), repr(path)


@FAST
@given(paths)
def test_names_run_ids_and_split_names_agree_with_the_reference(name):
    assert accepts(names.check_name, name) == ref_name(name, 128), repr(name)
    assert accepts(names.check_run_id, name) == ref_name(name, 64), repr(name)
    assert names.is_split_name(name) == ref_name(name, None), repr(name)
    number = name[1:]
    is_label = name[:1] == "v" and number.isascii() and number.isdigit() and (number == "0" or number[0] != "0")
    assert bool(names.VERSION_RE.fullmatch(name)) == is_label, repr(name)


@FAST
@given(paths)
def test_stays_inside_agrees_with_walking_the_names(path):
    assert names.stays_inside(path) == ref_stays_inside(path), repr(path)


folders = st.lists(st.sampled_from(["a", "ab", "b", "a b", "é", "..a", "a."]), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)


@FAST
@given(folders, folders)
def test_is_within_agrees_with_the_parents_of_the_path(path, folder):
    assert names.is_within(path, folder) == ref_is_within(path, folder), (path, folder)
    assert names.is_below(path, folder) == (Path(folder) in Path(path).parents), (path, folder)


def test_a_name_that_is_not_utf8_is_refused_naming_the_file():
    with pytest.raises(InvalidInput, match=r"bad\\xff.jpg: file name is not valid UTF-8"):
        names.check_log_path(os.fsdecode(b"d/bad\xff.jpg"))


def test_check_inside_refuses_a_link_out_of_the_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data2").mkdir()
    (tmp_path / "data" / "in").symlink_to(tmp_path / "data")
    (tmp_path / "data" / "out").symlink_to(tmp_path / "data2")  # a sibling sharing the folder's name as a prefix
    real = os.path.realpath(tmp_path / "data")
    names.check_inside(str(tmp_path / "data" / "in"), real, "data")
    with pytest.raises(InvalidInput, match="symlink points outside data"):
        names.check_inside(str(tmp_path / "data" / "out"), real, "data")


# -- where copies disagreed, the stricter rule ------------------------------------------------------
@pytest.mark.parametrize("path", ["a/C:x", "a/\udcff"])
def test_a_flat_manifest_refuses_what_a_tree_or_a_log_refuses(path):
    """A drive letter after the first name, a lone surrogate: refused by trees and logging
    already, and now by a manifest (it had its own, laxer copy of the rule). JSON text cannot
    carry a lone surrogate (the parser refuses it): that one comes from Python."""
    from pydantic import ValidationError

    from artifactkit.records import Manifest, parse_record

    entries = [{"path": path, "digest": "0" * 32, "size": 1}]
    with pytest.raises(ValidationError, match="unsafe manifest path"):
        Manifest.model_validate({"entries": entries})
    if path.isascii():
        with pytest.raises(InvalidInput, match="m.json: invalid Manifest at entries.0.path: .*unsafe manifest path"):
            parse_record(Manifest, json.dumps({"entries": entries}).encode(), "m.json")


def test_a_coco_file_name_follows_the_version_path_rule(tmp_path):
    """ "./a.jpg" is still read as "a.jpg"; a name no version could hold ("C:x.jpg", which coco.py
    let through to fail later as a manifest path) is refused where the JSON names it."""
    from artifactkit.coco import convert

    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for name in ("a.jpg", "C:x.jpg"):
            (tmp_path / split / name).write_bytes(b"")
    doc = {
        "images": [{"id": 1, "file_name": "./a.jpg", "width": 8, "height": 8}],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}],
    }
    for split in ("train", "val"):
        (tmp_path / split / "_annotations.coco.json").write_text(json.dumps(doc))
    assert "images/train/a.jpg" in convert(tmp_path)
    doc["images"][0]["file_name"] = "C:x.jpg"
    (tmp_path / "val" / "_annotations.coco.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=r"images\[0\]: 'file_name' 'C:x.jpg' is not a relative image path"):
        convert(tmp_path)


# -- one owner --------------------------------------------------------------------------------------
OWNER = "artifactkit/names.py"
# The local backend's own last check of a key (absolute, '..', backslash, NUL): backends import
# nothing above them (tests/test_layers.py), so it cannot use names.py; it guards keys, not names.
EXEMPT = {OWNER, "artifactkit/backends/local.py"}
_RULE_PATTERNS = ("[A-Za-z0-9][A-Za-z0-9._-]", r"\.\.", "[A-Za-z]:")  # a name, a '..' part, a drive letter
_PATH_CHARS = {"..", "\\", "\x00"}


def rules_outside_the_grammar(sources: dict[str, str]) -> list[str]:
    """file:line of every name or path rule written outside names.py ({repository path: source}):
    a compiled name, '..' or drive-letter pattern; a comparison with '..', a backslash or NUL; an
    "inside that folder" test (`+ os.sep` prefixes, Path.is_relative_to, `in path.parents`)."""
    found = []
    for rel, text in sources.items():
        if rel in EXEMPT:
            continue
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "compile"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and any(p in node.args[0].value for p in _RULE_PATTERNS)
            ):
                found.append(f"{rel}:{node.lineno}: pattern {node.args[0].value!r}")
            elif isinstance(node, ast.Compare):
                consts = [
                    c
                    for side in (node.left, *node.comparators)
                    for c in ([side] if isinstance(side, ast.Constant) else getattr(side, "elts", []))
                ]
                if any(isinstance(c, ast.Constant) and c.value in _PATH_CHARS for c in consts):
                    found.append(f"{rel}:{node.lineno}: compares with '..', a backslash or NUL")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Add)
                and isinstance(node.right, ast.Attribute)
                and node.right.attr == "sep"
            ):
                found.append(f"{rel}:{node.lineno}: '+ os.sep' prefix test")
            elif isinstance(node, ast.Attribute) and node.attr == "is_relative_to":
                found.append(f"{rel}:{node.lineno}: is_relative_to")
            if (
                isinstance(node, ast.Compare)
                and isinstance(node.ops[0], (ast.In, ast.NotIn))
                and isinstance(node.comparators[0], ast.Attribute)
                and node.comparators[0].attr == "parents"
            ):
                found.append(f"{rel}:{node.lineno}: a test against Path.parents")
    return found


def sources() -> dict[str, str]:
    paths = sorted([*ROOT.glob("artifactkit/**/*.py"), *ROOT.glob("cli/*.py")])
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in paths}


def test_rules_outside_the_grammar_finds_each_kind():
    sample = (
        'import os, re\nR = re.compile(r"(^|/)\\.\\.(/|$)")\nA = x in ("..", ".")\nB = "\\\\" in y\n'
        'C = p.startswith(q + os.sep)\nD = p.is_relative_to(q)\nE = re.compile("[A-Za-z]:")\nF = "." == x\n'
        "G = d not in p.resolve().parents\n"
    )
    lines = sorted((f.split(":")[1] for f in rules_outside_the_grammar({"sample.py": sample})), key=int)
    assert lines == ["2", "3", "4", "5", "6", "7", "9"]
    assert rules_outside_the_grammar({OWNER: sample}) == []


def test_only_names_py_defines_name_and_path_rules():
    found = sources()
    assert OWNER in found and "artifactkit/store.py" in found
    assert rules_outside_the_grammar(found) == []
