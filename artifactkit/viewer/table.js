"use strict";
// The evaluation table of one epoch: every validation image, sortable (average confidence,
// counts, path), filterable by an average-confidence range and a class, and groupable by class.
// Only one page of rows is in the DOM at a time, so 500 images cost what 50 do.

const TABLE_PAGE = 50;
const TABLE_COLUMNS = [
  ["index", "#"], [null, "image"], ["path", "path"], ["avg", "avg conf"], [null, "class conf"],
  ["shown", "preds ≥ thr"], ["gt", "GT"], ["tp", "TP"], ["fp", "FP"], ["fn", "FN"],
];

AK.tableRows = function (run, epoch) {
  const thr = AK.state.threshold;
  return run.eval.images.map(function (im, i) {
    const row = run.eval.epochs[epoch].rows[i];
    const pred = row ? row[4] : [];
    const sums = {};
    for (const p of pred) (sums[p[0]] = sums[p[0]] || []).push(p[5]);
    const classConf = {};
    for (const [c, v] of Object.entries(sums)) classConf[c] = v.reduce((a, b) => a + b, 0) / v.length;
    const classes = new Set(im.gt.map((g) => g[0]));
    for (const p of pred) if (p[5] >= thr) classes.add(p[0]);
    return { index: i, im: im, row: row, path: im.path || im.id, avg: row ? row[0] : 0, tp: row ? row[1] : 0,
      fp: row ? row[2] : 0, fn: row ? row[3] : 0, gt: im.gt.length, shown: pred.filter((p) => p[5] >= thr).length,
      classConf: classConf, classes: classes };
  });
};

AK.views.table = {
  title: "Evaluation table",
  render: function (root) {
    const t = { sort: "index", dir: 1, lo: 0, hi: 1, cls: "", group: false, page: 0 };
    const body = AK.el("div", { id: "eval-table-wrap" });
    const num = (id, label, key) => AK.el("label", { class: "control" }, label, AK.el("input", {
      id: id, type: "number", min: 0, max: 1, step: 0.05, value: t[key],
      oninput: (e) => { const v = parseFloat(e.target.value); t[key] = Number.isNaN(v) ? (key === "lo" ? 0 : 1) : v; t.page = 0; draw(); },
    }));
    const clsSelect = AK.el("select", { id: "class-filter", "aria-label": "class filter",
      onchange: (e) => { t.cls = e.target.value; t.page = 0; draw(); } });
    const fillClasses = () => clsSelect.replaceChildren(AK.el("option", { value: "", text: "any class" }),
      ...AK.names().map((n, c) => AK.el("option", { value: c, text: n, selected: String(c) === t.cls })));
    fillClasses();
    const filters = AK.el("div", { class: "control-row" }, AK.el("span", { class: "muted", text: "Average confidence" }),
      num("conf-min", "from", "lo"), num("conf-max", "to", "hi"), clsSelect,
      AK.el("label", { class: "check" }, AK.el("input", { id: "group-by-class", type: "checkbox",
        onchange: (e) => { t.group = e.target.checked; t.page = 0; draw(); } }), "group by class"));
    root.replaceChildren(filters, body);

    const draw = function () {
      const run = AK.currentRun();
      if (!run || !run.eval) { body.replaceChildren(AK.empty("No evaluation tables in this run.")); return; }
      const epoch = AK.currentEpoch();
      const rows = AK.tableRows(run, epoch).filter((r) => r.avg >= t.lo - 1e-9 && r.avg <= t.hi + 1e-9 &&
        (t.cls === "" || r.classes.has(Number(t.cls))));
      const items = t.group ? AK.groupRows(rows, t) : AK.sortRows(rows, t, null);
      const pages = Math.max(1, Math.ceil(items.length / TABLE_PAGE));
      t.page = Math.min(t.page, pages - 1);
      const tbody = AK.el("tbody", null, items.slice(t.page * TABLE_PAGE, (t.page + 1) * TABLE_PAGE).map((it) => it.group ? AK.groupRow(it) : AK.tableRow(it, run)));
      const head = AK.el("tr", null, TABLE_COLUMNS.map(([key, label]) => AK.el("th", key ? {
        class: "sortable" + (t.sort === key ? " sorted" : ""), "data-key": key, tabindex: 0,
        "aria-sort": t.sort === key ? (t.dir > 0 ? "ascending" : "descending") : "none",
        onclick: () => { if (t.sort === key) t.dir = -t.dir; else { t.sort = key; t.dir = key === "path" || key === "index" ? 1 : -1; } draw(); },
        onkeydown: (e) => { if (e.key === "Enter") e.target.click(); },
      } : null, label, t.sort === key ? (t.dir > 0 ? " ▲" : " ▼") : "")));
      const pager = AK.el("div", { class: "pager" },
        AK.el("button", { text: "‹ prev", disabled: t.page === 0, onclick: () => { t.page--; draw(); } }),
        AK.el("span", { text: "page " + (t.page + 1) + " / " + pages }),
        AK.el("button", { text: "next ›", disabled: t.page >= pages - 1, onclick: () => { t.page++; draw(); } }));
      body.replaceChildren(AK.el("p", { class: "muted", id: "table-summary" }, rows.length + " of " + run.eval.images.length +
        " images · run " + run.id + " · epoch " + epoch + " · TP/FP/FN at IoU 0.5 and confidence 0.25, as logged"),
        AK.el("table", { id: "eval-table", class: "data" }, AK.el("thead", null, head), tbody), pager);
    };
    draw();
    AK.onView(root, (what) => { if (what === "run") fillClasses(); draw(); });
  },
};

