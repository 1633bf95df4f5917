"""The offline viewer: what the report holds (read back from its JSON), its errors, the CLI, and
its behaviour in a real headless Chromium driven by Playwright: the confidence slider hides
boxes below it, the epoch slider switches predictions, the table sorts, filters and groups, the
class toggles hide a class, and screenshots are taken (set AK_VIEWER_SHOTS=DIR to keep them)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from synthetic_run import synthesize_run

from artifactkit.errors import InvalidInput, NotFound
from artifactkit.statcache import NullStatCache
from artifactkit.store import open_store
from artifactkit.viewer import build_report
from artifactkit.viewer.dataset import parse_labels, split_of
from artifactkit.viewer.render import script_json
from artifactkit.yolo import label_path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def report_data(path: Path, script_id: str = "ak-data") -> dict:
    html = path.read_text()
    m = re.search(rf'<script type="application/json" id="{script_id}">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A chess dataset version and two synthetic runs on it (20 val images, 4 and 3 epochs)."""
    pytest.importorskip("PIL")
    from artifactkit.detector.chess import generate

    root = tmp_path_factory.mktemp("viewer")
    generate(root / "chess", n_train=6, n_val=20, n_heldout=2, imgsz=96)
    store = open_store(str(root / "store"), stat_cache=NullStatCache())  # no per-user cache from a module fixture
    store.log_folder(root / "chess", name="chess")
    synthesize_run(store, "chess:v0", "runa", epochs=4)
    synthesize_run(store, "chess:v0", "runb", epochs=3, seed=5)
    report = build_report(runs=[f"{store.uri}/runs/runa", f"{store.uri}/runs/runb"], out=root / "report.html")
    return {"root": root, "store": store, "report": report}


# -- the report's contents -------------------------------------------------------------------
def test_report_embeds_each_image_once_and_every_epoch(world):
    report, store = world["report"], world["store"]
    data = report_data(report.path)
    thumbs = report_data(report.path, "ak-thumbs")
    assert report.runs == ["runa", "runb"] and report.dataset == "chess:v0" and report.epochs == 7
    assert set(thumbs) == set(data["sizes"]) and len(thumbs) == 28  # 6 + 20 + 2 images, once each
    assert all(v.startswith("data:image/jpeg;base64,") for v in thumbs.values())
    runa = data["runs"][0]
    assert sorted(runa["eval"]["epochs"], key=int) == ["1", "2", "3", "4"]
    assert [h["epoch"] for h in runa["history"]] == [1, 2, 3, 4] and "metrics/mAP50" in runa["history"][0]["m"]
    table = json.loads(store.read_blob(store.manifest(store.resolve("runa-evaluation:epoch-2")).entries[0].digest))
    assert [im["id"] for im in runa["eval"]["images"]] == [r["im_id"] for r in table["rows"]]
    assert runa["eval"]["debugger"] == list(range(16))  # the debugger's images are the first rows
    row, logged = runa["eval"]["epochs"]["2"]["rows"][3], table["rows"][3]
    assert row[:4] == [logged["avg_conf"], logged["tp"], logged["fp"], logged["fn"]]
    assert [p[5] for p in row[4]] == [round(p[5], 3) for p in logged["pred"]]
    large = report_data(report.path, "ak-large")
    debug = {r["eval"]["images"][i]["key"] for r in data["runs"] for i in r["eval"]["debugger"]}
    assert set(large) == debug and 16 <= len(debug) <= 20  # only the debuggers' images (two seeds) get it


def test_report_is_self_contained(world):
    html = world["report"].path.read_text()
    assert "default-src 'none'" in html  # the page may not fetch anything
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html
    assert world["report"].bytes == world["report"].path.stat().st_size


def test_script_json_cannot_close_its_script():
    text = script_json({"path": "images/</script><script>alert(1)</script>.jpg"})
    assert "</script" not in text and json.loads(text)["path"].startswith("images/</script>")


def test_yolo_label_helpers():
    assert label_path("data/images/val/a.b.jpg") == "data/labels/val/a.b.txt"
    assert split_of("images/val-heldout/x.jpg") == "val-heldout" and split_of("images/x.jpg") == "images"
    assert split_of("valid/images/x.jpg") == "valid"  # Roboflow's layout
    assert parse_labels(b"3 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.3 0.1 0.3 0.5\n", "l.txt") == [
        [3, 0.5, 0.5, 0.2, 0.4],
        [1, 0.2, 0.3, 0.2, 0.4],
    ]
    with pytest.raises(InvalidInput, match="l.txt:1"):
        parse_labels(b"3 0.5 0.5\n", "l.txt")


