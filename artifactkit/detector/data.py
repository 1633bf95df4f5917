"""YOLO-format training data: a split's images and boxes (read by artifactkit.yolo, the one
reader of the format), augmentation, a deterministic sampler, batches.

Determinism is the design constraint: bit-exact resume needs every sample to be a pure function
of (seed, epoch, index). So __getitem__ draws from a numpy Generator seeded from that triple and
never from the global random/numpy/torch RNGs, and the sampler hands the epoch and the mosaic flag
to the workers inside each index (persistent workers hold stale copies of the dataset).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from artifactkit.detector.augment import (
    colour_matrix,
    hide_parts,
    letterbox,
    recolour,
    resize_chw,
    soften,
    warp,
    with_contrast,
    xyxy_pixels,
)
from artifactkit.detector.config import AUTO_WORKERS, MIN_BATCHES_FOR_WORKERS, AugmentConfig
from artifactkit.errors import InvalidInput
from artifactkit.yolo import (
    DatasetSpec,
    Split,
    check_labelled,
    exif_orientation,
    image_shape,
    list_images,
    open_image,
    read_labels,
    require_images,
)

__all__ = ["AugmentConfig", "EpochSampler", "YoloDataset", "build_dataloader", "collate", "letterbox", "load_split"]

logger = logging.getLogger(__name__)
_SAMPLE_STREAM, _SAMPLER_STREAM = 1, 2  # keep sample and order RNG streams apart
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError)


def _folder_split(folder: Path) -> Split:
    if not folder.is_dir():
        raise InvalidInput(f"image folder {folder} does not exist")
    return Split(folder.name, (folder,), tuple(list_images(folder)))


def _decode(path: Path, shape: tuple[int, int], imgsz: int) -> np.ndarray:
    """Decode to RGB with the long side resized to imgsz."""
    r = imgsz / max(shape)
    try:
        with open_image(path) as im:
            if r < 0.5 and im.format == "JPEG":  # let libjpeg decode at reduced size: far cheaper
                im.draft("RGB", (math.ceil(im.width * r), math.ceil(im.height * r)))
            if exif_orientation(im) > 1:
                im = ImageOps.exif_transpose(im)
            # Read-only view of PIL's buffer, no copy: decoded images are never written to.
            arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except _IMAGE_ERRORS as e:
        raise InvalidInput(f"cannot read image {path}: {e}") from None
    h, w = max(1, round(shape[0] * r)), max(1, round(shape[1] * r))
    if arr.shape[:2] == (h, w):
        return arr
    return np.ascontiguousarray(resize_chw(arr, h, w).transpose(1, 2, 0))


def load_split(data: DatasetSpec, split: str, **kwargs) -> YoloDataset:
    """The YoloDataset of one split of a data.yaml, its labels checked: a warning when some images
    have no box, InvalidInput when none has (the labels are not where they are looked for)."""
    dataset = YoloDataset(data.split(split), data.names, **kwargs)
    warning = check_labelled(split, dataset.split.labels, [len(b) for b in dataset.labels])
    if warning:
        logger.warning("%s: they train as background images", warning)
    return dataset


class YoloDataset(Dataset):
    """One split (or image folder) with its YOLO labels. A sample is a pure function of
    (seed, epoch, index).

    Indices may be plain ints (the dataset's own epoch and mosaic flag apply) or the
    (index, epoch, mosaic) keys that EpochSampler yields.
    """

    def __init__(
        self,
        source: Split | str | os.PathLike,
        names,
        imgsz: int = 640,
        augment: bool = False,
        hyp: AugmentConfig | None = None,
        seed: int = 0,
        cache: bool = False,
    ):
        self.split = source if isinstance(source, Split) else _folder_split(Path(source))
        self.names = list(names)
        self.imgsz = int(imgsz)
        self.augment = bool(augment)
        self.hyp = hyp or AugmentConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.mosaic = self.augment and self.hyp.mosaic > 0
        require_images(self.split)
        self.files = list(self.split.images)
        self.labels = [np.array(read_labels(p, len(self.names)), np.float32).reshape(-1, 5) for p in self.split.labels]
        self.shapes = [image_shape(f) for f in self.files]
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
        # contrast, blur and erase draw from rng only when on: runs without them keep their stream.
        if hyp.hsv_h or hyp.hsv_s or hyp.hsv_v or hyp.contrast:
            matrix, offset = colour_matrix(rng, (hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)), 0.0
            if hyp.contrast:
                matrix, offset = with_contrast(matrix, rng, hyp.contrast)
            img = recolour(img, matrix, offset)
        if hyp.blur and rng.random() < hyp.blur:
            img = soften(img, float(rng.uniform(0.35, 0.8)))
        if hyp.erase and rng.random() < hyp.erase:
            img = hide_parts(img, boxes, rng)
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
            canvas[y1a:y2a, x1a:x2a] = img[y1b : y1b + y2a - y1a, x1b : x1b + x2a - x1a]
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
        xywh = (
            np.stack(
                [
                    (boxes[:, 1] + boxes[:, 3]) / 2,
                    (boxes[:, 2] + boxes[:, 4]) / 2,
                    boxes[:, 3] - boxes[:, 1],
                    boxes[:, 4] - boxes[:, 2],
                ],
                1,
            )
            / s
        )
        return {
            "img": torch.from_numpy(np.ascontiguousarray(img)),
            "cls": torch.from_numpy(boxes[:, 0].astype(np.float32)),
            "bboxes": torch.from_numpy(xywh.clip(0, 1).astype(np.float32)),
            "im_id": self.files[i].stem,
            "path": str(self.files[i]),
            "ori_shape": self.shapes[i],
            "ratio_pad": ratio_pad,
        }


class EpochSampler(Sampler):
    """Sample order from (seed, epoch) alone, sharded for DDP (padded so every rank gets the same
    count), from sample `start` on (0 but in a resumed epoch). Yields (index, epoch, mosaic) keys,
    read from the dataset when iteration starts, so workers (whose dataset copies are stale) still
    produce the right samples."""

    def __init__(self, dataset: YoloDataset, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise InvalidInput(f"rank {rank} / world_size {world_size} is not a valid shard")
        self.dataset, self.shuffle, self.seed = dataset, bool(shuffle), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_samples = math.ceil(len(dataset) / world_size)
        self.start = 0  # samples of this epoch to skip: a run resumed inside an epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            idx = np.random.default_rng([self.seed, int(epoch), _SAMPLER_STREAM]).permutation(n)
        else:
            idx = np.arange(n)
        idx = np.resize(idx, self.num_samples * self.world_size)  # pads by wrapping around
        return idx[self.rank :: self.world_size]

    def __iter__(self):
        epoch, mosaic = self.dataset.epoch, self.dataset.mosaic
        return iter([(int(i), epoch, mosaic) for i in self.order(epoch)[self.start :]])

    def __len__(self) -> int:
        return self.num_samples - self.start


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> the batch format of the contract (targets: [batch_index, cls, cx, cy, w, h])."""
    targets = [
        torch.cat([torch.full((len(s["cls"]), 1), float(b)), s["cls"][:, None], s["bboxes"]], 1)
        for b, s in enumerate(samples)
    ]
    return {
        "img": torch.stack([s["img"] for s in samples]),
        "targets": torch.cat(targets) if targets else torch.zeros((0, 6)),
        "im_ids": [s["im_id"] for s in samples],
        "paths": [s["path"] for s in samples],
        "ori_shapes": [s["ori_shape"] for s in samples],
        "ratio_pad": [s["ratio_pad"] for s in samples],
    }


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


def effective_workers(requested: int | None, images: int, batch: int) -> tuple[int, str]:
    """(worker processes a loader runs, why). None (the default): AUTO_WORKERS, but none for an
    epoch of under MIN_BATCHES_FOR_WORKERS batches; a number is taken as given. Never more than
    the CPU cores (Ultralytics' cap). Workers persist, so they start once per loader per run."""
    if requested is None:
        batches = math.ceil(images / max(1, batch))
        if batches < MIN_BATCHES_FOR_WORKERS:
            return 0, (
                f"{batches} batches an epoch, under {MIN_BATCHES_FOR_WORKERS}: start-up would cost more than it saves"
            )
        requested, why = AUTO_WORKERS, "the default"
    else:
        why = "as set"
    cores = os.cpu_count() or 1
    if requested > cores:
        return cores, f"{cores} CPU cores"
    return requested, why


def build_dataloader(
    dataset: YoloDataset,
    batch: int,
    workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """DataLoader over an EpochSampler. Call dataset.set_epoch(e) (and close_mosaic()) before
    iterating an epoch. A private torch.Generator keeps the DataLoader from drawing its worker
    base seed from the global torch RNG (which the trainer's RNG state would then depend on)."""
    if batch < 1 or workers < 0:
        raise InvalidInput(f"batch must be >= 1 and workers >= 0, got {batch} and {workers}")
    sampler = EpochSampler(dataset, shuffle, seed, rank, world_size)
    return _Loader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(int(seed)),
    )
