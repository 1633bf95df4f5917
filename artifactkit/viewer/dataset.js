"use strict";
// The dataset browser: a dataset version's images grouped by the classes their labels hold,
// with a split filter and per-class counts. Groups fill in when opened, a page at a time.

const DATASET_PAGE = 60;

// YOLO labels are normalised centre/size: to the image's pixel grid, as the tables store boxes.
AK.datasetItem = function (it) {
  const size = AK.data.sizes[it.key] || [1, 1];
  const [w, h] = size;
  const gt = it.boxes.map((b) => [b[0], (b[1] - b[3] / 2) * w, (b[2] - b[4] / 2) * h, (b[1] + b[3] / 2) * w, (b[2] + b[4] / 2) * h]);
  return { key: it.key, w: w, h: h, gt: gt, pred: [], title: it.path,
    info: it.split + " · " + it.boxes.length + " labelled boxes" };
};

AK.views.dataset = {
  title: "Dataset",
  render: function (root) {
    const ds = AK.data.dataset;
    if (!ds) { root.replaceChildren(AK.empty("No dataset in this report.")); return; }
    const splits = [...new Set(ds.items.map((it) => it.split))];
    let split = "";
    const select = AK.el("select", { id: "split-filter", "aria-label": "split",
      onchange: (e) => { split = e.target.value; draw(); } },
    AK.el("option", { value: "", text: "all splits" }), splits.map((s) => AK.el("option", { value: s, text: s })));
    const body = AK.el("div");
    const shown = ds.items.length < ds.total ? " (showing " + ds.items.length + ")" : "";
    root.replaceChildren(AK.el("div", { class: "control-row" }, AK.el("span", { class: "muted" },
      "Dataset " + ds.ref + " in " + ds.uri + " · " + ds.total + " images" + shown + ", " + ds.labelled + " with label files · "),
    select), body);

    const draw = function () {
      const items = ds.items.filter((it) => !split || it.split === split);
      const groups = ds.names.map(() => ({ images: [], boxes: 0 }));
      const background = [];
      for (const it of items) {
        const seen = new Set();
        for (const b of it.boxes) {
          if (!groups[b[0]]) continue;
          groups[b[0]].boxes++;
          if (!seen.has(b[0])) { seen.add(b[0]); groups[b[0]].images.push(it); }
        }
        if (!it.boxes.length) background.push(it);
      }
      const sections = groups.map((g, c) => g.images.length ? AK.datasetGroup(AK.className(c), c, g.images, g.boxes) : null);
      if (background.length) sections.push(AK.datasetGroup("no labels (background)", null, background, 0));
      body.replaceChildren(AK.classHistogram(groups, items.length), AK.el("div", { id: "dataset-groups" }, sections));
      const first = body.querySelector("details.group");
      if (first) first.open = true;  // one group filled in, so the browser shows pictures at once
    };
    draw();
    AK.onView(root, (what) => { if (what === "classes" || what === "boxes") AK.redrawAll(body); });
  },
};

AK.datasetGroup = function (name, cls, images, boxes) {
  let filled = 0;
  const grid = AK.el("div", { class: "grid thumbs" });
  const more = AK.el("button", { class: "more", onclick: () => fill() });
  const fill = function () {
    const next = images.slice(filled, filled + DATASET_PAGE);
    grid.append(...next.map((it) => AK.el("div", { class: "card small" }, AK.figure(AK.datasetItem(it)),
      AK.el("div", { class: "caption" }, AK.el("span", { class: "path", title: it.path, text: it.path })))));
    filled += next.length;
    more.hidden = filled >= images.length;
    more.textContent = "show " + Math.min(DATASET_PAGE, images.length - filled) + " more of " + (images.length - filled);
  };
  const details = AK.el("details", { class: "group", "data-cls": cls === null ? "" : cls },
    AK.el("summary", null, cls === null ? null : AK.el("span", { class: "swatch", style: { background: AK.classColor(cls) } }),
      AK.el("strong", { text: name }), AK.el("span", { class: "muted", text: " · " + images.length + " images" + (boxes ? " · " + boxes + " boxes" : "") })),
    grid, more);
  details.addEventListener("toggle", () => { if (details.open && !filled) fill(); });
  return details;
};

// Instances per class as horizontal bars: the imbalance a person wants to see first.
AK.classHistogram = function (groups, nImages) {
  const max = Math.max(1, ...groups.map((g) => g.boxes));
  const rows = groups.map((g, c) => AK.el("div", { class: "hist-row" },
    AK.el("span", { class: "hist-name", text: AK.className(c) }),
    AK.el("span", { class: "hist-bar-wrap" }, AK.el("span", { class: "hist-bar", style: { width: (100 * g.boxes / max).toFixed(1) + "%", background: AK.classColor(c) } })),
    AK.el("span", { class: "hist-num", text: g.boxes + " boxes · " + g.images.length + " images" })));
  return AK.el("div", { class: "panel" }, AK.el("h3", { text: "Classes in " + nImages + " images" }), AK.el("div", { class: "hist" }, rows));
};
