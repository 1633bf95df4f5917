"""What a report shows of a run, read from the store: the run record, its per-epoch metrics
and its evaluation tables (one version of `<run-id>-evaluation` per bbox-interval epoch),
made compact for the page: the images and their ground truth once per run, and per epoch only
what changes (predictions, average confidence, TP/FP/FN)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidInput
from ..lineage_graph import run_io
from ..records import DIGEST_RE
from ..runs import load_run, observe, read_metrics
from ..store import Store
from ..uri import run_uri
from .images import ImageBank

TABLE = "table.json"
CONFIG_KEYS = ("model", "epochs", "batch", "imgsz", "optimizer", "seed", "bbox_interval", "device")


def load_run_data(store: Store, run_id: str, bank: ImageBank) -> dict[str, Any]:
    record = load_run(store, run_id)
    history = []
    for obj in read_metrics(store, run_id):
        values = {**obj.get("metrics", {}), **obj.get("system", {})}
        history.append(
            {
                "epoch": int(obj.get("epoch", len(history) + 1)),
                "m": {k: v for k, v in values.items() if _number(v) and k != "epoch"},
            }
        )
    history.sort(key=lambda h: h["epoch"])
    return {
        "id": record.run_id,
        "uri": run_uri(store.uri, record.run_id),
        "status": observe(store, record).status,  # a killed run reads `interrupted`, not `running`
        "dataset": record.dataset,
        "epochs_completed": record.epochs_completed,
        "total_epochs": record.total_epochs,
        "best": {k: v for k, v in record.best_metrics.items() if _number(v)},  # NaN is not JSON
        "config": {k: record.config[k] for k in CONFIG_KEYS if k in record.config},
        "created": record.created,
        "history": history,
        "eval": _evaluation(store, run_id, bank),
        "lineage": run_io(store, record),  # inputs (dataset, weights_from) and outputs (checkpoints, tables)
    }


def _evaluation(store: Store, run_id: str, bank: ImageBank) -> dict[str, Any] | None:
    try:
        return load_evaluation(store, run_id, bank)
    except (TypeError, ValueError, IndexError, KeyError) as e:  # a row's boxes or shape of the wrong form
        raise InvalidInput(f"{store.uri}: {run_id}-evaluation: a table is not an evaluation table ({e})") from None


def evaluation_tables(store: Store, run_id: str) -> dict[int, dict[str, Any]]:
    """epoch -> table; where an epoch was logged twice (a resumed run repeating it), the later
    version wins, as its epoch-E alias says."""
    name = f"{run_id}-evaluation"
    tables: dict[int, dict[str, Any]] = {}
    for number in store.version_numbers(name):
        record = store.record(name, number)
        entries = {e.path: e for e in store.manifest(record).entries}
        where = f"{store.uri}: {name}:{record.label}"
        if TABLE not in entries:
            raise InvalidInput(f"{where} has no {TABLE}")
        try:
            table = json.loads(store.read_blob(entries[TABLE].digest))
            epoch = int(table.get("epoch", record.metadata.get("epoch")))
            _check_rows(table["rows"])
            _check_table(table)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            raise InvalidInput(f"{where}: {TABLE} is not an evaluation table ({e})") from None
        tables[epoch] = table
    return dict(sorted(tables.items()))


def _check_rows(rows: Any) -> None:
    """The fields the report turns into keys or reads by shape. An image digest names a blob
    (a key, on a local store a path): anything but 32 hex digits is refused."""
    if not isinstance(rows, list):
        raise TypeError("rows is not a list")
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("im_id"), (str, int)):
            raise TypeError(f"a row without an image id: {str(row)[:60]!r}")
        image = row.get("image")
        if image is not None and not (isinstance(image, str) and DIGEST_RE.fullmatch(image)):
            raise ValueError(f"row {row['im_id']!r}: invalid image digest {str(image)[:60]!r}")
        for key in ("gt", "pred"):  # _box reads [cls, x1, y1, x2, y2(, conf)]
            boxes = row.get(key, [])
            if not isinstance(boxes, list) or not all(
                isinstance(b, list) and len(b) >= 5 and all(_number(v) for v in b[:6]) for b in boxes
            ):
                raise ValueError(f"row {row['im_id']!r}: {key!r} is not a list of boxes")
        shape = row.get("shape")
        if shape and not (isinstance(shape, list) and len(shape) == 2 and all(_number(v) for v in shape)):
            raise ValueError(f"row {row['im_id']!r}: 'shape' is not [height, width]")


def _check_table(table: dict) -> None:
    """The table-level fields load_evaluation reads by shape."""
    if not isinstance(table.get("metrics", {}), dict):
        raise TypeError("metrics is not an object")
    debugger = table.get("debugger", [])
    if not isinstance(debugger, list) or not all(isinstance(i, (str, int)) for i in debugger):
        raise TypeError("debugger is not a list of image ids")


def load_evaluation(store: Store, run_id: str, bank: ImageBank) -> dict[str, Any] | None:
    tables = evaluation_tables(store, run_id)
    if not tables:
        return None
    last = tables[max(tables)]
    debugger = set(last.get("debugger", []))
    images, index = [], {}
    for row in last["rows"]:  # the newest table's order: the debugger's images first
        index[row["im_id"]] = len(images)
        key = bank.want(store, row.get("image"), large=row["im_id"] in debugger)
        h, w = row.get("shape") or [0, 0]
        images.append(
            {
                "id": row["im_id"],
                "path": row.get("path"),
                "key": key,
                "w": w,
                "h": h,
                "gt": [_box(g) for g in row.get("gt", [])],
            }
        )
    epochs = {}
    for epoch, table in tables.items():
        rows: list[Any] = [None] * len(images)
        for row in table["rows"]:
            i = index.get(row["im_id"])
            if i is not None:
                rows[i] = [
                    row.get("avg_conf", 0.0),
                    row.get("tp", 0),
                    row.get("fp", 0),
                    row.get("fn", 0),
                    [_box(p) for p in row.get("pred", [])],
                ]
        epochs[str(epoch)] = {
            "rows": rows,
            "metrics": {k: v for k, v in table.get("metrics", {}).items() if _number(v)},
            **_curves(table),
        }
    return {
        "split": last.get("split", "val"),
        "names": last.get("names", []),
        "min_conf": last.get("min_conf", 0.0),
        "debugger": [index[i] for i in last.get("debugger", []) if i in index],
        "images": images,
        "epochs": epochs,
    }


def _curves(table: dict[str, Any]) -> dict[str, Any]:
    """The PR curve and confusion matrix of one table, where it has them (older tables do not)."""
    out: dict[str, Any] = {}
    pr = table.get("pr_curve")
    if isinstance(pr, list) and pr and all(_number(v) for v in pr):
        out["pr"] = pr
    confusion = table.get("confusion")
    if isinstance(confusion, dict) and isinstance(confusion.get("matrix"), list):
        matrix = confusion["matrix"]
        if all(isinstance(r, list) and len(r) == len(matrix) and all(isinstance(v, int) for v in r) for r in matrix):
            out["confusion"] = {"matrix": matrix, "conf": confusion.get("conf"), "iou": confusion.get("iou")}
    return out


def _box(values: list[float]) -> list[float]:
    """[cls, x1, y1, x2, y2(, conf)]: whole pixels are plenty on a thumbnail, and keep the
    page small; the confidence keeps three decimals for the threshold slider."""
    out: list[float] = [int(values[0]), *(round(v) for v in values[1:5])]
    if len(values) > 5:
        out.append(round(values[5], 3))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
