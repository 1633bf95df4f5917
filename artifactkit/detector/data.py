"""YOLO-format data: data.yaml, label checking, augmentation, a deterministic sampler, batches.

Determinism is the design constraint: bit-exact resume needs every sample to be a pure function
of (seed, epoch, index). So __getitem__ draws from a numpy Generator seeded from that triple and
never from the global random/numpy/torch RNGs, and the sampler hands the epoch and the mosaic flag
to the workers inside each index (persistent workers hold stale copies of the dataset).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader, Dataset, Sampler

from artifactkit.detector.augment import (
    colour_matrix, letterbox, recolour, resize_chw, warp, xyxy_pixels,
)
from artifactkit.errors import InvalidInput

__all__ = ["AugmentConfig", "DataConfig", "EpochSampler", "YoloDataset", "build_dataloader",
           "collate", "label_path", "letterbox", "load_data_config", "read_labels"]

IMG_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_NOT_SPLITS = {"path", "names", "nc", "download", "yaml_file"}
_SAMPLE_STREAM, _SAMPLER_STREAM = 1, 2  # keep sample and order RNG streams apart
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError,
                 Image.DecompressionBombError)


class AugmentConfig(BaseModel):
    """Training augmentation (YOLOv8 defaults). Affine is scale + translate only (degrees 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mosaic: float = Field(1.0, ge=0, le=1)  # probability
    scale: float = Field(0.5, ge=0, lt=1)
    translate: float = Field(0.1, ge=0, le=0.5)
    hsv_h: float = Field(0.015, ge=0, le=1)
    hsv_s: float = Field(0.7, ge=0, le=1)
    hsv_v: float = Field(0.4, ge=0, le=1)
    fliplr: float = Field(0.5, ge=0, le=1)
    flipud: float = Field(0.0, ge=0, le=1)


class DataConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    root: Path
    splits: dict[str, Path]
    names: list[str]

    @property
    def nc(self) -> int:
        return len(self.names)


def load_data_config(path_or_dir) -> DataConfig:
    """Read an Ultralytics/YOLOv5 data.yaml (a folder means <folder>/data.yaml)."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / "data.yaml"
    doc = _read_yaml(path)
    names = _parse_names(doc, path)
    base = doc.get("path")
    if base is not None and not isinstance(base, str):
        raise InvalidInput(f"{path}: key 'path' must be a string, got {base!r}")
    root = (path.parent / (base or ".")).resolve()
    return DataConfig(root=root, splits=_resolve_splits(doc, root, path), names=names)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read data config {path}: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path}{where}: malformed YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: expected a mapping with keys path/train/val/names")
    return doc


def _parse_names(doc: dict, path: Path) -> list[str]:
    raw = doc.get("names")
    if isinstance(raw, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError):
            raise InvalidInput(f"{path}: key 'names' must map integers to names") from None
        if [k for k, _ in items] != list(range(len(items))):
            raise InvalidInput(f"{path}: key 'names' must use ids 0..{len(items) - 1}")
        names = [v for _, v in items]
    elif isinstance(raw, list) and all(isinstance(n, (str, int)) for n in raw):
        names = [str(n) for n in raw]
    else:
        raise InvalidInput(f"{path}: key 'names' missing or not a list/dict of class names")
    if not names:
        raise InvalidInput(f"{path}: key 'names' is empty")
    nc = doc.get("nc")
    if nc is not None and nc != len(names):
        raise InvalidInput(f"{path}: key 'nc' is {nc!r} but 'names' lists {len(names)} classes")
    return names


def _resolve_splits(doc: dict, root: Path, path: Path) -> dict[str, Path]:
    splits = {}
    for key, value in doc.items():
        if key in _NOT_SPLITS or value is None or value == "":
            continue
        required = key in ("train", "val", "test")
        if not isinstance(value, str):
            if required:
                raise InvalidInput(f"{path}: key '{key}' must be one image folder (str)")
            continue
        folder = (root / value).resolve()
        if folder.is_dir():
            splits[str(key)] = folder
        elif required:
            raise InvalidInput(f"{path}: key '{key}': image folder {folder} does not exist")
    for key in ("train", "val"):
        if key not in splits:
            raise InvalidInput(f"{path}: key '{key}' is missing")
    return splits


def label_path(image_path) -> Path:
    """labels/<split>/<stem>.txt for images/<split>/<stem>.<ext> (the last /images/ replaced)."""
    s = str(image_path)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def read_labels(path: Path, nc: int) -> np.ndarray:
    """(n, 5) float32 [class, cx, cy, w, h]; a missing file is a background image (n = 0)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    except FileNotFoundError:
        return np.zeros((0, 5), np.float32)
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read label file {path}: {e}") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise InvalidInput(f"{path} line {lineno}: expected 5 columns "
                               f"'class cx cy w h', got {len(parts)}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InvalidInput(
                f"{path} line {lineno}: non-numeric value in {line.strip()!r}") from None
        cls = values[0]
        if not (0 <= cls < nc and cls == int(cls)):  # also rejects nan and inf
            raise InvalidInput(f"{path} line {lineno}: class id {parts[0]} not in 0..{nc - 1}")
        if not all(0.0 <= v <= 1.0 for v in values[1:]):
            raise InvalidInput(f"{path} line {lineno}: box values must be normalised to [0, 1]")
        if values[3] <= 0 or values[4] <= 0:
            raise InvalidInput(f"{path} line {lineno}: box width and height must be > 0")
        rows.append(values)
    return np.array(rows, np.float32).reshape(-1, 5)


