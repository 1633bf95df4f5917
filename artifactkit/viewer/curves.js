"use strict";
// The evaluated epoch chosen with the shared slider, as Ultralytics plots it after val: the
// precision-recall curve (IoU 0.5, mean over classes) and the confusion matrix (rows predicted,
// columns true; background last), from the epoch's evaluation table.

AK.prChart = function (pr) {
  const c = { w: 340, h: 260, left: 46, right: 12, top: 10, bottom: 38 }, iw = c.w - c.left - c.right, ih = c.h - c.top - c.bottom;
  const X = (x) => c.left + x * iw, Y = (y) => c.top + ih - y * ih;
  const svg = AK.svg("svg", { viewBox: "0 0 " + c.w + " " + c.h, class: "chart pr-curve", role: "img", "aria-label": "precision-recall curve" });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(AK.svg("line", { x1: c.left, x2: c.w - c.right, y1: Y(t), y2: Y(t), class: "grid-line" }),
      AK.svg("text", { x: c.left - 6, y: Y(t) + 4, class: "tick", "text-anchor": "end" }, String(t)),
      AK.svg("text", { x: X(t), y: c.h - 20, class: "tick", "text-anchor": "middle" }, String(t)));
  }
  const d = pr.map((p, i) => (i ? "L" : "M") + X(i / (pr.length - 1)).toFixed(1) + " " + Y(p).toFixed(1)).join("");
  svg.append(AK.svg("path", { d: d, class: "series", stroke: AK.runColor(0) }),
    AK.svg("text", { x: c.left + iw / 2, y: c.h - 3, class: "axis-label", "text-anchor": "middle" }, "recall"),
    AK.svg("text", { x: 12, y: c.top + ih / 2, class: "axis-label", "text-anchor": "middle", transform: "rotate(-90 12 " + (c.top + ih / 2) + ")" }, "precision"));
  return svg;
};

AK.confusionTable = function (confusion, names) {
  const m = confusion.matrix, labels = [...names.slice(0, m.length - 1), "background"];
  const top = Math.max(1, ...m.flat());
  return AK.el("table", { class: "data confusion" },
    AK.el("thead", null, AK.el("tr", null, AK.el("th", { text: "predicted \\ true" }), labels.map((n) => AK.el("th", { text: n })))),
    AK.el("tbody", null, m.map((row, i) => AK.el("tr", null, AK.el("th", { class: "pred", text: labels[i] }),
      row.map((v) => AK.el("td", { text: v ? String(v) : "·", style: { background: "rgba(37, 99, 235, " + (v / top * 0.6).toFixed(3) + ")" } }))))));
};

AK.views.curves = {
  title: "PR curve & confusion",
  render: function (root) {
    const draw = function () {
      const run = AK.currentRun();
      if (!run || !run.eval) { root.replaceChildren(AK.empty("No evaluation tables in this run.")); return; }
      const epoch = AK.currentEpoch(), e = run.eval.epochs[epoch];
      const parts = [];
      if (e.pr) parts.push(AK.el("figure", { class: "chart-card" }, AK.el("figcaption", { text: "precision-recall, IoU 0.5 · mAP50 " + AK.fmt(e.metrics["metrics/mAP50"]) }), AK.prChart(e.pr)));
      if (e.confusion) parts.push(AK.el("figure", { class: "chart-card" }, AK.el("figcaption", { text: "confusion matrix · conf ≥ " + e.confusion.conf + ", IoU > " + e.confusion.iou }),
        AK.confusionTable(e.confusion, run.eval.names)));
      root.replaceChildren(AK.el("p", { class: "muted", text: "Run " + run.id + " · epoch " + epoch + " (" + run.eval.split + ")" }),
        parts.length ? AK.el("div", { class: "curves" }, parts) : AK.empty("This epoch's table has no curves (logged by an older artifactkit)."));
    };
    draw();
    AK.onView(root, function (what) { if (what === "run" || what === "epoch") draw(); });
  },
};
