"""`predict` (artifactkit.predict from Python): run a trained model over images, folders or
globs, in batches; write the boxes as COCO-style JSON (the format `val --preds` scores) and, if
asked, copies of the images with the boxes drawn.

Each image is decoded with its EXIF rotation and the long side resized to the model's size,
letterboxed as validation does, and the batch goes through validation's forward pass and NMS
(detector.validation.detect); boxes come back in the original image's pixels.
"""

from __future__ import annotations

import glob
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .errors import InvalidInput, NotFound
from .fileio import atomic_path

CONF, IOU, MAX_DET, BATCH = 0.25, 0.7, 300, 16  # Ultralytics' predict defaults
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Box:
    x1: float  # original image pixels
    y1: float
    x2: float
    y2: float
    confidence: float
    class_id: int
    name: str
    category_id: int | None = None  # the COCO file's id of the class (weights trained on a --format coco dataset)


@dataclass(frozen=True)
class ImagePrediction:
    path: str
    image_id: str | int  # the file stem, as in `val --preds` files; the COCO file's id when known (coco_ids)
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)


def predict(
    weights: str | os.PathLike,
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    conf: float = CONF,
    iou: float = IOU,
    imgsz: int | None = None,
    device: str = "auto",
    batch: int = BATCH,
    max_det: int = MAX_DET,
    store: str | None = None,
    storage_options: dict | None = None,
    loaded_from: Callable[[str], None] | None = None,
) -> list[ImagePrediction]:
    """Boxes for every image in `sources` (image files, folders of images, globs) from `weights`
    (a run URI: its best checkpoint; a run id or NAME:VERSION of a checkpoint in `store`, or an
    exported .safetensors / .pt: refs.WEIGHTS). `imgsz` defaults to the size the model was trained at. Weights from a
    store, trained on a dataset logged with --format coco, give the COCO file's ids (coco_ids).
    `loaded_from` hears which weights were loaded (e.g. "<store>: r-model:v3 (best)")."""
    from .weights import check_imgsz, load_model

    if not 0 <= conf <= 1 or not 0 <= iou <= 1:
        raise InvalidInput(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
    if batch < 1 or max_det < 1:
        raise InvalidInput(f"batch and max_det must be at least 1, got batch={batch}, max_det={max_det}")
    if imgsz is not None:
        check_imgsz(imgsz, "--imgsz")
    paths = image_paths([sources] if isinstance(sources, (str, os.PathLike)) else sources)
    loaded = load_model(weights, store=store, storage_options=storage_options, device=device)
    if loaded_from is not None:
        loaded_from(loaded.shown)
    size = imgsz or loaded.imgsz
    device_of = next(loaded.model.parameters()).device
    predictions = list(_run(loaded.model, loaded.names, paths, size, device_of, batch, (conf, iou, max_det)))
    return coco_ids(predictions, loaded.origin, storage_options)


def coco_ids(
    predictions: list[ImagePrediction], origin: dict[str, str], storage_options: dict | None
) -> list[ImagePrediction]:
    """Predictions with the ids of the COCO file the weights' training dataset was converted from
    (category ids always; an image's id when the file lists its file name once), so pycocotools
    scores them against that file. Unchanged for weights from a file or a dataset not from COCO."""
    from dataclasses import replace

    from .coco import stored_ids
    from .store import open_store

    if "store" not in origin:
        return predictions
    store = open_store(origin["store"], storage_options)
    dataset = store.resolve(origin["version"]).metadata.get("dataset")
    if not isinstance(dataset, str):
        return predictions
    ids = stored_ids(store, dataset, {Path(p.path).name for p in predictions})
    if ids is None:
        return predictions
    if any(b.class_id >= len(ids.categories) for p in predictions for b in p.boxes):
        raise InvalidInput(
            f"{origin['store']}: {dataset} lists {len(ids.categories)} COCO categories, fewer than the model's classes"
        )
    out = []
    for p in predictions:
        image_id = ids.image_id(Path(p.path).name)
        out.append(
            replace(
                p,
                image_id=p.image_id if image_id is None else image_id,
                boxes=[replace(b, category_id=ids.categories[b.class_id]) for b in p.boxes],
            )
        )
    return out


def _run(
    model, names: list[str], paths: list[Path], size: int, device, batch: int, nms: tuple
) -> Iterator[ImagePrediction]:
    import torch

    from .detector.ops import scale_boxes
    from .detector.validation import detect

    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    for chunk, samples in zip(chunks, _prefetched(chunks, size)):
        images = torch.stack([torch.from_numpy(s[0]) for s in samples])
        for path, (_, ratio_pad, shape), det in zip(chunk, samples, detect(model, images, device, *nms)):
            det[:, :4] = scale_boxes(det[:, :4], ratio_pad, shape)
            boxes = [Box(x1, y1, x2, y2, c, int(k), names[int(k)]) for x1, y1, x2, y2, c, k in det.tolist()]
            yield ImagePrediction(str(path), path.stem, shape[1], shape[0], boxes)


def _prefetched(chunks: list[list[Path]], size: int) -> Iterator[list[tuple[Any, Any, tuple[int, int]]]]:
    """Letterboxed images of each chunk, decoded in threads one chunk ahead of the model (PIL and
    the resize release the GIL), so decoding overlaps the forward pass."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pending = [pool.submit(_letterboxed, p, size) for p in chunks[0]] if chunks else []
        for i in range(len(chunks)):
            current = [f.result() for f in pending]
            pending = [pool.submit(_letterboxed, p, size) for p in chunks[i + 1]] if i + 1 < len(chunks) else []
            yield current


def _letterboxed(path: Path, size: int):
    """(3 x size x size uint8, (gain, pad), (h, w) of the original) as validation prepares an image."""
    from .detector.augment import letterbox
    from .detector.data import _decode
    from .yolo import image_shape

    shape = image_shape(path)
    out, _, pad = letterbox(_decode(path, shape, size), size)
    return out, (size / max(shape), pad), shape


def image_paths(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named by each source (a file, a folder's images, or a glob), in order; two
    images with one stem are refused, since the stem is their id in the JSON."""
    from .yolo import IMAGE_EXTS as IMG_EXTS

    paths: list[Path] = []
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMG_EXTS and p.is_file())
        elif path.is_file():
            if path.suffix.lower() not in IMG_EXTS:
                raise InvalidInput(f"{text}: not an image ({', '.join(sorted(IMG_EXTS))})")
            found = [path]
        elif _GLOB_CHARS & set(text):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).suffix.lower() in IMG_EXTS]
        else:
            raise NotFound(f"{text}: no such image, folder or glob")
        if not found:
            raise InvalidInput(f"{text}: no images ({', '.join(sorted(IMG_EXTS))})")
        paths.extend(found)
    if not paths:
        raise InvalidInput("no image sources given")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen and seen[p.stem].resolve() != p.resolve():
            raise InvalidInput(f"{seen[p.stem]} and {p} share the image id {p.stem!r}: predict them separately")
        seen[p.stem] = p
    return list({p.resolve(): p for p in paths}.values())  # each file once, first mention first


