"""Images for the report: each blob embedded once, however many epochs, runs or dataset groups
show it, as a small base64 JPEG. The few images the bounding-box debugger shows large get a
second, bigger rendition; everything else is a thumbnail, which keeps 500 images x 20 epochs
to a few MB (boxes are data drawn over the pictures, never burnt into one image per epoch)."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import ArtifactkitError, missing_extra
from ..layout import object_key
from ..store import Store
from ..yolo import open_image

THUMB_PX = 192  # long side of every thumbnail: sharp enough for a 160-200 px cell
LARGE_PX = 416  # long side of debugger images (the chess images' own size)
QUALITY = 70
KEEP_ORIGINAL_BYTES = 60_000  # a JPEG this small and no larger than LARGE_PX is embedded as is


@dataclass
class Embedded:
    sizes: dict[str, list[int]]  # key -> [width, height] of the original image
    small: dict[str, str]  # key -> data URI
    large: dict[str, str]
    problems: list[str]  # images that could not be read, each naming its store key

    @property
    def encoded_bytes(self) -> int:
        return sum(len(v) for v in self.small.values()) + sum(len(v) for v in self.large.values())


@dataclass
class ImageBank:
    """Collects which blobs the report shows (and how big), then reads and shrinks them together."""

    small: dict[str, Store] = field(default_factory=dict)  # digest -> the store holding it
    large: set[str] = field(default_factory=set)

    def want(self, store: Store, digest: str | None, large: bool = False) -> str | None:
        if not digest:
            return None
        self.small.setdefault(digest, store)
        if large:
            self.large.add(digest)
        return digest

    def build(self, workers: int = 4) -> Embedded:
        _pil()  # fail early, with the extra to install, before reading any blob
        out = Embedded({}, {}, {}, [])
        # PIL and the backends release the GIL while decoding and reading: threads suffice.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for digest, result in zip(self.small, pool.map(self._one, self.small)):
                if isinstance(result, str):
                    out.problems.append(result)
                    continue
                size, small, large = result
                out.sizes[digest] = size
                out.small[digest] = small
                if large is not None:
                    out.large[digest] = large
        return out

    def _one(self, digest: str):
        store = self.small[digest]
        where = f"{store.uri}/{object_key(digest)}"
        try:
            data = store.read_blob(digest)
        except ArtifactkitError as e:  # a dataset still uploading, or a corrupt blob: show a gap, say why
            return f"{where}: {e}"
        try:
            return shrink(data, digest in self.large)
        except (OSError, ValueError, _pil().DecompressionBombError) as e:  # PIL's: bytes it cannot or will not decode
            return f"{where}: not a readable image ({e})"


def shrink(data: bytes, large: bool) -> tuple[list[int], str, str | None]:
    """([w, h] of the original, thumbnail data URI, large data URI or None)."""
    _pil()  # PIL is an extra: say which to install
    with open_image(io.BytesIO(data)) as im:
        size = [im.width, im.height]
        fmt = im.format
        big = None
        if large:
            small_enough = max(size) <= LARGE_PX and len(data) <= KEEP_ORIGINAL_BYTES
            big = _uri(data, fmt) if small_enough and fmt in ("JPEG", "PNG") else _encode(im, LARGE_PX)
        im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at 1/2, 1/4… scale: much faster
        return size, _encode(im, THUMB_PX), big


def _encode(im, px: int) -> str:
    Image = _pil()
    copy = im.convert("RGB")
    copy.thumbnail((px, px), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    copy.save(buf, "JPEG", quality=QUALITY, optimize=True)
    return _uri(buf.getvalue(), "JPEG")


def _uri(data: bytes, fmt: str) -> str:
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow (for report thumbnails)", "train") from None
    return Image
