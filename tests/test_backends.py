"""One conformance suite every backend passes (as restic's backend tests and fsspec's abstract
mixins do): a local folder, memory://, S3 on a real S3 API server (moto, on 127.0.0.1), and a new
backend added in one registry line (memory:// declaring that each object costs a request), which
the store then opens with packs (packs.PackedBackend)."""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid

import pytest

from artifactkit.backends.local import LocalBackend
from artifactkit.errors import AlreadyExists, BackendError, NotFound
from artifactkit.uri import open_backend


def costly_memory(uri: str, options):
    """A new backend, as a registry entry: fsspec's memory filesystem declaring that each object
    costs a request (pack_small_blobs), as a GCS or Azure backend would."""
    from artifactkit.backends.fs import FsspecBackend

    backend = FsspecBackend(f"memory://{uri.partition('://')[2]}", options)
    backend.capabilities = dataclasses.replace(backend.capabilities, pack_small_blobs=True)
    return backend


@pytest.fixture(params=["local", "memory", "s3", "packed"])
def backend(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalBackend(tmp_path / "store")
    if request.param == "memory":
        return open_backend(f"memory://ak-{uuid.uuid4().hex}")  # one memory store per process: unique root
    if request.param == "packed":
        from artifactkit.backends import base

        monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
        base.register_backend("costly", costly_memory)  # the one line a new backend adds
        return open_backend(f"costly://ak-{uuid.uuid4().hex}")
    bucket = request.getfixturevalue("s3_bucket")
    return open_backend(f"{bucket}/some/prefix")


def _keys(n: int, top: str = "objects") -> list[str]:
    return [f"{top}/{i % 7:02x}/{i:030x}" for i in range(n)]


class TestBackend:
    def test_write_then_read(self, backend):
        backend.write("a/b/c.json", b'{"x": 1}')
        assert backend.read("a/b/c.json") == b'{"x": 1}'

    def test_bytes_are_kept_exactly(self, backend):
        data = bytes(range(256)) * 3 + b"\r\n\x00"
        backend.write("bin/x", data)
        backend.write("bin/empty", b"")
        assert backend.read("bin/x") == data
        assert backend.read("bin/empty") == b""

    def test_plain_write_replaces(self, backend):
        backend.write("aliases/best", b"1\n")
        backend.write("aliases/best", b"2\n")
        assert backend.read("aliases/best") == b"2\n"

    def test_missing_key_is_not_found_naming_store_and_key(self, backend):
        with pytest.raises(NotFound) as e:
            backend.read("versions/7.json")
        assert backend.uri in str(e.value) and "versions/7.json" in str(e.value)

    def test_create_only_refuses_an_existing_key_and_keeps_its_bytes(self, backend):
        backend.write("versions/0.json", b"first", create_only=True)
        with pytest.raises(AlreadyExists) as e:
            backend.write("versions/0.json", b"second", create_only=True)
        assert "versions/0.json" in str(e.value)
        assert backend.read("versions/0.json") == b"first"

    def test_create_only_is_exclusive_among_concurrent_writers(self, backend):
        assert backend.capabilities.atomic_create
        winners, barrier = [], threading.Barrier(8)

        def claim(i: int) -> None:
            barrier.wait()
            try:
                backend.write("versions/1.json", f"writer {i}".encode(), create_only=True)
                winners.append(i)
            except AlreadyExists:
                pass

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        assert backend.read("versions/1.json") == f"writer {winners[0]}".encode()

    @pytest.mark.parametrize("n", [3, 300])  # S3: a few keys are HEADed, many are listed once
    def test_exists_answers_for_a_batch(self, backend, n):
        keys = _keys(n)
        backend.write_many([(k, k.encode()) for k in keys[::2]])
        assert backend.exists(keys + ["objects/ff/none", "elsewhere/x"]) == set(keys[::2])

    def test_exists_sees_what_was_written_after_a_listing(self, backend):
        keys = _keys(200)
        backend.write_many([(k, b"x") for k in keys[:100]])
        assert backend.exists(keys) == set(keys[:100])
        backend.write_many([(k, b"y") for k in keys[100:150]])
        assert backend.exists(keys) == set(keys[:150])
        backend.delete(keys[:10])
        assert backend.exists(keys) == set(keys[10:150])

    def test_list_is_by_folder_with_sizes(self, backend):
        backend.write("a/1", b"1")
        backend.write("a/sub/2", b"22")
        backend.write("ab/3", b"333")
        listed = {i.key: i.size for i in backend.list("a/")}
        assert listed == {"a/1": 1, "a/sub/2": 2}
        assert all(i.mtime is None or i.mtime > 0 for i in backend.list("a/"))
        assert list(backend.list("nothing/here/")) == []

    def test_delete_removes_and_ignores_missing(self, backend):
        backend.write_many([("d/1", b"1"), ("d/2", b"2")])
        backend.delete(["d/1", "d/never-was"])
        assert backend.exists(["d/1", "d/2"]) == {"d/2"}
        backend.delete([])

    def test_read_many_returns_every_key(self, backend):
        items = {k: k.encode() * 3 for k in _keys(40)}
        backend.write_many(list(items.items()))
        assert dict(backend.read_many(list(items))) == items
        assert list(backend.read_many([])) == []

    def test_read_many_with_a_missing_key_raises_not_found(self, backend):
        backend.write("r/1", b"1")
        with pytest.raises(NotFound) as e:
            dict(backend.read_many(["r/1", "r/2"]))
        assert "r/2" in str(e.value)

    def test_write_many_takes_bytes_and_local_files(self, backend, tmp_path):
        f = tmp_path / "big.bin"
        f.write_bytes(b"f" * 100_000)
        backend.write_many([("w/bytes", b"b"), ("w/file", f), ("w/view", memoryview(b"mv"))])
        backend.sync()
        assert backend.read("w/bytes") == b"b"
        assert backend.read("w/file") == b"f" * 100_000
        assert backend.read("w/view") == b"mv"

    def test_write_many_streams_a_hashing_reader_and_commits_only_intact_bytes(self, backend, tmp_path):
        from artifactkit.errors import InvalidInput
        from artifactkit.hashing import HashingReader, hash_file

        f = tmp_path / "large.bin"
        f.write_bytes(os.urandom(1 << 20) * 12)  # 12 MiB: more than one streamed chunk, several S3 parts
        digest = hash_file(f)[0]
        backend.write_many([("s/good", HashingReader(f, digest))])
        backend.sync()
        assert backend.read("s/good") == f.read_bytes()
        with pytest.raises(InvalidInput, match="changed while it was being logged"):
            backend.write_many([("s/bad", HashingReader(f, "0" * 32))])  # bytes that are not the digest's
        assert backend.exists(["s/bad"]) == set()  # discarded, never committed under that key

    def test_read_to_streams_into_a_file(self, backend, tmp_path):
        backend.write("t/blob", b"z" * 5000)
        backend.read_to("t/blob", tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == b"z" * 5000
        with pytest.raises(NotFound):
            backend.read_to("t/none", tmp_path / "none.bin")
        assert not (tmp_path / "none.bin").exists()

    def test_every_member_of_the_protocol_is_there(self, backend):
        """The Backend protocol is the whole contract (no getattr hooks above it): each backend
        has every member, the optional ones by inheriting the protocol's defaults."""
        from artifactkit.backends.base import Backend

        assert Backend in type(backend).__mro__
        members = [n for n in vars(Backend) if not n.startswith("_")] + list(Backend.__annotations__)
        assert {"read_ranges", "local_root", "store_format", "damage", "sweep", "forget_listings"} <= set(members)
        assert [n for n in members if not hasattr(backend, n)] == []
        assert "__getattr__" not in vars(type(backend))  # nothing forwarded unnamed

    def test_read_ranges_reads_parts_of_objects(self, backend):
        backend.write_many([("g/1", b"0123456789"), ("g/2", b"abcdef")])
        assert backend.read_ranges([("g/1", 2, 5), ("g/2", 0, 6), ("g/1", 9, 10)]) == [b"234", b"abcdef", b"9"]
        with pytest.raises(NotFound):
            backend.read_ranges([("g/none", 0, 1)])

    def test_the_optional_members_answer_for_a_plain_store(self, backend):
        backend.write("a/1", b"1")
        assert backend.damage() == [] and backend.sweep(0.0) == 0
        assert backend.store_format in (3, 4)
        assert backend.local_root is None or backend.local_root.is_dir()
        assert isinstance(backend.protocol, str) and backend.protocol
        backend.forget_listings()
        assert backend.exists(["a/1"]) == {"a/1"}


def test_unknown_scheme_and_option_are_refused(s3_bucket):
    from artifactkit.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown URI scheme"):
        open_backend("nosuchfs://x")
    with pytest.raises(InvalidInput, match="invalid storage option"):
        list(open_backend(s3_bucket, {"no_such_option": 1}).list("a/"))


def test_memory_store_without_single_writer_needs_no_option():
    b = open_backend(f"memory://ak-{uuid.uuid4().hex}")
    b.write("v/0", b"0", create_only=True)  # exclusive in-process: allowed without single_writer
    with pytest.raises(AlreadyExists):
        b.write("v/0", b"0", create_only=True)


def test_s3_errors_name_the_uri(s3_env):
    b = open_backend("s3://no-such-bucket-here/prefix")
    with pytest.raises(
        BackendError, match=r"s3://no-such-bucket-here/prefix: bucket 'no-such-bucket-here' does not exist"
    ):
        list(b.list("artifacts/"))
    with pytest.raises(BackendError, match="does not exist"):
        b.read("artifacts/x/versions/0.json")


def test_registry_opens_backends_by_scheme_and_imports_them_lazily(tmp_path, monkeypatch):
    import subprocess
    import sys

    from artifactkit.backends import base
    from artifactkit.backends.fs import FsspecBackend

    assert isinstance(open_backend(str(tmp_path / "a")), LocalBackend)
    assert open_backend(f"FILE://{tmp_path / 'b'}").root == tmp_path / "b"
    assert type(open_backend(f"memory://ak-{uuid.uuid4().hex}")) is FsspecBackend  # fsspec's own registry
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    base.register_backend("Mine", lambda uri, options: LocalBackend(tmp_path / uri.partition("://")[2]))
    assert open_backend("mine://c").root == tmp_path / "c"
    code = (
        f"from artifactkit.uri import open_backend; import sys; open_backend({str(tmp_path / 'd')!r}).list('x')\n"
        "assert not {'fsspec', 's3fs', 'artifactkit.backends.fs'} & set(sys.modules), sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_backends_import_nothing_above_them():
    """backends/ is the bottom layer: errors, redact and fileio (leaf modules) are all it uses of artifactkit, and the
    generic fsspec backend never imports its S3 subclass (the registry picks it)."""
    import ast
    from pathlib import Path

    import artifactkit.backends as pkg

    allowed = {"errors", "redact", "fileio", "backends.base", "backends.local", "backends.fs"}
    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = ("backends." if node.level == 1 else "") + (node.module or "")
                assert target in allowed, (path.name, target)
                assert not (path.name == "fs.py" and target == "backends.s3")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(n.startswith("artifactkit") for n in names), (path.name, names)


def test_redaction_of_urls():
    from artifactkit.redact import redact, redact_uri
    from artifactkit.store import Store

    assert redact_uri("http://user:pw@host:8/a/b?X-Amz-Signature=1") == "http://host:8/a/b"
    assert redact_uri("ftp://anon@host/a") == "ftp://host/a"
    assert redact_uri("/data/who@where?/x") == "/data/who@where?/x"  # a path: '@' and '?' are plain characters
    assert redact("GET ftp://u:pw@h/x?sig=1 failed; key abcd1234", ["abcd1234"]) == "GET ftp://h/x?… failed; key ***"
    s = Store(open_backend(f"memory://user:hunter2pw@ak-{uuid.uuid4().hex}/s"))
    assert "hunter2pw" not in s.uri and s.uri.startswith("memory://ak-") and "user:hunter2pw@" in s.url


@pytest.mark.parametrize(
    "key", ["../outside", "a/../../outside", "/etc/passwd", "a//b", "a/./b", "a/", "", "a\\..\\b", "a/\0"]
)
def test_the_local_backend_refuses_keys_that_could_climb_out(tmp_path, key):
    """The last line of defence under the Store's own validation: no key names a file outside the root."""
    backend = LocalBackend(tmp_path / "deep" / "store")
    for op in (
        lambda: backend.write(key, b"x"),
        lambda: backend.write(key, b"x", create_only=True),
        lambda: backend.write_many([(key, b"x")]),
        lambda: backend.read(key),
        lambda: backend.exists([key]),
        lambda: backend.delete([key]),
        lambda: backend.read_to(key, tmp_path / "copy"),
    ):
        with pytest.raises(BackendError, match="refusing the key"):
            op()
    assert not (tmp_path / "outside").exists() and not (tmp_path / "deep" / "outside").exists()
    assert not (tmp_path / "copy").exists()
    backend.write("fine/..x/y.", b"ok")  # dots inside a name are just names
    assert [i.key for i in backend.list("fine/")] == ["fine/..x/y."]


@pytest.mark.parametrize("uri, package", [("gcs://bucket/ak", "gcsfs"), ("az://container/ak", "adlfs")])
def test_a_missing_filesystem_names_the_package_to_install(tmp_path, uri, package):
    """No extra of ours brings gcsfs or adlfs, so the hint names the package fsspec lacked (it
    used to suggest artifactkit[all], which does not hold it)."""
    import importlib.util

    from clirunner import run_cli

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    proc = run_cli("ls", "--store", uri, check=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert (
        proc.stderr.strip() == f"error: the {uri.split(':')[0]}:// filesystem is not installed: pip install {package}"
    )


def test_a_backend_that_declares_packing_gets_packs_where_the_store_opens(tmp_path, monkeypatch):
    """Packing is a capability, not a backend's name: a new object-store backend (here fsspec's
    memory filesystem saying each object costs a request) gets packs from one registry line, and
    `-o pack=false` still keeps one object per blob."""
    import artifactkit
    from artifactkit.backends import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    base.register_backend("costly", costly_memory)
    data = tmp_path / "ds"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.txt").write_text(f"file {i}")
    for options, kept_in in (({}, "packs/"), ({"pack": "false"}, "objects/")):
        root = f"ak-{uuid.uuid4().hex}"
        artifactkit.open_store(f"costly://{root}", dict(options)).log_folder(data, name="ds")
        keys = [i.key for i in open_backend(f"memory://{root}").list("")]
        assert any(k.startswith(kept_in) for k in keys), keys
        assert not any(k.startswith({"packs/": "objects/", "objects/": "packs/"}[kept_in]) for k in keys), keys
        artifactkit.pull(artifactkit.open_store(f"costly://{root}"), "ds", tmp_path / root, cache=False)
        assert sorted(p.name for p in (tmp_path / root).iterdir()) == ["0.txt", "1.txt", "2.txt"]
