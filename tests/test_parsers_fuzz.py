"""Every parser of untrusted input under random and hostile input (issue 27): data.yaml, COCO JSON,
label files, each store record kind, trees, pack indexes, safetensors headers and checkpoint
states. Whatever the bytes, only artifactkit's own errors escape (one line in the CLI), within a
deadline and a bound on memory. Kept fast: few examples each, small inputs, and a deep-nesting
case in every JSON strategy."""

from __future__ import annotations

import json
import struct
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactkit.errors import ArtifactkitError

FAST = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
MEMORY = 64 << 20  # bytes of Python allocations one parse of these small inputs may take at its peak

# JSON values: scalars of every type, containers of them, and now and then one nested 20,000 deep
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
deep = st.sampled_from(["[", '{"a":']).map(lambda o: o * 20_000 + "0" + ("]" if o == "[" else "}") * 20_000)


def nested(depth: int) -> list:
    """A list nested `depth` deep, built without recursion (json.loads would refuse it)."""
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """The heavy modules the parsers import lazily, imported before tracemalloc runs (an import
    under it is slow, and its allocations are not the parse's)."""
    import PIL.Image  # noqa: F401
    import safetensors.torch  # noqa: F401
    import yaml  # noqa: F401

    import artifactkit.coco  # noqa: F401
    import artifactkit.detector.pretrained  # noqa: F401
    import artifactkit.detector.state  # noqa: F401
    import artifactkit.packs  # noqa: F401
    import artifactkit.weights  # noqa: F401


def only_our_errors(parse, *args) -> None:
    """Run parse(*args): it returns, or raises an ArtifactkitError, within MEMORY."""
    tracemalloc.start()
    try:
        parse(*args)
    except ArtifactkitError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY, peak


def json_bytes(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def documents(keys: list[str], field_values=values):
    """JSON text: a dict over `keys` (some kept, some not) with random values, random JSON, raw
    bytes, or something nested too deep to parse by recursion."""
    record = st.fixed_dictionaries({}, optional={k: field_values for k in keys}).map(json_bytes)
    return record | values.map(json_bytes) | st.binary(max_size=64) | deep.map(str.encode)


# -- label files --------------------------------------------------------------------------------
tokens = st.sampled_from(["0", "1", "7", "-1", "0.5", "1.0", "1e9", "nan", "inf", "x", "", "\ufeff", "0.2", "2"])
label_text = st.lists(st.lists(tokens, max_size=9).map(" ".join), max_size=5).map("\n".join)


@FAST
@given(label_text.map(str.encode) | st.binary(max_size=64), st.none() | st.integers(1, 3))
def test_label_files(data, nc):
    from artifactkit.yolo import parse_labels

    only_our_errors(parse_labels, data, "x.txt", nc)


# -- data.yaml ----------------------------------------------------------------------------------
names = st.text(alphabet="abc_-0123456789 ", max_size=6)  # no '/' or '.': never a walk of the disk
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**45) | names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
yaml_docs = st.fixed_dictionaries(
    {},
    optional={
        k: yaml_values | st.just("images")
        for k in ("path", "train", "val", "test", "validation", "names", "nc", "extra")
    },
)


@FAST
@given(yaml_docs.map(lambda d: json.dumps(d)) | st.text(max_size=40) | deep)
def test_data_yaml(text):
    from artifactkit.yolo import load_data_config

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "images" / "a.png").write_bytes(b"\x89PNG")
        (root / "data.yaml").write_text(text)
        only_our_errors(load_data_config, root)


# -- COCO JSON ----------------------------------------------------------------------------------
small_ints = st.integers(-1, 3)
coco_images = st.fixed_dictionaries(
    {},
    optional={
        "id": small_ints | values,
        "file_name": st.sampled_from(["a.jpg", "../a.jpg", "/a.jpg", "a", "", "b.png"]) | values,
        "width": st.integers(-1, 64) | values,
        "height": st.floats() | st.integers(1, 64),
    },
)
coco_anns = st.fixed_dictionaries(
    {},
    optional={
        "image_id": small_ints | values,
        "category_id": small_ints,
        "bbox": st.lists(st.floats() | st.integers(-5, 70), max_size=5) | values,
        "iscrowd": values,
    },
)
coco_cats = st.fixed_dictionaries({}, optional={"id": small_ints | values, "name": st.text(max_size=3) | values})
coco_docs = st.fixed_dictionaries(
    {
        "images": st.lists(coco_images, max_size=3),
        "annotations": st.lists(coco_anns, max_size=3),
        "categories": st.lists(coco_cats, max_size=3),
    }
).map(json_bytes)


@FAST
@given(coco_docs | documents(["images", "annotations", "categories"]))
def test_coco_json(data):
    from PIL import Image

    from artifactkit.coco import convert

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "annotations").mkdir()
        for split in ("train", "val"):
            (root / "annotations" / f"instances_{split}.json").write_bytes(data)
            (root / split).mkdir()
            Image.new("RGB", (8, 8)).save(root / split / "a.jpg")
        only_our_errors(convert, root)


# -- store records ------------------------------------------------------------------------------
def record_models():
    from artifactkit.lease import LeaseRecord
    from artifactkit.records import Manifest, VersionRecord
    from artifactkit.runs import RunRecord
    from artifactkit.trees import Tree

    return [VersionRecord, Manifest, Tree, RunRecord, LeaseRecord]


@pytest.mark.parametrize("model", record_models(), ids=lambda m: m.__name__)
@FAST
@given(data=st.data())
def test_store_records(model, data):
    from artifactkit.records import parse_record

    raw = data.draw(documents(list(model.model_fields)))
    only_our_errors(parse_record, model, raw, "k")


