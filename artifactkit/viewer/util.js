"use strict";
// Shared helpers and state for the report. Plain browser JS, no build step, no network:
// every script of the report is concatenated into one <script> in this order (render.py).

const AK = {
  data: null,     // the report (runs, dataset, image sizes): JSON from #ak-data
  thumbs: null,   // image key -> data: URI of the thumbnail
  large: null,    // image key -> data: URI of the larger debugger rendition
  views: {},      // tab name -> {title, render(root), shown}
  listeners: [],
  state: {
    run: 0,           // index of the run the debugger and the table show
    epoch: {},        // run index -> selected evaluation epoch (string key)
    threshold: 0.25,  // predictions below this confidence are hidden
    classOff: new Set(),
    showGt: true,
    showPred: true,
    showLabels: false, // class and confidence beside each prediction (always in the enlarged view)
  },
};

AK.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  AK.setAttrs(node, attrs);
  AK.append(node, children);
  return node;
};

AK.svg = function (tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  AK.setAttrs(node, attrs);
  AK.append(node, children);
  return node;
};

AK.setAttrs = function (node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
};

AK.append = function (node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
};

// Class colours: 20 distinguishable hues (Tableau 20 order, darker first).
AK.PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
  "#c7c7c7", "#dbdb8d", "#9edae5"];
AK.RUN_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
AK.classColor = (c) => AK.PALETTE[((c % AK.PALETTE.length) + AK.PALETTE.length) % AK.PALETTE.length];
AK.runColor = (i) => AK.RUN_COLORS[i % AK.RUN_COLORS.length];

AK.names = function () {
  const run = AK.currentRun();
  if (run && run.eval && run.eval.names.length) return run.eval.names;
  return (AK.data.dataset && AK.data.dataset.names) || [];
};
AK.className = (c) => AK.names()[c] || "class " + c;

AK.runsWithEval = () => AK.data.runs.filter((r) => r.eval);
AK.currentRun = () => AK.data.runs[AK.state.run] || null;
AK.evalEpochs = (run) => Object.keys(run.eval.epochs).sort((a, b) => Number(a) - Number(b));
AK.currentEpoch = function () {
  const run = AK.currentRun();
  if (!run || !run.eval) return null;
  const epochs = AK.evalEpochs(run);
  const chosen = AK.state.epoch[AK.state.run];
  return chosen !== undefined && run.eval.epochs[chosen] ? chosen : epochs[epochs.length - 1];
};

AK.fmt = function (v, key) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (key && /bytes/.test(key)) return AK.bytes(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  if (Number.isInteger(v)) return String(v);
  return a >= 100 ? v.toFixed(1) : v.toPrecision(3);
};
AK.bytes = function (n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
};

// One change signal: controls emit what changed, views redraw what depends on it.
AK.on = (fn) => AK.listeners.push(fn);
AK.emit = function (what) {
  for (const fn of AK.listeners) fn(what);
};
// A view's listener: runs now when the view is on screen, else once when it is next shown, so a
// slider move redraws only what a person sees.
AK.onView = function (root, fn) {
  AK.on(function (what) {
    if (!root.hidden) fn(what);
    else (root.akPending = root.akPending || new Set()).add(what);
  });
  root.akFlush = function () {
    const pending = root.akPending;
    root.akPending = null;
    if (pending) for (const what of pending) fn(what);
  };
};

AK.tooltip = function (x, y, content) {
  const tip = document.getElementById("tooltip");
  if (content === null) { tip.hidden = true; return; }
  tip.replaceChildren(content);
  tip.hidden = false;
  const pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = Math.min(x + pad, window.innerWidth - w - 4) + "px";
  tip.style.top = Math.min(y + pad, window.innerHeight - h - 4) + "px";
};

AK.empty = (text) => AK.el("p", { class: "empty" }, text);

AK.readJson = function (id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
};
