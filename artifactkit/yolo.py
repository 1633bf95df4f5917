"""The YOLO dataset format, read once for every consumer (trainer, scoring, viewer, W&B tables).

One policy everywhere: a label row is `class cx cy w h` (normalised) or a polygon
`class x1 y1 x2 y2 x3 y3 …` (a segmentation label) whose bounding box is taken, as Ultralytics
does for detection; anything else, a class id outside 0..nc-1 or a value outside [0, 1] is an
InvalidInput naming `file:line`. A missing label file is a background image.

data.yaml is resolved as Ultralytics' `check_det_dataset` resolves it (see load_data_config).
Torch-free and numpy-free: the viewer and the W&B tables import it; yaml and PIL load lazily.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import InvalidInput
from .names import is_split_name, is_within
from .nesting import MAX_DEPTH, check_depth, too_deep

__all__ = [
    "IMAGE_EXTS",
    "DatasetSpec",
    "Split",
    "check_labelled",
    "check_split_labels",
    "exif_orientation",
    "image_shape",
    "is_image",
    "label_path",
    "list_images",
    "load_data_config",
    "parse_labels",
    "layout_yaml",
    "open_image",
    "parse_names",
    "parse_yaml",
    "read_labels",
    "require_images",
    "version_layout",
]

IMAGE_EXTS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLIT_KEYS = ("train", "val", "test")  # read first; train and val must resolve, other keys may name extra splits
_NOT_SPLITS = {"path", "names", "nc", "download", "yaml_file", "channels", "roboflow"}
MAX_CLASSES = 100_000  # `nc` without `names` (LVIS has 1,203 classes, ImageNet-21k 21,841)
Box = tuple  # (class id: int, cx, cy, w, h) with the four values normalised to [0, 1]


def is_image(path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTS)


def label_path(image_path):
    """images/<...>/x.jpg -> labels/<...>/x.txt: the last `/images/` becomes `/labels/` (as
    Ultralytics' img2label_paths does). A str stays a str (POSIX, e.g. a path in a version), a
    Path stays a Path."""
    s = Path(image_path).as_posix() if isinstance(image_path, Path) else str(image_path)
    head, sep, tail = ("/" + s).rpartition("/images/")
    swapped = (head + "/labels/" + tail) if sep else "/" + s
    stem, dot, ext = swapped[1:].rpartition(".")
    out = (stem if dot and "/" not in ext else swapped[1:]) + ".txt"
    return Path(out) if isinstance(image_path, Path) else out


# -- label files ------------------------------------------------------------------------------
def parse_labels(data: str | bytes, where: str, nc: int | None = None) -> list[Box]:
    """The boxes of one label file's text; `where` names the file in errors (`where:line: …`)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")  # tolerate a BOM from Windows editors
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: not a UTF-8 text label file") from None
    data = data.lstrip("\ufeff")
    return [box for n, line in enumerate(data.splitlines(), 1) if (box := _parse_row(line, f"{where}:{n}", nc))]


def _parse_row(line: str, at: str, nc: int | None) -> Box | None:
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        raise InvalidInput(
            f"{at}: expected 5 columns 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got {len(fields)}"
        )
    try:
        cls, values = float(fields[0]), [float(v) for v in fields[1:]]
    except ValueError:
        raise InvalidInput(f"{at}: non-numeric value in {line.strip()[:80]!r}") from None
    if not (0 <= cls < (nc if nc is not None else float("inf")) and cls == int(cls)):  # rejects nan, inf
        wanted = f"0..{nc - 1}" if nc is not None else "0, 1, 2, ..."
        raise InvalidInput(f"{at}: class id {fields[0]} not in {wanted}")
    if not all(0.0 <= v <= 1.0 for v in values):  # also rejects nan
        raise InvalidInput(f"{at}: box values must be normalised to [0, 1]")
    if len(values) == 4:
        cx, cy, w, h = values
    else:  # a polygon: its bounding box, as Ultralytics' segments2boxes
        xs, ys = values[0::2], values[1::2]
        cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
    if w <= 0 or h <= 0:
        raise InvalidInput(f"{at}: box width and height must be > 0")
    return (int(cls), cx, cy, w, h)


def read_labels(path: Path, nc: int | None = None) -> list[Box]:
    """The boxes of one label file; a missing file is a background image (no boxes)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InvalidInput(f"cannot read label file {path}: {e.strerror or e}") from None
    return parse_labels(data, str(path), nc)


def check_labelled(split: str, label_files: Sequence, boxes_per_image: Sequence[int]) -> str | None:
    """None when every image has a box; a warning 'N of M <split> images have no labels' when some
    have none (a background image is legitimate). A split with images but not one box raises,
    naming the split and the label folder searched (labels usually sit in the wrong place)."""
    total, empty = len(boxes_per_image), sum(1 for n in boxes_per_image if n == 0)
    if total and empty == total:
        searched = os.path.commonpath([os.path.dirname(str(p)) for p in label_files]) or "."
        raise InvalidInput(
            f"split '{split}': none of its {total} images has a label (searched {searched} for <image name>.txt)"
        )
    return f"{empty} of {total} {split} images have no labels" if empty else None


def require_images(split: Split) -> None:
    """A split that lists no image at all is refused, naming where it looked."""
    if not split.images:
        where = ", ".join(str(p) for p in split.sources)
        raise InvalidInput(f"split '{split.name}': no images ({', '.join(IMAGE_EXTS)}) in {where}")


def check_split_labels(split: Split, nc: int | None) -> str | None:
    """check_labelled for a split read from disk (every label file read and checked once)."""
    counts = [len(read_labels(label, nc)) for label in split.labels]
    return check_labelled(split.name, split.labels, counts)


# -- images -----------------------------------------------------------------------------------
def list_images(folder: Path) -> list[Path]:
    """Every image under `folder`, recursively and sorted (Ultralytics globs `**/*.*`); hidden
    files and folders are skipped, as glob skips them (macOS `._x.jpg` is no image). Symlinked
    folders are followed, each real folder listed once; a link to a folder that contains it is
    refused, as a plain-folder log refuses it (two such links were 2^40 paths: a hang)."""
    found, visited = [], set()
    stack = [(str(folder), os.path.realpath(folder))]
    while stack:
        top, real = stack.pop()
        if real in visited:
            continue
        visited.add(real)
        try:
            with os.scandir(top) as it:
                entries = list(it)
        except OSError:
            continue  # as os.walk: an unreadable folder lists nothing
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if not is_dir:
                if is_image(e.name):
                    found.append(e.path)
                continue
            target = os.path.realpath(e.path) if e.is_symlink() else os.path.join(real, e.name)
            if is_within(real, target):
                raise InvalidInput(f"{e.path}: symlink loop (points to a folder that contains it)")
            stack.append((e.path, target))
    return [Path(p) for p in sorted(found)]


def open_image(source):
    """PIL's Image.open, with an image of more pixels than PIL's MAX_IMAGE_PIXELS (89 megapixels)
    refused as a DecompressionBombError. PIL only warns between 1 and 2 times that, on stderr, and
    then decodes it (2.5 GB for 144 megapixels in predict): its warning is made an error in this
    process by a warnings filter (catch_warnings is not thread-safe, and images decode in threads),
    put back whenever something (a catch_warnings block ending) took it away."""
    import warnings

    from PIL import Image

    bomb = Image.DecompressionBombWarning
    if not any(f[0] == "error" and f[2] is bomb for f in warnings.filters):
        warnings.filterwarnings("error", category=bomb)
    try:
        return Image.open(source)
    except Image.DecompressionBombWarning as e:
        raise Image.DecompressionBombError(str(e)) from None


def exif_orientation(im) -> int:
    return int(im.getexif().get(0x0112, 1) or 1)


def image_shape(path: Path) -> tuple[int, int]:
    """(h, w) as displayed (EXIF rotation applied), read from the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(path) as im:
            w, h = im.size
            rotated = exif_orientation(im) in (5, 6, 7, 8)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise InvalidInput(f"cannot read image {path}: {e}") from None
    return (w, h) if rotated else (h, w)


# -- data.yaml --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """One split: the folders / .txt lists data.yaml names for it and the images they give."""

    name: str
    sources: tuple[Path, ...]
    images: tuple[Path, ...]

    @property
    def labels(self) -> tuple[Path, ...]:
        """The label file of each image (it may not exist: a background image)."""
        return tuple(label_path(p) for p in self.images)


@dataclass(frozen=True)
class DatasetSpec:
    """What a data.yaml describes, every path resolved."""

    yaml_path: Path
    root: Path
    names: list[str]
    splits: dict[str, Split]
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # the yaml's mapping as read
    warnings: tuple[str, ...] = field(default=(), compare=False)  # what was left out, for the user to hear

    @property
    def nc(self) -> int:
        return len(self.names)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise InvalidInput(f"split '{name}' is not in {self.yaml_path} (known: {', '.join(self.splits)})")
        return self.splits[name]

    def files(self) -> list[Path]:
        """Every file the dataset uses: data.yaml, image lists, images and existing label files."""
        out = {self.yaml_path: None}
        for split in self.splits.values():
            out.update((p, None) for p in split.sources if p.is_file())
            out.update((p, None) for p in split.images)
            out.update((p, None) for p in split.labels if p.is_file())
        return list(out)


def load_data_config(path_or_dir, root: Path | None = None) -> DatasetSpec:
    """Read a data.yaml (a folder means <folder>/data.yaml) as Ultralytics resolves it:
    - `path:` absent: the yaml's folder; absolute: itself; relative: to the yaml's folder, else to
      the working directory (Ultralytics' own base), else to Ultralytics' `datasets_dir` setting;
    - `train`/`val`/`test` (and `validation`, read as `val`): a folder (searched recursively), a
      list of folders, or a .txt list of images (`./x` relative to the list, other relative lines
      to `path`); a value `../x` that does not exist is read as `x` (Roboflow's export); a `test`
      folder that does not exist is left out with a warning (Roboflow writes the key without the
      split; Ultralytics needs only train and val);
    - other keys whose value resolves to folders or .txt lists are extra splits (`val-heldout`);
    - `names` a list or a {id: name} dict; `nc` optional, and must agree with `names`.
    `root`, when given, replaces `path:` (a stored version is its own dataset folder)."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / "data.yaml"
    doc = _read_yaml(path)
    if "val" not in doc and "validation" in doc:
        doc["val"] = doc.pop("validation")
    names = parse_names(doc, str(path))
    base = Path(root).resolve() if root is not None else _dataset_root(doc.get("path"), path)
    splits = {}
    for key in (*SPLIT_KEYS, *sorted(k for k in doc if isinstance(k, str) and k not in SPLIT_KEYS)):
        split = _split(key, doc.get(key), base, path)
        if split is not None:
            splits[key] = split
    for key in ("train", "val"):
        if key not in splits:
            raise InvalidInput(f"{path}: key '{key}' is missing")
    warnings = ()
    if "test" not in splits and doc.get("test") not in (None, "", []):
        first = doc["test"][0] if isinstance(doc["test"], list) else doc["test"]
        warnings = (
            f"{path}: key 'test': image folder or .txt list {_source(base, first)} does not exist; "
            "the test split is left out",
        )
    return DatasetSpec(path, base, names, splits, doc, warnings)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read data config {path}: {getattr(e, 'strerror', None) or e}") from None
    doc = parse_yaml(text, str(path))
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: expected a mapping with keys path/train/val/names")
    return doc


def parse_yaml(text: str | bytes, where: str):
    """A YAML document read as untrusted input (a data.yaml here or in a store): safe_load, any
    error or nesting deeper than MAX_DEPTH one InvalidInput naming `where`."""
    import yaml

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: not UTF-8 text") from None
    _check_brackets(text, where)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{where}{line}: malformed YAML: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise too_deep(where) from None
    return check_depth(doc, where)


def _check_brackets(text: str, where: str) -> None:
    """Flow-style nesting ([[[... or {{{...) deeper than MAX_DEPTH is refused before PyYAML scans
    it (it takes seconds to reach its RecursionError on 20,000 brackets). Brackets inside quoted
    strings count too: 64 unclosed ones in a name are no data.yaml either."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{where}: lists/objects nested more than {MAX_DEPTH} deep")


_BRACKETS = re.compile(r"[\[\]{}]")


def parse_names(doc: dict, where: str) -> list[str]:
    """Class names from a data.yaml mapping: `names` as a list or an {id: name} dict with ids
    0..n-1, or `nc` alone (names class_0, class_1, … as Ultralytics gives them)."""
    raw, nc = doc.get("names"), doc.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise InvalidInput(f"{where}: key 'nc' must be a positive integer, got {nc!r}")
    if raw is None and nc is not None:
        if nc > MAX_CLASSES:  # class_0 … class_N are made here: 10^12 of them was 17.8 GB and counting
            raise InvalidInput(f"{where}: key 'nc' is {nc}, more than {MAX_CLASSES} classes; give 'names'")
        return [f"class_{i}" for i in range(nc)]
    if isinstance(raw, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError):
            raise InvalidInput(f"{where}: key 'names' must map integers to names") from None
        if [k for k, _ in items] != list(range(len(items))):
            raise InvalidInput(f"{where}: key 'names' must use ids 0..{len(items) - 1}")
        names = [v for _, v in items]
    elif isinstance(raw, list) and all(isinstance(n, (str, int)) for n in raw):
        names = [str(n) for n in raw]
    else:
        raise InvalidInput(f"{where}: key 'names' missing or not a list/dict of class names")
    if not names:
        raise InvalidInput(f"{where}: key 'names' is empty")
    if nc is not None and nc != len(names):
        raise InvalidInput(f"{where}: key 'nc' is {nc!r} but 'names' lists {len(names)} classes")
    return names


def _dataset_root(value, yaml_path: Path) -> Path:
    if value is None or value == "":
        return yaml_path.parent.resolve()
    if not isinstance(value, str):
        raise InvalidInput(f"{yaml_path}: key 'path' must be a string, got {value!r}")
    given = Path(value).expanduser()
    if given.is_absolute():
        tries = [given]
    else:
        tries = [yaml_path.parent / given, Path.cwd() / given]
        if (datasets := _ultralytics_datasets_dir()) is not None:
            tries.append(datasets / given)
    for candidate in tries:
        if candidate.is_dir():
            return candidate.resolve()
    raise InvalidInput(
        f"{yaml_path}: key 'path': dataset folder {value} not found (tried {', '.join(str(t) for t in tries)})"
    )


def _ultralytics_datasets_dir() -> Path | None:
    """Ultralytics' `datasets_dir` setting, if this machine has its settings file."""
    home = Path.home()
    configs = [
        os.environ.get("YOLO_CONFIG_DIR"),
        home / ".config" / "Ultralytics",
        home / "Library" / "Application Support" / "Ultralytics",
    ]
    for folder in filter(None, configs):
        try:
            settings = json.loads((Path(folder) / "settings.json").read_text())
        except (OSError, ValueError, RecursionError):
            continue
        value = settings.get("datasets_dir") if isinstance(settings, dict) else None
        if isinstance(value, str) and value:
            return Path(value).expanduser()
    return None


def _split(key, value, root: Path, yaml_path: Path) -> Split | None:
    """The split a key names, or None for a key that names no split (download:, roboflow:, …)."""
    required = key in SPLIT_KEYS
    if not required and (key in _NOT_SPLITS or not is_split_name(str(key))):
        return None
    if value is None or value == "" or value == []:
        return None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        if required:
            raise InvalidInput(f"{yaml_path}: key '{key}' must be a folder, a list of folders or a .txt list")
        return None
    sources = [_source(root, v) for v in items]
    missing = [v for v, s in zip(items, sources) if not (s.is_dir() or (s.is_file() and s.suffix == ".txt"))]
    if missing:
        if key in ("train", "val"):  # a missing test split is load_data_config's warning
            raise InvalidInput(
                f"{yaml_path}: key '{key}': image folder or .txt list {_source(root, missing[0])} does not exist"
            )
        return None
    images = [img for s in sources for img in (list_images(s) if s.is_dir() else _read_list(s, root))]
    return Split(str(key), tuple(sources), tuple(dict.fromkeys(images)))


def _source(root: Path, value: str) -> Path:
    found = (root / value).resolve()
    if not found.exists() and value.startswith("../"):  # Roboflow writes ../train/images
        found = (root / value[3:]).resolve()
    return found


def _read_list(txt: Path, root: Path) -> list[Path]:
    """A .txt list of images, one a line: `./x` relative to the list's folder (Ultralytics),
    other relative paths to the dataset root; lines that are no image are skipped, as there."""
    try:
        lines = txt.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read image list {txt}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        item = line.strip()
        if not item or not is_image(item):
            continue
        base = txt.parent if item.startswith("./") else root
        image = Path(os.path.normpath(base / item))
        if not image.is_file():
            raise InvalidInput(f"{txt}:{n}: image {image} does not exist")
        out.append(image)
    return out


# -- a self-contained copy --------------------------------------------------------------------
def version_layout(spec: DatasetSpec) -> tuple[dict[str, Path], str]:
    """The files of a self-contained copy of `spec` and its data.yaml text: {path in the copy:
    file here}, images at images/<split>/<path under the split's common folder>, their labels at
    labels/<split>/….txt, and a data.yaml without `path:` (Ultralytics then reads the yaml's
    folder; `path: .` would be the working directory to it). Two spellings of one dataset
    (folder or .txt list, absolute or relative path, Roboflow's ../) give the same layout."""
    files: dict[str, Path] = {}
    for name, split in spec.splits.items():
        if not split.images:
            continue
        common = os.path.commonpath([str(p.parent) for p in split.images])
        for image, label in zip(split.images, split.labels):
            rel = f"images/{name}/{Path(os.path.relpath(image, common)).as_posix()}"
            files[rel] = image
            if label.is_file():
                files[label_path(rel)] = label
    # A split without images gets no folder in the copy, so its key would name nothing: left out.
    return files, layout_yaml([n for n, split in spec.splits.items() if split.images], spec.names, _other_keys(spec))


def _other_keys(spec: DatasetSpec) -> dict:
    """The yaml's keys that are neither splits nor names (Roboflow's `roboflow:` block with its
    license and url, `download:`, ...), kept in a copy; a key that looks like a split but named
    nothing usable is dropped with the splits."""
    out = {}
    for key, value in spec.raw.items():
        if key in ("path", "names", "nc", "validation", *SPLIT_KEYS) or key in spec.splits:
            continue
        items = [value] if isinstance(value, str) else value
        names_folders = isinstance(items, list) and all(isinstance(v, str) for v in items)
        if key in _NOT_SPLITS or not names_folders:
            out[key] = value
    return out


def layout_yaml(splits: Sequence[str], names: Sequence[str], other: dict | None = None) -> str:
    """The data.yaml of a copy in the canonical layout: `<split>: images/<split>`, `nc`, `names`
    as an {id: name} dict, no `path:` (the yaml's own folder), then the yaml's `other` keys."""
    import yaml

    doc: dict = {name: f"images/{name}" for name in splits}
    doc["nc"] = len(names)
    doc["names"] = dict(enumerate(names))
    doc.update(other or {})
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
