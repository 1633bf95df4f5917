"""Benchmark: the viewer's report for 500 validation images x 20 epochs. Budget: the file stays
under 20 MB and opens (navigation start to the page's ready marker) in under 2 s in headless
Chromium.

The run is synthetic (tests/synthetic_run.py: plausible predictions that improve per epoch),
over real chess images rendered at 416 px, logged into a local store exactly as training logs:
    python bench/viewer.py                     # 500 val x 20 epochs (+200 train, 100 val-heldout)
    python bench/viewer.py --n-val 100 --epochs 5 --repeat 1     # quick check
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from artifactkit.detector.chess import generate
from artifactkit.statcache import NullStatCache
from artifactkit.store import open_store
from artifactkit.viewer import build_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic run is a test fixture
from synthetic_run import synthesize_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SYNC_RENDER = """(tab) => { const t = performance.now(); AK.show(tab); return performance.now() - t; }"""
SLIDER = """(v) => { const e = document.getElementById('conf-slider'); const t = performance.now();
  e.value = v; e.dispatchEvent(new Event('input', {bubbles: true})); return performance.now() - t; }"""


def measure(path: Path, repeat: int) -> dict:
    """Open the report `repeat` times in fresh pages; ms from navigation start to ready, and the
    synchronous cost of the first visit to each tab and of one slider move."""
    from playwright.sync_api import sync_playwright

    ready, wall, tabs, slider = [], [], {}, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="commit")
            page.wait_for_selector("html[data-ready]", state="attached", timeout=60_000)
            wall.append((time.perf_counter() - start) * 1000)
            ready.append(page.evaluate("window.akReady"))
            for tab in ("debugger", "table", "dataset"):
                tabs.setdefault(tab, []).append(page.evaluate(SYNC_RENDER, tab))
            page.evaluate(SYNC_RENDER, "debugger")
            slider.append(page.evaluate(SLIDER, "0.6"))
            if errors:
                raise SystemExit(f"page errors: {errors}")
            context.close()
        browser.close()
    return {"ready": ready, "wall": wall, "tabs": tabs, "slider": slider}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--work-dir", type=Path, help="keep the dataset, store and report here (default: a temp folder)"
    )
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-heldout", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--repeat", type=int, default=3, help="times the report is opened")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="viewer-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        t = time.perf_counter()
        generate(work / "chess", n_train=args.n_train, n_val=args.n_val, n_heldout=args.n_heldout, imgsz=args.imgsz)
        store = open_store(str(work / "store"), stat_cache=NullStatCache())
        dataset = store.log_folder(work / "chess", name="chess").record
        print(f"dataset {dataset.name}:{dataset.label}: {dataset.files} files in {time.perf_counter() - t:.1f}s")
        run_id = f"bench{args.n_val}x{args.epochs}"
        if not store.backend.exists([f"runs/{run_id}/run.json"]):
            t = time.perf_counter()
            synthesize_run(store, f"{dataset.name}:{dataset.label}", run_id, epochs=args.epochs)
            print(
                f"synthetic run {run_id}: {args.n_val} val images x {args.epochs} epochs in "
                f"{time.perf_counter() - t:.1f}s"
            )
        report = build_report(runs=[f"{store.uri}/runs/{run_id}"], out=work / "report.html")
        print(
            f"report {report.path}: {report.bytes / 1e6:.2f} MB ({report.image_bytes / 1e6:.2f} MB of it images: "
            f"{report.images} images once each), {report.epochs} epochs, built in {report.seconds:.1f}s"
        )
        m = measure(report.path, args.repeat)
        print(
            f"time to interactive (navigation start -> ready), {args.repeat} opens: median "
            f"{statistics.median(m['ready']):.0f} ms, "
            f"max {max(m['ready']):.0f} ms (wall from goto: median {statistics.median(m['wall']):.0f} ms)"
        )
        for tab, ms in m["tabs"].items():
            print(f"  first visit to {tab:<8}: median {statistics.median(ms):.0f} ms")
        print(f"  confidence slider move (16 debugger images redrawn): median {statistics.median(m['slider']):.1f} ms")
        ok = report.bytes < 20e6 and max(m["ready"]) < 2000
        print(f"budget (< 20 MB, < 2000 ms): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