def _list_images(image_dir: Path) -> list[Path]:
    if not image_dir.is_dir():
        raise InvalidInput(f"image folder {image_dir} does not exist")
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMG_EXTS)
    if not files:
        kinds = ", ".join(sorted(IMG_EXTS))
        raise InvalidInput(f"image folder {image_dir} holds no images ({kinds})")
    return files


def _orientation(im: Image.Image) -> int:
    return int(im.getexif().get(0x0112, 1) or 1)


def _image_shape(path: Path) -> tuple[int, int]:
    """(h, w) as displayed (EXIF rotation applied), read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            rotated = _orientation(im) in (5, 6, 7, 8)
    except _IMAGE_ERRORS as e:
        raise InvalidInput(f"cannot read image {path}: {e}") from None
    return (w, h) if rotated else (h, w)


def _decode(path: Path, shape: tuple[int, int], imgsz: int) -> np.ndarray:
    """Decode to RGB with the long side resized to imgsz."""
    r = imgsz / max(shape)
    try:
        with Image.open(path) as im:
            if r < 0.5 and im.format == "JPEG":  # let libjpeg decode at reduced size: far cheaper
                im.draft("RGB", (math.ceil(im.width * r), math.ceil(im.height * r)))
            if _orientation(im) > 1:
                im = ImageOps.exif_transpose(im)
            # Read-only view of PIL's buffer, no copy: decoded images are never written to.
            arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except _IMAGE_ERRORS as e:
        raise InvalidInput(f"cannot read image {path}: {e}") from None
    h, w = max(1, round(shape[0] * r)), max(1, round(shape[1] * r))
    if arr.shape[:2] == (h, w):
        return arr
    return np.ascontiguousarray(resize_chw(arr, h, w).transpose(1, 2, 0))


class YoloDataset(Dataset):
    """One image folder with its YOLO labels. A sample is a pure function of (seed, epoch, index).

    Indices may be plain ints (the dataset's own epoch and mosaic flag apply) or the
    (index, epoch, mosaic) keys that EpochSampler yields.
    """

    def __init__(self, image_dir, names, imgsz: int = 640, augment: bool = False,
                 hyp: AugmentConfig | None = None, seed: int = 0, cache: bool = False):
        self.image_dir = Path(image_dir)
        self.names = list(names)
        self.imgsz = int(imgsz)
        self.augment = bool(augment)
        self.hyp = hyp or AugmentConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.mosaic = self.augment and self.hyp.mosaic > 0
        self.files = _list_images(self.image_dir)
        self.labels = [read_labels(label_path(f), len(self.names)) for f in self.files]
        self.shapes = [_image_shape(f) for f in self.files]
        self._cache = self._preload() if cache else None

    def _preload(self) -> list[np.ndarray]:
        # Decoded once, before DataLoader workers fork: they share these pages copy-on-write.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(self._decode, range(len(self.files))))

    def _decode(self, i: int) -> np.ndarray:
        return _decode(self.files[i], self.shapes[i], self.imgsz)

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def close_mosaic(self) -> None:
        """Turn mosaic off (YOLOv8 does so for the last epochs); the affine/HSV/flip remain."""
        self.mosaic = False

    def load_image(self, i: int) -> np.ndarray:
        """RGB uint8 HxWx3 with the long side = imgsz (from the RAM cache when enabled)."""
        return self._cache[i] if self._cache is not None else self._decode(i)

    def __getitem__(self, key) -> dict[str, Any]:
        i, epoch, mosaic = key if isinstance(key, tuple) else (key, self.epoch, self.mosaic)
        i = int(i) + (len(self) if int(i) < 0 else 0)
        if not self.augment:
            return self._eval_sample(i)
        rng = np.random.default_rng([self.seed, int(epoch), i, _SAMPLE_STREAM])
        img, boxes = self._warped(i, rng, bool(mosaic))  # 3 x s x s
        hyp, s = self.hyp, self.imgsz
        if hyp.hsv_h or hyp.hsv_s or hyp.hsv_v:
            img = recolour(img, colour_matrix(rng, (hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)))
        if rng.random() < hyp.fliplr:
            img, boxes[:, [1, 3]] = img[:, :, ::-1], s - boxes[:, [3, 1]]
        if rng.random() < hyp.flipud:
            img, boxes[:, [2, 4]] = img[:, ::-1], s - boxes[:, [4, 2]]
        return self._sample(i, img, boxes, None)

    def _warped(self, i: int, rng: np.random.Generator, mosaic: bool):
        """Mosaic (or the letterboxed image), then YOLOv8's random affine: scale + translate."""
        s, hyp = self.imgsz, self.hyp
        if mosaic and rng.random() < hyp.mosaic:
            src, boxes = self._mosaic(i, rng)
            origin = np.array([-s, -s], np.float64)  # the canvas centre goes to the centre
        else:
            src = self.load_image(i)
            h, w = src.shape[:2]
            boxes = xyxy_pixels(self.labels[i], w, h)
            origin = np.array([(s - w) // 2 - s / 2, (s - h) // 2 - s / 2])  # letterbox pad
        scale = rng.uniform(1 - hyp.scale, 1 + hyp.scale)
        shift = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate, 2) * s
        return warp(src, boxes, scale, shift + scale * origin, s)

    def _mosaic(self, i: int, rng: np.random.Generator):
        """Four images around a random centre of a 2s x 2s grey canvas (YOLOv8 mosaic4)."""
        s = self.imgsz
        idx = [i, *rng.integers(0, len(self), 3).tolist()]
        xc, yc = (int(v) for v in rng.uniform(s / 2, 3 * s / 2, 2))
        canvas = np.full((2 * s, 2 * s, 3), 114, np.uint8)  # YOLO grey
        parts = []
        for k, j in enumerate(idx):  # 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
            img = self.load_image(j)
            h, w = img.shape[:2]
            left, top = k in (0, 2), k in (0, 1)
            x1a, x2a = (max(xc - w, 0), xc) if left else (xc, min(xc + w, 2 * s))
            y1a, y2a = (max(yc - h, 0), yc) if top else (yc, min(yc + h, 2 * s))
            x1b = w - (x2a - x1a) if left else 0
            y1b = h - (y2a - y1a) if top else 0
            canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + y2a - y1a, x1b:x1b + x2a - x1a]
            parts.append(xyxy_pixels(self.labels[j], w, h, x1a - x1b, y1a - y1b))
        boxes = np.concatenate(parts)
        boxes[:, 1:] = boxes[:, 1:].clip(0, 2 * s)
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 4] > boxes[:, 2])
        return canvas, boxes[keep]

    def _eval_sample(self, i: int) -> dict[str, Any]:
        img = self.load_image(i)
        h, w = img.shape[:2]
        out, _, pad = letterbox(img, self.imgsz)
        gain = self.imgsz / max(self.shapes[i])
        boxes = xyxy_pixels(self.labels[i], w, h, *pad)
        return self._sample(i, out, boxes, (gain, pad))

    def _sample(self, i: int, img: np.ndarray, boxes: np.ndarray, ratio_pad) -> dict[str, Any]:
        s = self.imgsz
        xywh = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 2] + boxes[:, 4]) / 2,
                         boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]], 1) / s
        return {"img": torch.from_numpy(np.ascontiguousarray(img)),
                "cls": torch.from_numpy(boxes[:, 0].astype(np.float32)),
                "bboxes": torch.from_numpy(xywh.clip(0, 1).astype(np.float32)),
                "im_id": self.files[i].stem, "path": str(self.files[i]),
                "ori_shape": self.shapes[i], "ratio_pad": ratio_pad}


