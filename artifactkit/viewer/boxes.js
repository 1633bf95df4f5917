"use strict";
// An image with its boxes: the embedded picture under an SVG whose viewBox is the original
// image's pixel grid, so boxes are drawn in the coordinates the tables store them in, at any size.

// item: {key, w, h, gt: [[cls,x1,y1,x2,y2]], pred: [[cls,x1,y1,x2,y2,conf]], title}
AK.figure = function (item, opts) {
  opts = opts || {};
  const w = item.w || (AK.data.sizes[item.key] || [1, 1])[0];
  const h = item.h || (AK.data.sizes[item.key] || [1, 1])[1];
  const src = (opts.large && AK.large[item.key]) || AK.thumbs[item.key];
  const fig = AK.el("div", { class: "figure" + (src ? "" : " missing"), style: { aspectRatio: w + " / " + h } });
  if (src) fig.append(AK.el("img", { src: src, alt: item.title || "", decoding: "async", draggable: "false" }));
  else fig.append(AK.el("span", { class: "missing-text", text: "image not in report" }));
  const svg = AK.svg("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", class: "boxes" });
  fig.append(svg);
  fig.akItem = item;
  fig.akSvg = svg;
  fig.akOpts = { labels: opts.labels || false, w: w, h: h };
  AK.drawBoxes(fig);
  if (!opts.noZoom) fig.addEventListener("click", () => AK.lightbox(item));
  return fig;
};

// Redraw a figure's boxes from the shared state (threshold, classes, gt/pred toggles).
AK.drawBoxes = function (fig) {
  const item = fig.akItem, o = fig.akOpts, st = AK.state;
  const fontSize = Math.max(o.w, o.h) / 34;
  const nodes = [];
  if (st.showGt) {
    for (const b of item.gt || []) {
      if (st.classOff.has(b[0])) continue;
      nodes.push(AK.svg("rect", {
        class: "gt", "data-cls": b[0], x: b[1], y: b[2], width: Math.max(b[3] - b[1], 0), height: Math.max(b[4] - b[2], 0),
        stroke: AK.classColor(b[0]),
      }));
    }
  }
  if (st.showPred) {
    for (const b of item.pred || []) {
      if (b[5] < st.threshold || st.classOff.has(b[0])) continue;
      const color = AK.classColor(b[0]);
      nodes.push(AK.svg("rect", {
        class: "pred", "data-cls": b[0], "data-conf": b[5], x: b[1], y: b[2],
        width: Math.max(b[3] - b[1], 0), height: Math.max(b[4] - b[2], 0), stroke: color,
      }));
      if (o.labels === true || (o.labels === "auto" && st.showLabels)) nodes.push(AK.label(b, color, fontSize));
    }
  }
  fig.akSvg.replaceChildren(...nodes);
};

AK.label = function (b, color, size) {
  const text = AK.className(b[0]) + " " + b[5].toFixed(2);
  const y = b[2] > size ? b[2] - size * 0.25 : b[4] + size;
  return AK.svg("text", { class: "box-label", x: b[1], y: y, "font-size": size, fill: color }, text);
};

AK.redrawAll = function (root) {
  for (const fig of root.querySelectorAll(".figure")) if (fig.akItem) AK.drawBoxes(fig);
};

AK.lightbox = function (item) {
  const box = document.getElementById("lightbox");
  const close = () => { box.hidden = true; box.replaceChildren(); document.removeEventListener("keydown", onKey); };
  const onKey = (e) => { if (e.key === "Escape") close(); };
  const fig = AK.figure(item, { large: true, labels: true, noZoom: true });
  const counts = item.info ? AK.el("p", { class: "muted" }, item.info) : null;
  box.replaceChildren(AK.el("div", { class: "lightbox-inner", onclick: (e) => e.stopPropagation() },
    AK.el("div", { class: "lightbox-head" }, AK.el("strong", { text: item.title || "" }),
      AK.el("button", { class: "close", title: "Close (Esc)", onclick: close, text: "×" })),
    fig, counts));
  box.onclick = close;
  box.hidden = false;
  document.addEventListener("keydown", onKey);
  AK.lightboxFig = fig;
};

// Class toggles: a chip per class; clicking hides or shows that class's boxes everywhere.
AK.classToggles = function () {
  const wrap = AK.el("div", { class: "class-toggles", role: "group", "aria-label": "classes" });
  const draw = () => {
    wrap.replaceChildren(...AK.names().map((name, c) => AK.el("button", {
      class: "chip" + (AK.state.classOff.has(c) ? " off" : ""), "data-cls": c, "aria-pressed": String(!AK.state.classOff.has(c)),
      title: "show/hide " + name, onclick: () => {
        if (AK.state.classOff.has(c)) AK.state.classOff.delete(c); else AK.state.classOff.add(c);
        draw();
        AK.emit("classes");
      },
    }, AK.el("span", { class: "swatch", style: { background: AK.classColor(c) } }), name)),
    AK.el("button", { class: "link", text: "all", onclick: () => { AK.state.classOff.clear(); draw(); AK.emit("classes"); } }),
    AK.el("button", { class: "link", text: "none", onclick: () => { AK.names().forEach((_, c) => AK.state.classOff.add(c)); draw(); AK.emit("classes"); } }));
  };
  draw();
  AK.on((what) => { if (what === "run") draw(); });
  return wrap;
};
