"""The page: one HTML file holding the styles, the scripts and the data (JSON in <script>
tags), so it opens from a laptop's disk or an e-mail with no server and no network."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

SCRIPTS = (
    "util.js",
    "charts.js",
    "boxes.js",
    "debugger.js",
    "curves.js",
    "table.js",
    "dataset.js",
    "lineage.js",
    "main.js",
)


def asset(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON that cannot end its <script> element early: every '<' is written \\u003c, which
    JSON.parse reads back as '<' (only strings such as file names can hold one)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render(payload: dict[str, Any], small: dict[str, str], large: dict[str, str]) -> str:
    html = asset("report.html")
    parts = {
        "title": _escape(payload.get("title", "artifactkit report")),
        "css": asset("report.css"),
        "data": script_json(payload),
        "thumbs": script_json(small),
        "large": script_json(large),
        "js": "\n".join(f"// ---- {name}\n{asset(name)}" for name in SCRIPTS),
    }
    for key, text in parts.items():
        html = html.replace(f"<!--ak:{key}-->", text.replace("</script", "<\\/script") if key == "js" else text, 1)
    return html


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