AK.sortRows = function (rows, t, cls) {
  const key = t.sort;
  const value = (r) => (key === "avg" && cls !== null ? (r.classConf[cls] || 0) : r[key]);
  const cmp = key === "path" ? (a, b) => a.path.localeCompare(b.path) : (a, b) => value(a) - value(b);
  return rows.slice().sort((a, b) => cmp(a, b) * t.dir || a.index - b.index);
};

// A row belongs to every class it shows (ground truth, or a prediction at the threshold);
// within a group, "avg conf" sorts by that class's own average confidence.
AK.groupRows = function (rows, t) {
  const out = [];
  AK.names().forEach(function (name, c) {
    const members = rows.filter((r) => r.classes.has(c));
    if (!members.length) return;
    const confs = members.map((r) => r.classConf[c]).filter((v) => v !== undefined);
    const mean = confs.length ? confs.reduce((a, b) => a + b, 0) / confs.length : null;
    out.push({ group: true, cls: c, n: members.length, mean: mean });
    out.push(...AK.sortRows(members, t, c).map((r) => Object.assign({ groupCls: c }, r)));
  });
  return out;
};

AK.groupRow = (g) => AK.el("tr", { class: "group", "data-cls": g.cls }, AK.el("td", { colspan: TABLE_COLUMNS.length },
  AK.el("span", { class: "swatch", style: { background: AK.classColor(g.cls) } }), AK.className(g.cls),
  AK.el("span", { class: "muted", text: " · " + g.n + " images · mean class confidence " + AK.fmt(g.mean) })));

AK.tableRow = function (r, run) {
  const item = { key: r.im.key, w: r.im.w, h: r.im.h, gt: r.im.gt, pred: r.row ? r.row[4] : [], title: r.path, row: r.row,
    info: AK.evalItem(run, r.index, AK.currentEpoch()).info };
  const confs = Object.entries(r.classConf).sort((a, b) => b[1] - a[1]).map(([c, v]) => AK.el("span", {
    class: "chip small" + (r.groupCls !== undefined && Number(c) === r.groupCls ? " hl" : ""), title: AK.className(Number(c)) },
  AK.el("span", { class: "swatch", style: { background: AK.classColor(Number(c)) } }), v.toFixed(2)));
  return AK.el("tr", { "data-index": r.index, "data-avg": r.avg },
    AK.el("td", { class: "num", text: r.index + 1 }), AK.el("td", { class: "thumb" }, AK.figure(item)),
    AK.el("td", { class: "path", title: r.path, text: r.path }),
    AK.el("td", { class: "num avg" }, AK.el("span", { class: "bar", style: { width: (r.avg * 100).toFixed(0) + "%" } }), AK.el("span", { class: "val", text: r.avg.toFixed(3) })),
    AK.el("td", { class: "confs" }, confs), AK.el("td", { class: "num", text: r.shown }), AK.el("td", { class: "num", text: r.gt }),
    AK.el("td", { class: "num tp", text: r.tp }), AK.el("td", { class: "num fp", text: r.fp }), AK.el("td", { class: "num fn", text: r.fn }));
};