def test_dataset_only_report_and_sampling(world, tmp_path):
    report = build_report(dataset="chess:v0", store=world["store"].uri, out=tmp_path / "d.html", max_dataset_images=10)
    ds = report_data(report.path)["dataset"]
    assert report.runs == [] and ds["total"] == 28 and len(ds["items"]) <= 11
    assert {it["split"] for it in ds["items"]} == {"train", "val", "val-heldout"}  # small splits still shown
    assert ds["names"][0] == "white-king" and all(it["boxes"] for it in ds["items"])


def test_a_repeated_epoch_shows_its_latest_table(world, tmp_path):
    """A resumed run that validates epoch 2 again logs a second version: the report shows it."""
    store = world["store"]
    synthesize_run(store, "chess:v0", "again", epochs=2)
    entry = store.manifest(store.resolve("again-evaluation:epoch-2")).entries[0]
    table = json.loads(store.read_blob(entry.digest))
    table["rows"][0]["avg_conf"] = 0.4242
    store.log_files(
        {"table.json": json.dumps(table).encode()},
        name="again-evaluation",
        type="evaluation",
        aliases=("epoch-2",),
        metadata={"epoch": 2},
        run_id="again",
        dedup_latest=False,
    )
    report = build_report(runs=[f"{store.uri}/runs/again"], out=tmp_path / "r.html", include_dataset=False)
    ev = report_data(report.path)["runs"][0]["eval"]
    assert sorted(ev["epochs"]) == ["1", "2"] and ev["epochs"]["2"]["rows"][0][0] == 0.4242
    assert report.dataset is None and report.images == 20


