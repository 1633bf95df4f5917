"use strict";
// Metric curves per epoch as small SVG line charts, one per metric, every run overlaid in its
// own colour, with a hover read-out of each run's value at the nearest epoch.

const CHART = { w: 340, h: 210, left: 52, right: 12, top: 10, bottom: 38 };
// Sections in the order a person reads a run: quality first, then losses, schedule, cost.
const CHART_SECTIONS = [
  ["Validation", (k) => k.startsWith("metrics/") || k === "fitness"],
  ["Other validation splits", (k) => /^val[-_].*\/(mAP|precision|recall)/.test(k)],
  ["Training losses", (k) => k.startsWith("train/")],
  ["Validation losses", (k) => k.startsWith("val/")],
  ["Learning rate", (k) => k.startsWith("lr/")],
  ["Speed and time", (k) => k.startsWith("speed/") || k.startsWith("time/")],
  ["System", (k) => k.startsWith("system/")],
  ["Other", () => true],
];

AK.niceTicks = function (lo, hi, count) {
  // A flat series: 0..1 when it is all zeros (a metric before the model finds anything), else ±10%.
  if (!(hi > lo)) { if (lo === 0) hi = 1; else { const pad = Math.abs(lo) * 0.1; lo -= pad; hi += pad; } }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-6; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
};

// A tick label with as many decimals as the step needs (0.25, not 0.250; 1e-4 steps in e-notation).
AK.tick = function (v, step, key) {
  if (key && /bytes/.test(key)) return AK.bytes(v);
  if (v === 0) return "0";
  if (step < 1e-3 || Math.abs(v) >= 1e5) return v.toExponential(1);
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(step * Math.pow(10, decimals)) - step * Math.pow(10, decimals)) > 1e-6) decimals++;
  return v.toFixed(decimals);
};

AK.chart = function (key, series, xLabel) {
  const c = CHART, iw = c.w - c.left - c.right, ih = c.h - c.top - c.bottom;
  const pts = series.flatMap((s) => s.points);
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const yt = AK.niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const y0 = yt[0], y1 = yt[yt.length - 1];
  const X = (x) => c.left + (x1 > x0 ? (x - x0) / (x1 - x0) * iw : iw / 2);
  const Y = (y) => c.top + ih - (y1 > y0 ? (y - y0) / (y1 - y0) * ih : ih / 2);
  const svg = AK.svg("svg", { viewBox: "0 0 " + c.w + " " + c.h, class: "chart", role: "img", "aria-label": key, "data-key": key });
  for (const t of yt) {
    svg.append(AK.svg("line", { x1: c.left, x2: c.w - c.right, y1: Y(t), y2: Y(t), class: "grid-line" }),
      AK.svg("text", { x: c.left - 6, y: Y(t) + 4, class: "tick", "text-anchor": "end" }, AK.tick(t, yt[1] - yt[0], key)));
  }
  const xStep = Math.max(1, Math.ceil((x1 - x0 + 1) / 8));
  for (let x = x0; x <= x1; x += xStep) svg.append(AK.svg("text", { x: X(x), y: c.h - 14, class: "tick", "text-anchor": "middle" }, x));
  svg.append(AK.svg("text", { x: c.left + iw / 2, y: c.h - 1, class: "axis-label", "text-anchor": "middle" }, xLabel || "epoch"));
  for (const s of series) {
    const d = s.points.map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1)).join("");
    svg.append(AK.svg("path", { d: d, class: "series", stroke: s.color, "data-run": s.name }));
    if (s.points.length <= 40) for (const p of s.points) svg.append(AK.svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: s.color }));
  }
  const cursor = AK.svg("line", { y1: c.top, y2: c.top + ih, class: "cursor", visibility: "hidden" });
  svg.append(cursor);
  svg.addEventListener("mousemove", function (e) {
    const box = svg.getBoundingClientRect();
    const x = x0 + ((e.clientX - box.left) * c.w / box.width - c.left) / iw * (x1 - x0);
    const epoch = xs.reduce((best, v) => (Math.abs(v - x) < Math.abs(best - x) ? v : best), xs[0]);
    cursor.setAttribute("x1", X(epoch)); cursor.setAttribute("x2", X(epoch)); cursor.setAttribute("visibility", "visible");
    AK.tooltip(e.clientX, e.clientY, AK.el("div", null, AK.el("strong", { text: key + " · epoch " + epoch }),
      series.map((s) => { const p = s.points.find((q) => q[0] === epoch); return p ? AK.el("div", null,
        AK.el("span", { class: "swatch", style: { background: s.color } }), s.name + "  " + AK.fmt(p[1], key)) : null; })));
  });
  svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); AK.tooltip(0, 0, null); });
  return AK.el("figure", { class: "chart-card" }, AK.el("figcaption", { text: key }), svg);
};

AK.views.metrics = {
  title: "Metrics",
  render: function (root) {
    const runs = AK.data.runs;
    const keys = new Set();
    runs.forEach((r) => r.history.forEach((h) => Object.keys(h.m).forEach((k) => keys.add(k))));
    const legend = AK.el("div", { class: "legend" }, runs.map((r, i) => AK.el("span", { class: "legend-item" },
      AK.el("span", { class: "swatch", style: { background: AK.runColor(i) } }), "run " + r.id)));
    const out = [AK.runSummary(runs), AK.lineage(runs), legend];
    const left = [...keys].sort();
    for (const [title, test] of CHART_SECTIONS) {
      const mine = left.filter(test);
      mine.forEach((k) => left.splice(left.indexOf(k), 1));
      const charts = mine.map(function (k) {
        const series = runs.map((r, i) => ({ name: r.id, color: AK.runColor(i),
          points: r.history.filter((h) => typeof h.m[k] === "number").map((h) => [h.epoch, h.m[k]]) })).filter((s) => s.points.length);
        return series.length ? AK.chart(k, series) : null;
      }).filter(Boolean);
      if (charts.length) out.push(AK.el("h3", { text: title }), AK.el("div", { class: "charts" }, charts));
    }
    if (!keys.size) out.push(AK.empty("No per-epoch metrics recorded yet."));
    root.replaceChildren(...out);
  },
};

AK.runSummary = function (runs) {
  const cols = ["run", "status", "epochs", "dataset", "best mAP50", "best mAP50-95", "model", "imgsz", "batch", "created"];
  return AK.el("table", { class: "data runs" }, AK.el("thead", null, AK.el("tr", null, cols.map((c) => AK.el("th", { text: c })))),
    AK.el("tbody", null, runs.map((r, i) => AK.el("tr", null,
      AK.el("td", null, AK.el("span", { class: "swatch", style: { background: AK.runColor(i) } }), AK.el("span", { title: r.uri, text: r.id })),
      AK.el("td", null, AK.el("span", { class: "status " + r.status, text: r.status })),
      AK.el("td", { class: "num", text: r.epochs_completed + "/" + r.total_epochs }), AK.el("td", { text: r.dataset || "–" }),
      AK.el("td", { class: "num", text: AK.fmt(r.best["metrics/mAP50"]) }), AK.el("td", { class: "num", text: AK.fmt(r.best["metrics/mAP50-95"]) }),
      AK.el("td", { text: r.config.model || "–" }), AK.el("td", { class: "num", text: r.config.imgsz || "–" }),
      AK.el("td", { class: "num", text: r.config.batch || "–" }), AK.el("td", { text: (r.created || "").slice(0, 19).replace("T", " ") })))));
};
