"use strict";
// The shared controls (run, epoch slider, confidence threshold, ground truth / predictions,
// class toggles) and the bounding-box debugger: the run's fixed 16 images, followed epoch by epoch.

AK.buildControls = function (root) {
  const st = AK.state;
  const evalRuns = AK.data.runs.map((r, i) => [r, i]).filter(([r]) => r.eval);
  const runSelect = evalRuns.length > 1 ? AK.el("select", {
    id: "run-select", "aria-label": "run",
    onchange: (e) => { st.run = Number(e.target.value); syncEpoch(); AK.emit("run"); },
  }, evalRuns.map(([r, i]) => AK.el("option", { value: i, text: "run " + r.id, selected: i === st.run }))) : null;

  const epochSlider = AK.el("input", { id: "epoch-slider", type: "range", min: 0, step: 1, "aria-label": "epoch" });
  const epochLabel = AK.el("output", { id: "epoch-label", for: "epoch-slider" });
  const epochs = () => { const r = AK.currentRun(); return r && r.eval ? AK.evalEpochs(r) : []; };
  const syncEpoch = function () {
    const list = epochs();
    epochSlider.max = Math.max(list.length - 1, 0);
    epochSlider.value = Math.max(list.indexOf(AK.currentEpoch()), 0);
    epochSlider.disabled = list.length < 2;
    epochLabel.textContent = list.length ? "epoch " + AK.currentEpoch() + " (" + (Number(epochSlider.value) + 1) + "/" + list.length + ")" : "no epochs";
  };
  epochSlider.addEventListener("input", () => {
    st.epoch[st.run] = epochs()[Number(epochSlider.value)];
    syncEpoch();
    AK.emit("epoch");
  });
  let timer = null;
  const play = AK.el("button", { class: "icon", title: "play through the epochs", text: "▶", onclick: () => {
    if (timer) { clearInterval(timer); timer = null; play.textContent = "▶"; return; }
    play.textContent = "❚❚";
    timer = setInterval(() => {
      const list = epochs();
      const next = (Number(epochSlider.value) + 1) % Math.max(list.length, 1);
      st.epoch[st.run] = list[next];
      syncEpoch();
      AK.emit("epoch");
    }, 700);
  } });
  syncEpoch();

  const minConf = Math.min(...evalRuns.map(([r]) => r.eval.min_conf || 0), 0.25);
  const conf = AK.el("input", { id: "conf-slider", type: "range", min: Math.max(minConf, 0), max: 1, step: 0.01,
    value: st.threshold, "aria-label": "confidence threshold" });
  const confLabel = AK.el("output", { id: "conf-label", for: "conf-slider", text: "≥ " + st.threshold.toFixed(2) });
  conf.addEventListener("input", () => {
    st.threshold = Number(conf.value);
    confLabel.textContent = "≥ " + st.threshold.toFixed(2);
    AK.emit("threshold");
  });
  const toggle = (id, label, key) => AK.el("label", { class: "check" }, AK.el("input", {
    id: id, type: "checkbox", checked: st[key], onchange: (e) => { st[key] = e.target.checked; AK.emit("boxes"); },
  }), label);

  const evalPart = AK.el("div", { class: "control-row eval-only" },
    runSelect, AK.el("span", { class: "control" }, AK.el("label", { for: "epoch-slider", text: "Epoch" }), play, epochSlider, epochLabel),
    AK.el("span", { class: "control" }, AK.el("label", { for: "conf-slider", text: "Confidence" }), conf, confLabel),
    toggle("show-pred", "predictions", "showPred"), toggle("show-labels", "labels", "showLabels"));
  root.replaceChildren(evalPart, AK.el("div", { class: "control-row" }, toggle("show-gt", "ground truth", "showGt"), AK.classToggles()));
  AK.on((what) => { if (what === "run") syncEpoch(); });
};

AK.evalItem = function (run, i, epoch) {
  const im = run.eval.images[i];
  const row = run.eval.epochs[epoch].rows[i];
  return { key: im.key, w: im.w, h: im.h, gt: im.gt, pred: row ? row[4] : [], title: im.path || im.id,
    row: row, info: row ? "avg conf " + row[0].toFixed(3) + " · TP " + row[1] + " · FP " + row[2] + " · FN " + row[3] +
      " (IoU 0.5, conf ≥ 0.25, as logged)" : "not in this epoch's table" };
};

AK.views.debugger = {
  title: "Bounding-box debugger",
  render: function (root) {
    const draw = function () {
      const run = AK.currentRun();
      if (!run || !run.eval) {
        root.replaceChildren(AK.empty("No evaluation tables in this run (train with --bbox-interval N to log them)."));
        return;
      }
      const epoch = AK.currentEpoch();
      const ids = run.eval.debugger.length ? run.eval.debugger : run.eval.images.slice(0, 16).map((_, i) => i);
      const grid = AK.el("div", { class: "grid debug-grid", id: "debug-grid" });
      for (const i of ids) {
        const item = AK.evalItem(run, i, epoch);
        const fig = AK.figure(item, { large: true, labels: "auto" });
        grid.append(AK.el("div", { class: "card", "data-index": i }, fig, AK.caption(item)));
      }
      const m = run.eval.epochs[epoch].metrics;
      root.replaceChildren(AK.el("p", { class: "muted" }, "Run " + run.id + " · epoch " + epoch + " · " + ids.length +
        " images fixed for the whole run · mAP50 " + AK.fmt(m["metrics/mAP50"]) + " · mAP50-95 " + AK.fmt(m["metrics/mAP50-95"]) +
        " · dashed: ground truth, solid: predictions. Click an image to enlarge it with labels."), grid);
    };
    draw();
    AK.onView(root, function (what) {
      if (what === "run" || what === "epoch") draw();
      else { AK.redrawAll(root); root.querySelectorAll(".card").forEach(AK.updateCaption); }
    });
  },
};

AK.caption = function (item) {
  const cap = AK.el("div", { class: "caption" });
  cap.akItem = item;
  AK.fillCaption(cap);
  return cap;
};
AK.fillCaption = function (cap) {
  const item = cap.akItem;
  const shown = (item.pred || []).filter((p) => p[5] >= AK.state.threshold && !AK.state.classOff.has(p[0])).length;
  const r = item.row;
  cap.replaceChildren(AK.el("span", { class: "path", title: item.title, text: item.title }),
    AK.el("span", { class: "counts" }, r ? [AK.el("b", { class: "tp", text: "TP " + r[1] }), " ", AK.el("b", { class: "fp", text: "FP " + r[2] }),
      " ", AK.el("b", { class: "fn", text: "FN " + r[3] }), " · ", AK.el("span", { class: "shown", text: shown + " shown" })] : "—"));
};
AK.updateCaption = (card) => { const cap = card.querySelector(".caption"); if (cap && cap.akItem) AK.fillCaption(cap); };
