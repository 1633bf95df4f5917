"""The demo dataset: rendered chess boards with 12 piece classes, in Ultralytics/YOLOv5 layout.

Everything is generated locally from the sprites shipped in the `chessboard-image` package (MIT).
The 7 themes there hold only 3 distinct piece sets, so train/val draw from two of them and the
third (uscf = maestro = symbol) forms `val-heldout`: a test of generalisation to unseen pieces.
An optional `val-style` split repaints the training pieces with random palettes and coarser
drawing: a style the trainer never saw, made without the held-out sprites, to choose a recipe by
(bench/train_chess.py) while `val-heldout` stays a test that is only reported.
Same arguments -> byte-identical files, because every random choice comes from a numpy Generator
seeded from (seed, split, image index).
"""

from __future__ import annotations

import base64
import importlib.metadata
import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from artifactkit.errors import InvalidInput, missing_extra
from artifactkit.fileio import atomic_write

NAMES = [
    "white-king",
    "white-queen",
    "white-rook",
    "white-bishop",
    "white-knight",
    "white-pawn",
    "black-king",
    "black-queen",
    "black-rook",
    "black-bishop",
    "black-knight",
    "black-pawn",
]
# theme.json piece codes in class order.
_CODES = ["wK", "wQ", "wR", "wB", "wN", "wP", "bK", "bQ", "bR", "bB", "bN", "bP"]
# wisteria/sakura repeat the alpha/wikipedia pieces; uscf, maestro and symbol share the third set.
TRAIN_THEMES = ("alpha", "wikipedia", "wisteria", "sakura")
HELDOUT_THEMES = ("uscf", "maestro", "symbol")
SPLITS = ("train", "val", "val-heldout", "val-style")
_MARKER = ".artifactkit-chess.json"
# Bump when rendering changes, so a dataset from an older generator is regenerated, not reused.
_GENERATOR_VERSION = 2  # val-style (added later) changed no byte of the other splits
_FULL_SIDE = {"K": 1, "Q": 1, "R": 2, "B": 2, "N": 2, "P": 8}
_ALPHA_EDGE = 32  # sprite pixels with alpha above this count as the piece for its box


# generate's defaults, which the demo-data command shows (and does not repeat)
DEFAULTS = {"n_train": 800, "n_val": 200, "n_heldout": 200, "imgsz": 416, "seed": 0}


def generate(
    out_dir,
    n_train: int = DEFAULTS["n_train"],
    n_val: int = DEFAULTS["n_val"],
    n_heldout: int = DEFAULTS["n_heldout"],
    imgsz: int = DEFAULTS["imgsz"],
    seed: int = DEFAULTS["seed"],
    n_style: int = 0,
) -> Path:
    """Render the dataset into out_dir and return the path of its data.yaml.

    out_dir must be empty, absent, or a previous chess dataset (which is reused when it was made
    with the same arguments and is complete, else regenerated). data.yaml is written last, so a
    killed generation leaves no data.yaml and is never taken for a complete dataset.
    """
    if imgsz < 64:
        raise InvalidInput(f"chess imgsz must be >= 64, got {imgsz}")
    counts = {"train": n_train, "val": n_val, "val-heldout": n_heldout}
    if n_style:  # only then, so the marker (and data.yaml) of every older dataset stays valid
        counts["val-style"] = n_style
    if any(int(n) < 0 for n in counts.values()):
        raise InvalidInput(f"chess split sizes must be >= 0, got {counts}")
    out = Path(out_dir)
    params = {
        "version": _GENERATOR_VERSION,
        "imgsz": int(imgsz),
        "seed": int(seed),
        "counts": {k: int(v) for k, v in counts.items()},
    }
    if _prepare_out_dir(out, params):
        return out / "data.yaml"
    renderer = _Renderer(_load_themes(), int(imgsz))
    jobs = [(split, i) for split in counts for i in range(counts[split])]
    for split in counts:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    # PIL releases the GIL while resizing/encoding; each image owns its RNG, so threads keep
    # the output identical to a serial run.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda job: _write_one(renderer, out, job[0], job[1], int(seed)), jobs))
    _write_yaml(out, list(counts))
    return out / "data.yaml"