@FAST
@given(documents(["epoch", "metrics", "system"]))
def test_metrics_objects(raw):
    from artifactkit.runs import _metrics_object

    only_our_errors(_metrics_object, raw, "k")


@FAST
@given(st.binary(max_size=64) | documents(["dirs", "files"]).map(lambda b: __import__("zlib").compress(b)))
def test_stored_trees(raw):
    from artifactkit.trees import decompress_tree, parse_tree

    only_our_errors(lambda b: parse_tree(decompress_tree(b, "k"), "k"), raw)


@FAST
@given(
    documents(["pack", "size", "blobs"])
    | st.fixed_dictionaries(
        {
            "pack": st.sampled_from(["0" * 32, "x"]),
            "size": st.integers(-1, 2**40),
            "blobs": st.lists(st.lists(st.sampled_from(["0" * 32, 1, -1, 2**62, "x"]), max_size=4), max_size=3),
        }
    ).map(json_bytes)
)
def test_pack_indexes(raw):
    from artifactkit.hashing import digest_bytes
    from artifactkit.layout import index_key
    from artifactkit.packs import _Index

    only_our_errors(_Index.parse, "s3://b", index_key(digest_bytes(raw)), raw, None)


@FAST
@given(st.binary(max_size=40))
def test_alias_files(raw):
    import artifactkit
    from artifactkit.layout import alias_key

    with tempfile.TemporaryDirectory() as tmp:
        store = artifactkit.open_store(tmp)
        store.log_files({"a": b"a"}, name="d")
        store.backend.write(alias_key("d", "x"), raw)
        only_our_errors(store.resolve, "d:x")


# -- weights and checkpoints --------------------------------------------------------------------
tensor_entries = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F32", "F16", "I64", "BOOL", "X"]) | values,
        "shape": st.lists(st.integers(0, 2**62) | values, max_size=4) | values,
        "data_offsets": st.lists(st.integers(-1, 2**64), max_size=3) | values,
    },
)
weight_names = st.sampled_from(["backbone.stem.0.conv.weight", "head.cls_branches.0.2.weight", "__metadata__", "w"])
headers = st.dictionaries(
    weight_names, tensor_entries | st.dictionaries(st.text(max_size=6), st.text(max_size=12)), max_size=3
).map(json_bytes) | documents(["__metadata__"])


@settings(max_examples=40, deadline=4000, suppress_health_check=[HealthCheck.too_slow])
@given(headers, st.binary(max_size=32), st.none() | st.integers(0, 2**64 - 1))
def test_safetensors_headers(header, body, claimed):
    from artifactkit.weights import read_weights

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        path.write_bytes(struct.pack("<Q", len(header) if claimed is None else claimed) + header + body)
        only_our_errors(read_weights, path)


tensor_metas = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["tensor", "ndarray", "pickle"]) | values,
        "dtype": st.sampled_from(["float32", "int64", "bool", "<f4", "|O", "f4,i4", "__class__"]) | values,
        "shape": st.lists(st.integers(0, 2**62) | values, max_size=4) | values,
    },
)


@FAST
@given(st.binary(max_size=32), tensor_metas | values)
def test_checkpoint_tensors(data, meta):
    from artifactkit.checkpoint import tensor_from_bytes

    only_our_errors(tensor_from_bytes, data, meta, "k")


tags = st.sampled_from(["__tensor__", "__ndarray__", "__tuple__", "__dict__", "epoch", "config"])
skeletons = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tags | st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


@FAST
@given(skeletons | st.integers(100, 20_000).map(nested))
def test_checkpoint_states(skeleton):
    from artifactkit.checkpoint import unflatten
    from artifactkit.detector.state import check_state_keys

    only_our_errors(lambda s: check_state_keys(unflatten(s, {"t": None})), skeleton)


@FAST
@given(yaml_docs.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=40) | deep.map(str.encode))
def test_stored_data_yaml(raw):
    """A data.yaml read back from a store (diff's and the report's class names)."""
    import artifactkit
    from artifactkit.viewer.dataset import class_names

    with tempfile.TemporaryDirectory() as tmp:
        store = artifactkit.open_store(tmp)
        store.log_files({"data.yaml": raw}, name="d")
        entries = {e.path: e for e in store.entries(store.resolve("d"))}
        only_our_errors(class_names, store, entries, "data.yaml", "d:v0")


box_lists = st.lists(st.lists(st.floats() | st.integers(-3, 3) | values, max_size=7) | values, max_size=2)
table_rows = st.fixed_dictionaries(
    {},
    optional={
        "im_id": st.sampled_from(["a", 1]) | values,
        "image": st.sampled_from(["0" * 32, "../x"]) | values,
        "gt": box_lists,
        "pred": box_lists,
        "shape": st.lists(st.integers(0, 9) | values, max_size=3) | values,
    },
)
tables = st.fixed_dictionaries(
    {"rows": st.lists(table_rows, max_size=3) | values},
    optional={
        "epoch": st.integers(-1, 3) | values,
        "metrics": values,
        "debugger": values,
        "pr_curve": values,
        "names": values,
    },
).map(json_bytes)


@FAST
@given(tables | documents(["rows", "epoch", "metrics"]))
def test_evaluation_tables(raw):
    """An evaluation table read back from a store (the report's image debugger)."""
    import artifactkit
    from artifactkit.viewer.collect import TABLE, load_evaluation
    from artifactkit.viewer.images import ImageBank

    with tempfile.TemporaryDirectory() as tmp:
        store = artifactkit.open_store(tmp)
        store.log_files({TABLE: raw}, name="r-evaluation", type="evaluation", metadata={"epoch": 1})
        only_our_errors(load_evaluation, store, "r", ImageBank())
