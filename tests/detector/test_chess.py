"""The chess demo dataset: deterministic, valid labels, held-out themes kept apart."""

import numpy as np
import pytest
import yaml
from PIL import Image

from artifactkit.detector import chess
from artifactkit.errors import InvalidInput

SIZES = {"train": 8, "val": 4, "val-heldout": 4}


def _generate(out, seed=0):
    return chess.generate(out, n_train=8, n_val=4, n_heldout=4, imgsz=128, seed=seed)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("chess") / "ds").parent


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_yaml(dataset):
    doc = yaml.safe_load((dataset / "data.yaml").read_text())
    assert doc["path"] == "."
    assert doc["names"] == dict(enumerate(chess.NAMES))
    assert chess.NAMES[:2] == ["white-king", "white-queen"] and chess.NAMES[6] == "black-king"
    for split, n in SIZES.items():
        assert doc[split] == f"images/{split}"
        images = sorted((dataset / "images" / split).glob("*.jpg"))
        assert len(images) == n
        for img in images:
            assert (dataset / "labels" / split / f"{img.stem}.txt").is_file()
            with Image.open(img) as im:
                assert im.size == (128, 128) and im.format == "JPEG"


def test_labels_are_valid_positions(dataset):
    for label in (dataset / "labels").rglob("*.txt"):
        rows = np.loadtxt(label, ndmin=2)
        cls = rows[:, 0].astype(int)
        assert 2 <= len(rows) <= 32
        assert (cls == 0).sum() == 1 and (cls == 6).sum() == 1  # one king each
        assert (cls == 5).sum() <= 8 and (cls == 11).sum() <= 8
        assert ((0 <= cls) & (cls < 12)).all()
        cx, cy, w, h = rows[:, 1:].T
        assert (w > 0).all() and (h > 0).all()
        assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 1).all()
        assert (cy - h / 2 >= 0).all() and (cy + h / 2 <= 1).all()


def test_same_seed_is_byte_identical(dataset, tmp_path):
    again = _generate(tmp_path / "again").parent
    assert _files(again) == _files(dataset)
    other = _generate(tmp_path / "other", seed=1).parent
    assert _files(other) != _files(dataset)


def test_random_position_rules():
    for k in range(300):
        pos = chess.random_position(np.random.default_rng(k))
        squares = [(f, r) for _, f, r in pos]
        assert len(set(squares)) == len(pos)
        assert 2 <= len(pos) <= 32
        kings = {c: (f, r) for c, f, r in pos if c in (0, 6)}
        assert set(kings) == {0, 6}
        (f0, r0), (f1, r1) = kings[0], kings[6]
        assert max(abs(f0 - f1), abs(r0 - r1)) > 1
        for cls, _, rank in pos:
            if cls in (5, 11):
                assert rank not in (0, 7)


def test_heldout_uses_only_heldout_themes(monkeypatch, tmp_path):
    themes = []
    real_render = chess._Renderer.render

    def spy(self, rng, theme, restyle=False):
        themes.append(theme)  # list.append is atomic: safe under the generator's threads
        return real_render(self, rng, theme, restyle)

    monkeypatch.setattr(chess._Renderer, "render", spy)
    chess.generate(tmp_path / "held", n_train=0, n_val=0, n_heldout=12, imgsz=96)
    assert len(themes) == 12 and set(themes) <= set(chess.HELDOUT_THEMES)
    themes.clear()
    chess.generate(tmp_path / "seen", n_train=12, n_val=6, n_heldout=0, imgsz=96)
    assert len(themes) == 18 and set(themes) <= set(chess.TRAIN_THEMES)
    assert len(set(themes)) > 1


def test_val_style_repaints_training_pieces_only_when_asked(dataset, tmp_path):
    """val-style (a style to choose a recipe by) draws the training piece sets repainted, never
    the held-out sprites, and adding it changes no byte of the other splits."""
    styled = chess.generate(tmp_path / "styled", n_train=8, n_val=4, n_heldout=4, n_style=4, imgsz=128).parent
    doc = yaml.safe_load((styled / "data.yaml").read_text())
    assert doc["val-style"] == "images/val-style" and "val-style" not in yaml.safe_load(
        (dataset / "data.yaml").read_text()
    )
    others = {p: b for p, b in _files(styled).items() if "val-style" not in str(p)}
    assert {p: b for p, b in others.items() if p.name not in ("data.yaml", ".artifactkit-chess.json")} == {
        p: b for p, b in _files(dataset).items() if p.name not in ("data.yaml", ".artifactkit-chess.json")
    }
    assert len(list((styled / "images" / "val-style").glob("*.jpg"))) == 4
    rng = np.random.default_rng(0)
    paint = chess._Repaint(rng, 40)
    white, black = (chess._Renderer(chess._load_themes(), 128).sprite("alpha", c, 40)[0] for c in (5, 11))
    w, b = (_opaque_mean(paint(im, c >= 6)) for im, c in ((white, 5), (black, 11)))
    assert w > b  # white pieces stay the lighter side: the label is kept


def _opaque_mean(im):
    rgba = np.asarray(im, np.float64)
    return rgba[..., :3][rgba[..., 3] > 128].mean()


def test_themes_share_three_piece_sets():
    themes = chess._load_themes()
    digest = {name: tuple(im.tobytes() for im in t["pieces"]) for name, t in themes.items()}
    assert digest["alpha"] == digest["wisteria"] and digest["wikipedia"] == digest["sakura"]
    assert digest["uscf"] == digest["maestro"] == digest["symbol"]
    train_sets = {digest[t] for t in chess.TRAIN_THEMES}
    assert digest["uscf"] not in train_sets


def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match=str(tmp_path)):
        _generate(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_reuses_complete_and_redoes_partial(tmp_path):
    out = tmp_path / "ds"
    yaml_path = _generate(out)
    stamp = yaml_path.stat().st_mtime_ns
    assert _generate(out) == yaml_path and yaml_path.stat().st_mtime_ns == stamp
    # A killed run leaves no data.yaml (written last): the next run regenerates in place.
    yaml_path.unlink()
    (out / "images" / "train" / "train-00000.jpg").unlink()
    _generate(out)
    assert yaml_path.is_file() and (out / "images" / "train" / "train-00000.jpg").is_file()
    # Other arguments: regenerated, not reused.
    chess.generate(out, n_train=3, n_val=1, n_heldout=1, imgsz=96)
    assert len(list((out / "images" / "train").glob("*.jpg"))) == 3
