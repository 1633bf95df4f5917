"""Hostile or odd input (issue 27): each case is one error line naming what is at fault, in bounded
time and memory, never a traceback, a hang or a file taken from outside what was named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clirunner import run_cli
from PIL import Image

import artifactkit
from artifactkit import datasets
from artifactkit.errors import InvalidInput
from artifactkit.yolo import list_images, load_data_config


def image(path: Path, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 90, 160)).save(path)
    return path


def yolo_folder(root: Path, yaml_text: str = "train: images/train\nval: images/train\nnames: [a]\n") -> Path:
    image(root / "images/train/a.png")
    (root / "labels/train").mkdir(parents=True, exist_ok=True)
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml_text)
    return root


def one_error_line(proc) -> str:
    """The one line an error is, on stderr. The only other line allowed there is the one that
    says which weights a model command loaded (issue 29), printed before the input is read."""
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("weights: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# -- symlinks in a YOLO split and a COCO folder ------------------------------------------------------
def test_a_symlink_loop_in_a_yolo_split_is_refused_not_walked(tmp_path):
    """Two links to `.` were 2^40 paths for os.walk(followlinks=True): a hang. The split is named
    from outside the folder (`../`), so it is not the plain-folder log that refuses it."""
    looped = yolo_folder(tmp_path / "looped")
    os.symlink(".", looped / "images/train/l1")
    os.symlink(".", looped / "images/train/l2")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.yaml").write_text("train: ../looped/images/train\nval: ../looped/images/train\nnames: [a]\n")
    with pytest.raises(InvalidInput, match=r"images/train/l1: symlink loop"):
        load_data_config(outside)


def test_proc_self_as_a_split_is_refused_not_walked(tmp_path):
    root = yolo_folder(tmp_path / "d", "train: /proc/self\nval: images/train\nnames: [a]\n")
    with pytest.raises(InvalidInput, match=r"/proc/\d+/.*symlink loop"):
        load_data_config(root)


def test_a_folder_linked_twice_is_listed_once(tmp_path):
    shared = tmp_path / "shared"
    image(shared / "x.png")
    split = tmp_path / "split"
    split.mkdir()
    os.symlink(shared, split / "one")
    os.symlink(shared, split / "two")
    assert len(list_images(split)) == 1


def test_a_coco_image_through_a_link_out_of_the_folder_is_refused(tmp_path):
    elsewhere = image(tmp_path / "elsewhere" / "x.jpg").parent
    root = tmp_path / "coco"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        os.symlink(elsewhere, root / split / "ln")
        doc = {
            "images": [{"id": 1, "file_name": "ln/x.jpg", "width": 8, "height": 8}],
            "annotations": [],
            "categories": [{"id": 1, "name": "a"}],
        }
        (root / split / "_annotations.coco.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=r"train/ln/x.jpg: symlink points outside .*coco"):
        datasets.read_local(root, "coco")


# -- sizes and nesting -------------------------------------------------------------------------------
def test_a_huge_nc_without_names_is_refused_before_any_name_is_made(tmp_path):
    root = yolo_folder(tmp_path / "d", "train: images/train\nval: images/train\nnc: 1000000000000\n")
    with pytest.raises(InvalidInput, match=r"data.yaml: key 'nc' is 1000000000000, more than 100000 classes"):
        load_data_config(root)


def test_deeply_nested_data_yaml_is_one_line(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    root = yolo_folder(tmp_path / "d", f"train: images/train\nval: images/train\nnames: [a]\nx: {deep}\n")
    with pytest.raises(InvalidInput, match=r"data.yaml: lists/objects nested more than 64 deep"):
        load_data_config(root)
    block = "".join(" " * i + f"k{i}:\n" for i in range(3000))  # nesting by indentation: PyYAML recurses
    (root / "data.yaml").write_text(f"train: images/train\nval: images/train\nnames: [a]\nx:\n{block}")
    with pytest.raises(InvalidInput, match=r"data.yaml: lists/objects nested too deeply"):
        load_data_config(root)
    shallow = "[" * 100 + "]" * 100  # parses, but deeper than anything a data.yaml holds
    (root / "data.yaml").write_text(f"train: images/train\nval: images/train\nnames: [a]\nx: {shallow}\n")
    with pytest.raises(InvalidInput, match=r"data.yaml: lists/objects nested more than 64 deep"):
        load_data_config(root)


def test_deeply_nested_coco_json_is_one_line(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        deep = "[" * 100_000 + "]" * 100_000
        (root / "annotations" / f"instances_{split}.json").write_text('{"images": ' + deep + "}")
    with pytest.raises(InvalidInput, match=r"instances_train.json: lists/objects nested too deeply"):
        datasets.read_local(root, "coco")


def test_deeply_nested_metadata_is_one_line_and_writes_nothing(tmp_path):
    root = yolo_folder(tmp_path / "d")
    store_dir = tmp_path / "store"
    for depth in (20_000, 100):  # a RecursionError in json; a record pydantic could not read back
        meta = '{"a": ' + "[" * depth + "]" * depth + "}"
        line = one_error_line(
            run_cli("log-dataset", str(root), "--store", str(store_dir), "--metadata", meta, check=False)
        )
        assert "invalid --metadata: lists/objects nested" in line
    assert not store_dir.exists()
    store = artifactkit.open_store(str(store_dir))
    with pytest.raises(InvalidInput, match="metadata: lists/objects nested more than 64 deep"):
        store.log_files({"a.txt": b"a"}, name="t", metadata={"a": json.loads("[" * 100 + "]" * 100)})
    assert store.artifact_names() == []


def test_path_slash_in_data_yaml_names_the_dataset_after_its_folder(tmp_path):
    root = tmp_path / "mine"
    rel = (root / "images/train").relative_to("/")
    yolo_folder(root, f"path: /\ntrain: {rel}\nval: {rel}\nnames: [a]\n")
    store = artifactkit.open_store(str(tmp_path / "store"))
    source = datasets.read_local(root)
    assert source.name == "mine"
    assert source.log(store).record.name == "mine"


# -- secrets -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri, shown",
    [
        ("ftp://alice:pa55/word@127.0.0.1/x", "ftp://127.0.0.1/x"),
        ("ftp://alice:pa55@word@127.0.0.1/x", "ftp://127.0.0.1/x"),
        ("ftp://alice@127.0.0.1/x", "ftp://127.0.0.1/x"),
        ("s3://bucket/a@b/c:d@e", "s3://bucket/a@b/c:d@e"),  # no user in it: a path may hold '@' and ':'
    ],
)
def test_redaction_of_passwords_holding_slash_or_at(uri, shown):
    from artifactkit.redact import redact, redact_uri

    assert redact_uri(uri) == shown
    assert redact(f"failed: '{uri}' twice {uri}") == f"failed: '{shown}' twice {shown}"


def test_a_password_with_a_slash_in_a_store_uri_is_one_line_without_it():
    line = one_error_line(run_cli("ls", "--store", "ftp://alice:pa55/word@127.0.0.1/x", check=False))
    assert "invalid store URI ftp://127.0.0.1/x" in line and "pa55" not in line and "alice" not in line


# -- names like our temp files -----------------------------------------------------------------------
def test_user_files_named_like_our_temp_files_are_versioned(tmp_path):
    """Only the exact form of our own temp names is skipped by a scan (a killed write's leftover)."""
    data = tmp_path / "d"
    data.mkdir()
    users = {".ak-tmp-notes": b"n", ".tmp-0123456789abcdef": b"t", "..ak-tmp-x.part": b"p", "a.txt": b"a"}
    for name, content in users.items():
        (data / name).write_bytes(content)
    (data / ".ak-tmp-0123456789ab").write_bytes(b"half a file of a killed pull")
    store = artifactkit.open_store(str(tmp_path / "s"))
    assert store.log_folder(data).record.files == len(users)
    out = tmp_path / "out"
    artifactkit.pull(store, "d", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == users
    (out / ".ak-tmp-more-notes").write_bytes(b"m")
    assert artifactkit.pull(store, "d", out).extra_files == (".ak-tmp-more-notes",)


# -- forged weights and checkpoints ------------------------------------------------------------------
def forged_checkpoint(store, name: str, state, shape: list[int] | None = None) -> None:
    """A checkpoint version as checkpoint.save writes it, its first tensor's shape forged."""
    from artifactkit import checkpoint

    files, metas = checkpoint.encode(*checkpoint.flatten(state))
    if shape is not None:
        metas[next(iter(metas))]["shape"] = shape
    store.log_files(files, name=name, type="model", entry_meta=metas, dedup_latest=False)


def test_a_forged_tensor_shape_of_no_bytes_is_refused_before_torch_allocates_it(tmp_path):
    import torch

    from artifactkit import checkpoint

    store = artifactkit.open_store(str(tmp_path / "s"))
    forged_checkpoint(store, "m", {"epoch": 1, "w": torch.empty(0)}, [2**62, 2**62, 0])
    with pytest.raises(InvalidInput, match=r"m:v0 tensors/.*shape \[4611686018427387904, .*larger than any tensor"):
        checkpoint.load(store, "m:v0")


@pytest.mark.parametrize(
    "state, says",
    [
        ([1, 2], "state.json: a list, not a trainer checkpoint's state"),
        ({"epoch": 1}, "state.json lacks model, ema"),
    ],
)
def test_resume_of_a_checkpoint_state_of_the_wrong_shape_is_one_line(tmp_path, state, says):
    from artifactkit.runs import RunRecord, create_run

    store_dir = tmp_path / "s"
    store = artifactkit.open_store(str(store_dir))
    store.log_files({"a.txt": b"a"}, name="d")
    now = "2024-01-01T00:00:00.000+00:00"
    create_run(
        store,
        RunRecord(
            run_id="r", created=now, updated=now, config={}, dataset="d:v0", model_artifact="r-model", total_epochs=2
        ),
    )
    forged_checkpoint(store, "r-model", state)
    line = one_error_line(run_cli("resume", f"{store_dir}/runs/r", check=False))
    assert f"r-model:latest {says}" in line


def forged_safetensors(path: Path, state: dict, imgsz: str = "64") -> Path:
    from safetensors.torch import save_file

    from artifactkit.weights import FORMAT

    save_file(state, str(path), metadata={"format": FORMAT, "names": json.dumps(["a", "b"]), "imgsz": imgsz})
    return path


def test_a_safetensors_file_with_a_0_dim_stem_is_one_line(tmp_path):
    import torch

    from artifactkit.detector.pretrained import CLASS_KEY, STEM_KEY
    from artifactkit.weights import read_weights

    state = {STEM_KEY: torch.tensor(1.0), CLASS_KEY: torch.zeros(2, 8, 1, 1)}
    path = forged_safetensors(tmp_path / "w.safetensors", state)
    with pytest.raises(InvalidInput, match=r"w.safetensors: weights of an unknown model shape"):
        read_weights(path)
    line = one_error_line(run_cli("export", str(path), str(tmp_path / "w.pt"), check=False))
    assert "unknown model shape" in line


def test_a_safetensors_file_claiming_a_huge_image_size_is_refused(tmp_path):
    from artifactkit.detector.model import YOLO
    from artifactkit.weights import read_weights

    path = forged_safetensors(tmp_path / "w.safetensors", YOLO(2, "n").state_dict(), imgsz="32000000")
    with pytest.raises(InvalidInput, match=r"w.safetensors: image size 32000000 is not a positive multiple of 32 up"):
        read_weights(path)


# -- decompression bombs -----------------------------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels in a few bytes (PIL reads the size from IHDR)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12_000, 20_000])  # 144 megapixels (PIL only warns), 400 (PIL refuses)
def test_a_decompression_bomb_is_refused_in_one_line(tmp_path, side, capfd):
    from artifactkit.viewer.images import ImageBank
    from artifactkit.yolo import image_shape

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(side, side))
    with pytest.raises(InvalidInput, match=r"cannot read image .*bomb.png: .*exceeds limit"):
        image_shape(bomb)
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_files({"bomb.png": bomb}, name="d")
    bank = ImageBank()
    bank.want(store, store.manifest(store.resolve("d")).entries[0].digest, large=True)
    embedded = bank.build()
    assert len(embedded.problems) == 1 and "not a readable image" in embedded.problems[0] and not embedded.small
    assert "DecompressionBombWarning" not in capfd.readouterr().err


# -- push streams ------------------------------------------------------------------------------------
def test_push_streams_a_large_blob_never_holding_it_whole(tmp_path):
    """A 40 MB file: push used to read each blob whole (600 MB of file was 635 MB of RSS). Local
    to local: tracemalloc would count the in-process moto server's copy of an S3 object too."""
    import tracemalloc

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for i in range(40):
            f.write(bytes([i]) * (1 << 20))
    src = artifactkit.open_store(str(tmp_path / "src"))
    src.log_files({"big.bin": big, "small.txt": b"s"}, name="d")
    dst = artifactkit.open_store(str(tmp_path / "dst"))
    tracemalloc.start()
    try:
        artifactkit.push(src, "d", dst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak
    out = tmp_path / "out"
    artifactkit.pull(dst, "d:v0", out)
    assert (out / "big.bin").read_bytes() == big.read_bytes()


def test_push_of_a_corrupt_large_blob_writes_nothing_under_its_digest(tmp_path):
    from artifactkit.errors import IntegrityError
    from artifactkit.layout import object_key

    src = artifactkit.open_store(str(tmp_path / "src"))
    src.log_files({"big.bin": b"x" * (17 << 20)}, name="d")
    digest = src.manifest(src.resolve("d")).entries[0].digest
    (tmp_path / "src" / object_key(digest)).write_bytes(b"y" * (17 << 20))
    dst = artifactkit.open_store(str(tmp_path / "dst"))
    with pytest.raises(IntegrityError, match=f"src/{object_key(digest)}: blob is corrupt"):
        artifactkit.push(src, "d", dst)
    assert not (tmp_path / "dst" / object_key(digest)).exists()


# -- trees that form a DAG ---------------------------------------------------------------------------
def forge_dag(store, levels: int = 40) -> None:
    """d:v1 whose root is the top of `levels` + 1 trees, each naming the one below twice (a and
    b): 2^levels paths to one file, as an attacker with write access to the bucket could plant."""
    from artifactkit.hashing import digest_bytes
    from artifactkit.layout import tree_key, version_key
    from artifactkit.trees import compress_tree

    store.log_files({"a.txt": b"a"}, name="d")
    good = store.manifest(store.resolve("d")).entries[0]
    tree: dict = {"dirs": [], "files": [{"name": "x", "digest": good.digest, "size": good.size}]}
    files, nbytes = 1, good.size
    for _ in range(levels + 1):
        canonical = json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()
        digest = digest_bytes(canonical)
        store.backend.write(tree_key(digest), compress_tree(canonical))
        tree = {"dirs": [{"name": n, "tree": digest, "files": files, "bytes": nbytes} for n in ("a", "b")], "files": []}
        files, nbytes = files * 2, nbytes * 2
    record = json.loads(store.backend.read(version_key("d", 0)))
    store.backend.write(
        version_key("d", 1),
        json.dumps({**record, "version": 1, "manifest": digest, "files": files // 2, "bytes": nbytes // 2}).encode(),
    )


def test_a_dag_of_trees_does_not_block_gc_verify_or_push(tmp_path):
    store = artifactkit.open_store(str(tmp_path / "s"))
    forge_dag(store)
    store.log_files({"junk.txt": b"junk"}, name="j")
    store.delete_version("j", 0)
    assert artifactkit.verify(store).ok
    report = artifactkit.gc(store, grace_seconds=0)  # every tree read once: it ends, and keeps d's blob
    assert report.deleted_objects == 1 and artifactkit.verify(store).ok
    dst = artifactkit.open_store(str(tmp_path / "dst"))
    assert artifactkit.push(store, "d:v1", dst).uploaded_files == 1


def test_a_dag_of_trees_is_one_line_in_diff_and_pull(tmp_path):
    store_dir = tmp_path / "s"
    forge_dag(artifactkit.open_store(str(store_dir)))
    says = "reached along more than 65536 paths of one version"
    assert says in one_error_line(run_cli("diff", "d:v0", "d:v1", "--store", str(store_dir), check=False))
    with pytest.raises(InvalidInput, match=says):
        artifactkit.pull(artifactkit.open_store(str(store_dir)), "d:v1", tmp_path / "out", include=["a/*"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("x"))


def test_identical_folders_sharing_one_tree_still_pull_whole(tmp_path):
    data = tmp_path / "d"
    for name in ("one", "two", "three"):
        (data / name / "sub").mkdir(parents=True)
        (data / name / "sub" / "same.txt").write_text("same")
    store = artifactkit.open_store(str(tmp_path / "s"))
    store.log_folder(data)
    artifactkit.pull(store, "d", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.txt")) == [
        "one/sub/same.txt",
        "three/sub/same.txt",
        "two/sub/same.txt",
    ]


def test_predict_of_a_144_megapixel_png_is_one_line(tmp_path):
    from artifactkit.detector.model import YOLO

    weights = forged_safetensors(tmp_path / "w.safetensors", YOLO(2, "n").state_dict())
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(12_000, 12_000))
    proc = run_cli(
        "predict",
        "--weights",
        str(weights),
        str(bomb),
        "--save-images",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        check=False,
    )
    line = one_error_line(proc)
    assert "bomb.png" in line and "exceeds limit" in line and "DecompressionBombWarning" not in proc.stderr


def test_safetensors_metadata_names_nested_deep_is_one_line(tmp_path):
    from safetensors.torch import save_file

    from artifactkit.detector.model import YOLO
    from artifactkit.weights import FORMAT, read_weights

    path = tmp_path / "w.safetensors"
    save_file(
        YOLO(2, "n").state_dict(),
        str(path),
        metadata={"format": FORMAT, "names": "[" * 20_000 + "]" * 20_000, "imgsz": "64"},
    )
    with pytest.raises(InvalidInput, match=r"w.safetensors: malformed safetensors metadata"):
        read_weights(path)