def test_errors_name_what_is_at_fault(world, tmp_path):
    store = world["store"]
    with pytest.raises(NotFound, match=re.escape(f"{store.uri}/runs/ghost")):
        build_report(runs=[f"{store.uri}/runs/ghost"], out=tmp_path / "x.html")
    with pytest.raises(InvalidInput, match="nothing to view"):
        build_report(out=tmp_path / "x.html")
    store.log_files({"other.json": b"{}"}, name="broken-evaluation", type="evaluation")
    synthesize_run(store, "chess:v0", "broken", epochs=1)
    with pytest.raises(InvalidInput, match=r"broken-evaluation:v0 has no table.json"):
        build_report(runs=[f"{store.uri}/runs/broken"], out=tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_missing_image_blob_is_a_gap_with_a_warning(tmp_path):
    pytest.importorskip("PIL")
    from artifactkit.detector.chess import generate
    from artifactkit.layout import object_key

    generate(tmp_path / "c", n_train=0, n_val=3, n_heldout=0, imgsz=64)
    store = open_store(str(tmp_path / "s"), stat_cache=NullStatCache())
    store.log_folder(tmp_path / "c", name="c")
    digest = next(e.digest for e in store.manifest(store.resolve("c")).entries if e.path.endswith(".jpg"))
    store.backend.delete([object_key(digest)])
    report = build_report(dataset="c:v0", store=store.uri, out=tmp_path / "r.html")
    assert len(report.warnings) == 1 and object_key(digest) in report.warnings[0]
    assert digest not in report_data(report.path, "ak-thumbs")


def test_cli_view(world, cli, tmp_path):
    store = world["store"].uri
    proc = cli("view", f"{store}/runs/runa", "--out", str(tmp_path / "r.html"), "--json")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["report"] == str(tmp_path / "r.html") and out["runs"] == ["runa"] and out["epochs"] == 4
    proc = cli("view", "chess:v0", "--store", store, cwd=tmp_path)
    assert (tmp_path / "artifactkit-chess-v0.html").is_file() and "artifactkit-chess-v0.html" in proc.stdout
    proc = cli("view", "runb", "--store", store, "--no-dataset", cwd=tmp_path)  # a bare run id in --store
    assert (tmp_path / "artifactkit-runb.html").is_file()
    bad = cli("view", f"{store}/runs/ghost", check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == f"error: {store}/runs/ghost: no such run"


# -- in a real browser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    pages = []

    def open_(path: Path, tab: str | None = None):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.akErrors, page.akRequests = [], []
        page.on("pageerror", lambda e: page.akErrors.append(str(e)))
        page.on("console", lambda m: page.akErrors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: page.akRequests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector("html[data-ready]", state="attached")
        if tab:
            page.click(f"#tab-{tab}")
        pages.append(page)
        return page

    yield open_
    for page in pages:
        assert page.akErrors == []
        assert all(u.startswith(("file:", "data:")) for u in page.akRequests), page.akRequests
        page.close()


def set_range(page, selector: str, value) -> None:
    """What dragging a slider does: set its value and fire `input`."""
    page.eval_on_selector(
        selector, "(e, v) => { e.value = v; e.dispatchEvent(new Event('input', {bubbles: true})); }", str(value)
    )


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 20_000  # a rendered page, not a blank one
    keep = os.environ.get("AK_VIEWER_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def expected_preds(data: dict, epoch: str, threshold: float, off: set[int] = frozenset()) -> int:
    ev = data["runs"][0]["eval"]
    rows = ev["epochs"][epoch]["rows"]
    return sum(1 for i in ev["debugger"] for p in rows[i][4] if p[5] >= threshold and p[0] not in off)


def test_confidence_slider_hides_boxes_below_it(world, open_page, tmp_path):
    data = report_data(world["report"].path)
    page = open_page(world["report"].path, "debugger")
    boxes = "#debug-grid rect.pred"
    assert page.locator("#debug-grid .figure").count() == 16
    assert page.locator(boxes).count() == expected_preds(data, "4", 0.25) > 0
    confs = page.eval_on_selector_all(boxes, "els => els.map(e => Number(e.dataset.conf))")
    assert min(confs) >= 0.25 and any(c < 0.8 for c in confs)
    set_range(page, "#conf-slider", 0.8)
    assert page.inner_text("#conf-label") == "≥ 0.80"
    confs = page.eval_on_selector_all(boxes, "els => els.map(e => Number(e.dataset.conf))")
    assert len(confs) == expected_preds(data, "4", 0.8) and all(c >= 0.8 for c in confs)
    set_range(page, "#epoch-slider", 0)  # epoch 1: a weaker model, other boxes
    assert page.inner_text("#epoch-label").startswith("epoch 1 ")
    assert page.locator(boxes).count() == expected_preds(data, "1", 0.8)
    shot(page, tmp_path, "debugger")


def test_class_toggle_hides_and_restores_a_class(world, open_page):
    page = open_page(world["report"].path, "debugger")
    cls = page.eval_on_selector_all("#debug-grid rect.pred", "els => els.map(e => e.dataset.cls)")[0]
    page.click(f'.class-toggles .chip[data-cls="{cls}"]')
    assert page.locator(f'#debug-grid rect[data-cls="{cls}"]').count() == 0
    assert page.get_attribute(f'.class-toggles .chip[data-cls="{cls}"]', "aria-pressed") == "false"
    page.click(f'.class-toggles .chip[data-cls="{cls}"]')
    assert page.locator(f'#debug-grid rect.pred[data-cls="{cls}"]').count() > 0


def test_table_sorts_filters_and_groups(world, open_page, tmp_path):
    page = open_page(world["report"].path, "table")

    def avgs():
        return page.eval_on_selector_all("#eval-table tbody tr[data-avg]", "els => els.map(e => Number(e.dataset.avg))")

    assert len(avgs()) == 20
    page.click('#eval-table th[data-key="avg"]')
    assert avgs() == sorted(avgs(), reverse=True) and avgs() != sorted(avgs())
    page.click('#eval-table th[data-key="avg"]')
    assert avgs() == sorted(avgs())
    lo = sorted(avgs())[10]
    page.fill("#conf-min", str(lo))
    assert len(avgs()) == 10 and all(a >= lo for a in avgs())
    page.fill("#conf-min", "0")
    page.select_option("#class-filter", "0")  # white-king: on every board
    assert len(avgs()) == 20
    page.select_option("#class-filter", "")
    page.check("#group-by-class")
    groups = page.eval_on_selector_all("#eval-table tr.group", "els => els.map(e => e.dataset.cls)")
    kinds = page.eval_on_selector_all(
        "#eval-table tbody tr", "els => els.map(e => e.classList.contains('group') ? 'g' : 'r')"
    )
    assert groups[:2] == ["0", "1"] and len(kinds) == 50  # a page of 50 lines, group headings included
    assert "".join(kinds).startswith("g" + "r" * 20 + "g")  # white-king is on all 20 boards; rows repeat per class
    shot(page, tmp_path, "table")


def test_dataset_browser_groups_by_class(world, open_page, tmp_path):
    report = build_report(dataset="chess:v0", store=world["store"].uri, out=tmp_path / "d.html")
    page = open_page(report.path)
    assert page.get_attribute("#tab-dataset", "aria-selected") == "true"
    assert page.locator("#dataset-groups details.group").count() == 12
    first = page.locator("#dataset-groups details.group").first
    assert first.locator(".figure").count() == 28 and first.locator("rect.gt").count() > 28
    page.select_option("#split-filter", "val-heldout")
    assert page.locator("#dataset-groups details.group").first.locator(".figure").count() == 2
    page.click('.class-toggles .chip[data-cls="0"]')
    assert page.locator('#dataset-groups rect.gt[data-cls="0"]').count() == 0
    shot(page, tmp_path, "dataset")


def test_metric_curves_overlay_runs(world, open_page, tmp_path):
    page = open_page(world["report"].path)
    chart = page.locator('svg.chart[data-key="metrics/mAP50"]')
    assert chart.locator("path.series").count() == 2  # both runs on one chart
    assert page.locator('svg.chart[data-key="train/box_loss"]').count() == 1
    assert page.locator('svg.chart[data-key="lr/pg0"]').count() == 1
    chart.hover()
    assert "metrics/mAP50 · epoch" in page.inner_text("#tooltip")
    shot(page, tmp_path, "metrics")


@pytest.mark.slow
def test_real_training_run_in_the_browser(tmp_path, cli, open_page):
    """The real thing end to end: a tiny training run, `view`, the page in Chromium."""
    pytest.importorskip("torch")
    store = str(tmp_path / "store")
    cli("demo-data", str(tmp_path / "chess"), "--n-train", "16", "--n-val", "8", "--n-heldout", "4", "--imgsz", "128")
    run = json.loads(
        cli(
            "train",
            "--data",
            str(tmp_path / "chess"),
            "--epochs",
            "2",
            "--imgsz",
            "128",
            "--batch",
            "8",
            "--workers",
            "0",
            "--store",
            store,
            "--json",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    out = json.loads(
        cli("view", f"{store}/runs/{run['run_id']}", "--out", str(tmp_path / "r.html"), "--json")
        .stdout.strip()
        .splitlines()[-1]
    )
    assert out["epochs"] == 2 and out["dataset"] == "chess:v0" and out["images"] == 28
    page = open_page(tmp_path / "r.html", "debugger")
    assert page.locator("#debug-grid .figure img").count() == 8  # all 8 val images (fewer than 16)
    assert page.locator("#debug-grid rect.gt").count() > 8
    page.click("#tab-table")
    assert page.locator("#eval-table tbody tr[data-avg]").count() == 8
    # each evaluated epoch: a precision-recall curve and a 13 x 13 confusion matrix (12 classes + background)
    data = report_data(tmp_path / "r.html")
    for epoch in ("1", "2"):
        e = data["runs"][0]["eval"]["epochs"][epoch]
        assert len(e["pr"]) == 101 and len(e["confusion"]["matrix"]) == 13
        assert sum(map(sum, e["confusion"]["matrix"])) >= sum(len(im["gt"]) for im in data["runs"][0]["eval"]["images"])
    page.click("#tab-curves")
    assert page.locator("svg.pr-curve path.series").count() == 1
    assert page.locator("table.confusion tbody tr").count() == 13
    assert page.locator("svg.pr-curve text.axis-label").all_text_contents() == ["recall", "precision"]
    page.click("#tab-metrics")
    chart = page.locator('svg.chart[data-key="metrics/mAP50"]')
    assert chart.locator("text.axis-label").text_content() == "epoch"
    ticks = chart.locator("text.tick").all_text_contents()
    if all(m["m"].get("metrics/mAP50") == 0 for m in data["runs"][0]["history"]):
        assert "-1" not in ticks and ticks[0] == "0"  # all zero: a 0..1 axis, not -1..1


def test_targets_are_read_by_the_library(world):
    """What `view` was given (run URI, bare run id, dataset ref) is decided in artifactkit, not the CLI."""
    from artifactkit.viewer.targets import split_targets

    store = world["store"].uri
    assert split_targets(["runb", "chess:v0"], store) == ([f"{store}/runs/runb"], "chess:v0")
    assert split_targets([f"{store}/runs/runa", "chess"], store) == ([f"{store}/runs/runa"], "chess")
    with pytest.raises(InvalidInput, match="one dataset at a time, got chess:v0, other"):
        split_targets(["chess:v0", "other"], store)
