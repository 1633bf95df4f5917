"""Augmentation primitives: HxWx3 uint8 numpy images in (as decoded), 3xHxW out (as batched),
boxes as [cls, x1, y1, x2, y2] pixels.

Everything here is deterministic given its arguments (randomness is drawn by the caller) and
byte-identical across threads and processes, which bit-exact resume relies on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

FILL = 114  # grey of padding, as YOLOv5/v8
_REC709 = np.array([0.2126, 0.7152, 0.0722])


def resize_chw(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Antialiased bilinear resize, HxWx3 uint8 in, 3xHxW uint8 out.

    torch's vectorised uint8 kernel is several times faster than PIL's, but only for a
    channels-last input, and it writes channels-first. Each output pixel is computed alone, so
    the bytes do not depend on the thread count.
    """
    if img.shape[:2] == (h, w):
        return np.ascontiguousarray(img.transpose(2, 0, 1))
    img = np.ascontiguousarray(img)
    if not img.flags.writeable:  # torch.from_numpy warns on read-only arrays
        img = img.copy()
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0].contiguous().numpy()


def letterbox(img: np.ndarray, imgsz: int):
    """Fit an HxWx3 image into an imgsz square (long side = imgsz, centred, grey padding).

    Returns (out, gain, (pad_w, pad_h)): out is 3 x imgsz x imgsz uint8 (channels first, as the
    batches), and letterboxed = original * gain + pad.
    """
    h0, w0 = img.shape[:2]
    gain = imgsz / max(h0, w0)
    h, w = min(imgsz, max(1, round(h0 * gain))), min(imgsz, max(1, round(w0 * gain)))
    pad_w, pad_h = (imgsz - w) // 2, (imgsz - h) // 2
    out = np.full((3, imgsz, imgsz), FILL, np.uint8)
    out[:, pad_h : pad_h + h, pad_w : pad_w + w] = resize_chw(img, h, w)
    return out, gain, (float(pad_w), float(pad_h))


def warp(src: np.ndarray, boxes: np.ndarray, scale: float, off, out: int):
    """Place an HxWx3 src in a 3 x out x out grey canvas at x' = x * scale + off (a scale +
    translate affine). Returns the canvas and the boxes moved, clipped and filtered.

    Only the source window that lands inside the canvas is resized. The window and its size are
    rounded to whole pixels and the boxes follow the rounded mapping exactly.
    """
    canvas = np.full((3, out, out), FILL, np.uint8)
    h, w = src.shape[:2]
    x0, y0 = max(0, math.floor(-off[0] / scale)), max(0, math.floor(-off[1] / scale))
    x1, y1 = min(w, math.ceil((out - off[0]) / scale)), min(h, math.ceil((out - off[1]) / scale))
    if x1 <= x0 or y1 <= y0:
        return canvas, boxes[:0]
    dw, dh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    ex, ey = dw / (x1 - x0), dh / (y1 - y0)
    px, py = round(x0 * scale + off[0]), round(y0 * scale + off[1])
    patch = resize_chw(src[y0:y1, x0:x1], dh, dw)
    cx0, cy0 = max(0, -px), max(0, -py)
    cx1, cy1 = min(dw, out - px), min(dh, out - py)
    if cx1 > cx0 and cy1 > cy0:
        canvas[:, py + cy0 : py + cy1, px + cx0 : px + cx1] = patch[:, cy0:cy1, cx0:cx1]
    moved = boxes.copy()
    moved[:, [1, 3]] = (boxes[:, [1, 3]] - x0) * ex + px
    moved[:, [2, 4]] = (boxes[:, [2, 4]] - y0) * ey + py
    return canvas, keep_boxes(moved, out)


def keep_boxes(boxes: np.ndarray, size: int) -> np.ndarray:
    """Clip [cls, x1, y1, x2, y2] boxes to the image; drop those left tiny, thin or mostly cut
    away (YOLOv8's box_candidates: > 2 px a side, > 10% of the area kept, aspect ratio < 100)."""
    before = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
    clipped = boxes.copy()
    clipped[:, 1:] = clipped[:, 1:].clip(0, size)
    w, h = clipped[:, 3] - clipped[:, 1], clipped[:, 4] - clipped[:, 2]
    ar = np.maximum(w / (h + 1e-16), h / (w + 1e-16))
    keep = (w > 2) & (h > 2) & (w * h / (before + 1e-16) > 0.1) & (ar < 100)
    return clipped[keep]