def _prepare_out_dir(out: Path, params: dict) -> bool:
    """Make out ready for generation; True when it already holds this exact, complete dataset."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"chess output {out} exists and is not a directory")
    marker = out / _MARKER
    if out.exists() and any(out.iterdir()):
        if not marker.is_file():
            raise InvalidInput(
                f"chess output {out} is not empty and is not a chess dataset "
                f"(no {_MARKER}); choose an empty or new directory"
            )
        if _is_complete(out, params):
            return True
        # Remove data.yaml first: from here until it is rewritten the dataset reads as incomplete.
        (out / "data.yaml").unlink(missing_ok=True)
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(params, sort_keys=True) + "\n")
    return False


def _is_complete(out: Path, params: dict) -> bool:
    try:
        old = json.loads((out / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    if old != params or not (out / "data.yaml").is_file():
        return False
    for split, n in params["counts"].items():
        if len(list((out / "images" / split).glob("*.jpg"))) != n:
            return False
    return True


def _write_yaml(out: Path, splits: list[str]) -> None:
    doc = {
        "path": ".",
        **{split: f"images/{split}" for split in splits},
        "nc": len(NAMES),
        "names": {i: n for i, n in enumerate(NAMES)},
    }
    atomic_write(out / "data.yaml", yaml.safe_dump(doc, sort_keys=False).encode())


def _write_one(renderer: "_Renderer", out: Path, split: str, i: int, seed: int) -> None:
    rng = np.random.default_rng([seed, SPLITS.index(split), i])
    themes = HELDOUT_THEMES if split == "val-heldout" else TRAIN_THEMES
    img, labels, quality = renderer.render(rng, themes[int(rng.integers(len(themes)))], restyle=split == "val-style")
    stem = f"{split}-{i:05d}"
    img.save(out / "images" / split / f"{stem}.jpg", "JPEG", quality=quality)
    lines = "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in labels)
    (out / "labels" / split / f"{stem}.txt").write_text(lines)


def _load_themes() -> dict:
    """theme name -> {"board": (light, dark) RGB tuples, "pieces": [RGBA image per class]}."""
    try:
        dist = importlib.metadata.distribution("chessboard-image")
    except importlib.metadata.PackageNotFoundError:
        raise missing_extra("chessboard-image", "train") from None
    # Read the JSON as data: importing chessboard_image would drag in pkg_resources.
    path = Path(str(dist.locate_file("chessboard_image/theme.json")))
    raw = json.loads(path.read_text())
    themes = {}
    for name in TRAIN_THEMES + HELDOUT_THEMES:
        entry = raw[name]
        pieces = []
        for code in _CODES:
            data = entry["pieces"][code][0].split(",", 1)[1]
            pieces.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA"))
        board = tuple(tuple(int(c.lstrip("#")[k : k + 2], 16) for k in (0, 2, 4)) for c in entry["board"])
        themes[name] = {"board": board, "pieces": pieces}
    return themes


def random_position(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """A plausible position as (class, file, rank): both kings, 2-32 pieces, <= 8 pawns a side,
    no pawns on the first/last rank, kings not touching, a side's bishops on opposite colours."""
    n_total = int(rng.integers(2, 33))
    pool = [(side, kind) for side in (0, 1) for kind, n in _FULL_SIDE.items() if kind != "K" for _ in range(n)]
    keep = rng.permutation(len(pool))[: n_total - 2]
    pieces = [(0, "K"), (1, "K")] + [pool[k] for k in sorted(keep)]
    free = np.ones((8, 8), bool)
    placed, bishop_colour = [], {}
    for side, kind in pieces:
        allowed = free.copy()
        if kind == "P":
            allowed[:, [0, 7]] = False
        if kind == "K" and side == 1:
            f, r = placed[0][1], placed[0][2]
            allowed[max(f - 1, 0) : f + 2, max(r - 1, 0) : r + 2] = False
        if kind == "B" and side in bishop_colour:
            allowed &= (np.add.outer(np.arange(8), np.arange(8)) % 2) != bishop_colour[side]
        choices = np.flatnonzero(allowed)
        if len(choices) == 0:
            continue
        sq = int(choices[int(rng.integers(len(choices)))])
        f, r = divmod(sq, 8)
        free[f, r] = False
        if kind == "B":
            bishop_colour[side] = (f + r) % 2
        placed.append(("KQRBNP".index(kind) + 6 * side, f, r))
    return placed