def write_json(predictions: Iterable[ImagePrediction], out: str | os.PathLike) -> int:
    """Write COCO result records ({image_id, category_id, bbox [x, y, w, h], score}), the format
    `val --preds` scores (in the COCO file's ids where predict found them); returns how many."""
    import torch

    from .detector.metrics import coco_records, write_coco_json

    records = []
    for p in predictions:
        rows = torch.tensor(
            [
                [b.x1, b.y1, b.x2, b.y2, b.confidence, b.class_id if b.category_id is None else b.category_id]
                for b in p.boxes
            ],
            dtype=torch.float64,
        )
        records.extend(coco_records(p.image_id, rows))
    write_coco_json(out, records)
    return len(records)


def save_images(predictions: Iterable[ImagePrediction], folder: str | os.PathLike) -> list[Path]:
    """Copies of the images with boxes, class names and confidences drawn, one per prediction,
    under their own file names in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for prediction in predictions:
        written.append(_draw(prediction, folder / Path(prediction.path).name))
    return written


def _draw(prediction: ImagePrediction, out: Path) -> Path:
    from PIL import Image, ImageDraw, ImageOps

    from .yolo import open_image

    with open_image(prediction.path) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")  # the orientation the boxes are in
    draw = ImageDraw.Draw(image)
    width = max(1, round(max(image.size) / 320))
    for box in prediction.boxes:
        colour = _colour(box.class_id)
        draw.rectangle((box.x1, box.y1, box.x2, box.y2), outline=colour, width=width)
        label = f"{box.name} {box.confidence:.2f}"
        left, top, right, bottom = draw.textbbox((box.x1, box.y1), label)
        lift = min(bottom - top + 2, box.y1)  # above the box, or inside it at the image's top edge
        draw.rectangle((left, top - lift, right + 2, bottom - lift), fill=colour)
        draw.text((box.x1 + 1, box.y1 - lift), label, fill="white")
    image_format = Image.registered_extensions().get(out.suffix.lower(), "PNG")
    with atomic_path(out) as tmp:
        image.save(tmp, format=image_format)
    return out


_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (128, 128, 0),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
)


def _colour(class_id: int) -> tuple[int, int, int]:
    return _PALETTE[class_id % len(_PALETTE)]