class EpochSampler(Sampler):
    """Sample order from (seed, epoch) alone, sharded for DDP (padded so every rank gets the same
    count). Yields (index, epoch, mosaic) keys, read from the dataset when iteration starts, so
    workers (whose dataset copies are stale) still produce the right samples."""

    def __init__(self, dataset: YoloDataset, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise InvalidInput(f"rank {rank} / world_size {world_size} is not a valid shard")
        self.dataset, self.shuffle, self.seed = dataset, bool(shuffle), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_samples = math.ceil(len(dataset) / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            idx = np.random.default_rng([self.seed, int(epoch), _SAMPLER_STREAM]).permutation(n)
        else:
            idx = np.arange(n)
        idx = np.resize(idx, self.num_samples * self.world_size)  # pads by wrapping around
        return idx[self.rank::self.world_size]

    def __iter__(self):
        epoch, mosaic = self.dataset.epoch, self.dataset.mosaic
        return iter([(int(i), epoch, mosaic) for i in self.order(epoch)])

    def __len__(self) -> int:
        return self.num_samples


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> the batch format of the contract (targets: [batch_index, cls, cx, cy, w, h])."""
    targets = [torch.cat([torch.full((len(s["cls"]), 1), float(b)), s["cls"][:, None],
                          s["bboxes"]], 1) for b, s in enumerate(samples)]
    return {"img": torch.stack([s["img"] for s in samples]),
            "targets": torch.cat(targets) if targets else torch.zeros((0, 6)),
            "im_ids": [s["im_id"] for s in samples], "paths": [s["path"] for s in samples],
            "ori_shapes": [s["ori_shape"] for s in samples],
            "ratio_pad": [s["ratio_pad"] for s in samples]}


class _Loader(DataLoader):
    """A DataLoader that re-raises a worker's InvalidInput with its own one-line message (torch
    replaces it with 'Caught InvalidInput in DataLoader worker...' and a traceback)."""

    def __iter__(self):
        try:
            yield from super().__iter__()
        except InvalidInput as e:
            if not str(e).startswith("Caught InvalidInput"):
                raise
            last = str(e).rstrip().splitlines()[-1]  # the original "...InvalidInput: <message>"
            raise InvalidInput(last.split("InvalidInput: ", 1)[-1]) from None


def build_dataloader(dataset: YoloDataset, batch: int, workers: int = 0, shuffle: bool = False,
                     seed: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
    """DataLoader over an EpochSampler. Call dataset.set_epoch(e) (and close_mosaic()) before
    iterating an epoch. A private torch.Generator keeps the DataLoader from drawing its worker
    base seed from the global torch RNG (which the trainer's RNG state would then depend on)."""
    if batch < 1 or workers < 0:
        raise InvalidInput(f"batch must be >= 1 and workers >= 0, got {batch} and {workers}")
    sampler = EpochSampler(dataset, shuffle, seed, rank, world_size)
    return _Loader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                   collate_fn=collate, pin_memory=torch.cuda.is_available(),
                   persistent_workers=workers > 0,
                   generator=torch.Generator().manual_seed(int(seed)))