class _Repaint:
    """One image's piece style for val-style: each side's sprites are repainted along a ramp from a
    dark to a light colour by their luminance, and drawn coarser (down, then up). White pieces stay
    the lighter side (their fill is the light end of a light ramp), black the darker, but neither
    is the pure white or black of the training sprites, and the tints change each image."""

    def __init__(self, rng: np.random.Generator, size: int):
        tint = rng.uniform(-25, 25, 3)
        self.white = (rng.uniform(15, 90) + tint, rng.uniform(185, 245) + tint)  # (ink, fill)
        self.black = (rng.uniform(30, 110) + tint, rng.uniform(150, 225) + tint)  # (fill, lines)
        self.coarse = max(4, int(size * rng.uniform(0.45, 0.8)))
        self.size = size

    def __call__(self, im: Image.Image, black: bool) -> Image.Image:
        rgba = np.asarray(im, np.float32)
        luma = (rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] / 255
        low, high = (np.asarray(c, np.float32) for c in (self.black if black else self.white))
        rgba = np.concatenate([low + (high - low) * luma, rgba[..., 3:]], -1)
        out = Image.fromarray(np.clip(rgba + 0.5, 0, 255).astype(np.uint8), "RGBA")
        return out.resize((self.coarse, self.coarse), Image.BILINEAR).resize((self.size, self.size), Image.BILINEAR)


class _Renderer:
    """Draws one board image; sprites are scaled once per (theme, piece, size) and cached."""

    def __init__(self, themes: dict, imgsz: int):
        self.themes = themes
        self.imgsz = imgsz
        self._sprites: dict = {}

    def sprite(self, theme: str, cls: int, size: int):
        key = (theme, cls, size)
        hit = self._sprites.get(key)
        if hit is None:
            im = self.themes[theme]["pieces"][cls].resize((size, size), Image.LANCZOS)
            box = im.getchannel("A").point(lambda a: 255 if a > _ALPHA_EDGE else 0).getbbox()
            hit = self._sprites[key] = (im, box or (0, 0, size, size))
        return hit

    def render(self, rng: np.random.Generator, theme: str, restyle: bool = False):
        s = self.imgsz
        img = self._background(rng)
        sq = max(4, int(s * rng.uniform(0.55, 1.0)) // 8)
        ox, oy = (int(rng.integers(0, s - 8 * sq + 1)) for _ in range(2))
        img.paste(self._board(rng, theme, sq), (ox, oy))
        piece = max(4, int(round(sq * rng.uniform(0.85, 1.0))))
        inset = (sq - piece) // 2
        labels = []
        paint = _Repaint(rng, piece) if restyle else None  # draws from rng only for val-style
        for cls, f, r in random_position(rng):
            im, (x0, y0, x1, y1) = self.sprite(theme, cls, piece)
            if paint is not None:
                im = paint(im, cls >= 6)
            px, py = ox + f * sq + inset, oy + r * sq + inset
            img.paste(im, (px, py), im)
            labels.append((cls, (px + (x0 + x1) / 2) / s, (py + (y0 + y1) / 2) / s, (x1 - x0) / s, (y1 - y0) / s))
        img = self._degrade(rng, img)
        return img, labels, int(rng.integers(45, 96))

    def _background(self, rng: np.random.Generator) -> Image.Image:
        # A smooth random gradient: cheap, and it keeps the board edge from being the only cue.
        k = int(rng.integers(2, 6))
        low = rng.integers(0, 256, (k, k, 3), dtype=np.uint8)
        return Image.fromarray(low).resize((self.imgsz, self.imgsz), Image.BILINEAR)

    def _board(self, rng: np.random.Generator, theme: str, sq: int) -> Image.Image:
        if rng.random() < 0.4:
            light, dark = (np.array(c, np.float64) for c in self.themes[theme]["board"])
        else:
            light = rng.uniform(150, 256, 3)
            dark = light * rng.uniform(0.35, 0.8) + rng.uniform(-30, 30, 3)
        colours = np.clip(np.stack([light, dark]), 0, 255).astype(np.uint8)
        checker = np.add.outer(np.arange(8), np.arange(8)) % 2
        return Image.fromarray(colours[checker]).resize((8 * sq, 8 * sq), Image.NEAREST)

    def _degrade(self, rng: np.random.Generator, img: Image.Image) -> Image.Image:
        s = self.imgsz
        if rng.random() < 0.3:  # soften as a low-resolution capture would: down, then up
            small = max(8, int(s * rng.uniform(0.45, 0.85)))
            img = img.resize((small, small), Image.BILINEAR).resize((s, s), Image.BILINEAR)
        if rng.random() < 0.4:  # uniform integer noise: several times cheaper than Gaussian
            amp = int(rng.integers(3, 16))
            noisy = rng.integers(-amp, amp + 1, (s, s, 3), dtype=np.int16)
            noisy += np.asarray(img, np.int16)
            img = Image.fromarray(np.clip(noisy, 0, 255, out=noisy).astype(np.uint8))
        return img