def colour_matrix(rng: np.random.Generator, gains: tuple[float, float, float]) -> np.ndarray:
    """HSV-style jitter as one 3x3 RGB matrix: hue rotation about the grey axis, saturation
    scaled about Rec.709 luma, value scaled. Same gains as YOLOv8's HSV LUTs, a fraction of the
    cost of an HSV round trip (no per-pixel colour-space conversion)."""
    rh, rs, rv = rng.uniform(-1, 1, 3) * np.asarray(gains) + 1
    theta = (rh - 1) * 2 * math.pi
    luma = np.tile(_REC709, (3, 1))
    eye = np.eye(3)
    cos, sin = math.cos(theta), math.sin(theta)
    rot = (
        luma
        + cos * (eye - luma)
        + sin * np.array([[-0.2126, -0.7152, 0.9278], [0.143, 0.140, -0.283], [-0.7874, 0.7152, 0.0722]])
    )
    sat = luma + rs * (eye - luma)
    return (rv * rot @ sat).astype(np.float32)


def with_contrast(matrix: np.ndarray, rng: np.random.Generator, gain: float) -> tuple[np.ndarray, float]:
    """A colour matrix followed by contrast jitter about mid-grey, as (matrix, offset) for one
    recolour pass: x' = c * (M x) + (1 - c) * 128, c drawn from [1 - gain, 1 + gain]. Low contrast
    turns black pieces grey and white ones dim, as another piece set, print or camera does; which
    side is brighter (part of the label: white vs black pieces) never changes."""
    c = float(rng.uniform(1 - gain, 1 + gain))
    return (matrix * c).astype(np.float32), (1 - c) * 128.0


def recolour(chw: np.ndarray, matrix: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Apply a 3x3 colour matrix (plus a grey offset) to a 3xHxW uint8 image. Plain element-wise
    numpy float32 ops, no BLAS, so the bytes do not depend on threads or process."""
    x = chw.astype(np.float32)
    out = np.empty(chw.shape, np.uint8)
    for c in range(3):
        y = matrix[c, 0] * x[0]
        y += matrix[c, 1] * x[1]
        y += matrix[c, 2] * x[2]
        y += 0.5 + offset
        np.clip(y, 0, 255, out=y)
        out[c] = y
    return out


def hide_parts(chw: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random erasing aimed at objects: each box, with probability 1/2, gets one rectangle of
    20-50 % of its width and height filled with a random flat colour at a random place inside it.
    A detector that sees pieces with a part hidden cannot lean on one detail of one drawing (a
    crown, a mane); it has to use the whole shape, which is what carries over to a piece set it
    never saw. At most a quarter of an object's area goes, so every label stays true; boxes are
    unchanged. The same draws are made for every box whatever they decide."""
    out = chw.copy()
    _, h, w = chw.shape
    n = len(boxes)
    chosen = rng.random(n) < 0.5
    frac = rng.uniform(0.2, 0.5, (n, 2))
    where = rng.random((n, 2))
    colour = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    for k in np.flatnonzero(chosen):
        x0, y0, x1, y1 = boxes[k, 1:5]
        pw, ph = (x1 - x0) * frac[k, 0], (y1 - y0) * frac[k, 1]
        px, py = x0 + (x1 - x0 - pw) * where[k, 0], y0 + (y1 - y0 - ph) * where[k, 1]
        c0, c1 = max(0, round(px)), min(w, round(px + pw))
        r0, r1 = max(0, round(py)), min(h, round(py + ph))
        if c1 > c0 and r1 > r0:
            out[:, r0:r1, c0:c1] = colour[k][:, None, None]
    return out


def soften(chw: np.ndarray, factor: float) -> np.ndarray:
    """Blur a 3xHxW uint8 image by resizing it down to `factor` of its side and back up: the
    loss of fine detail of a low-resolution capture or a coarser piece drawing, at the cost of two
    resizes (cheaper than a Gaussian kernel on CPU). Each output pixel is computed alone."""
    _, h, w = chw.shape
    t = torch.from_numpy(np.ascontiguousarray(chw))[None]
    small = F.interpolate(
        t,
        size=(max(1, round(h * factor)), max(1, round(w * factor))),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()


def xyxy_pixels(labels: np.ndarray, w: int, h: int, padw: float = 0, padh: float = 0) -> np.ndarray:
    """[cls, cx, cy, w, h] normalised -> [cls, x1, y1, x2, y2] pixels of a w x h image + pad."""
    out = np.empty_like(labels)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (labels[:, 1] - labels[:, 3] / 2) * w + padw
    out[:, 2] = (labels[:, 2] - labels[:, 4] / 2) * h + padh
    out[:, 3] = (labels[:, 1] + labels[:, 3] / 2) * w + padw
    out[:, 4] = (labels[:, 2] + labels[:, 4] / 2) * h + padh
    return out
