"use strict";
// Start-up: read the embedded data, build the tabs, render the first view, and mark the page
// ready (html[data-ready], window.akReady = ms since navigation start) for tests and benchmarks.
// Views render on first visit, so opening a large report costs only what its first tab shows.

AK.TABS = [
  ["metrics", (d) => d.runs.length > 0],
  ["debugger", (d) => d.runs.length > 0],
  ["curves", (d) => d.runs.some((r) => r.eval)],
  ["table", (d) => d.runs.length > 0],
  ["dataset", (d) => !!d.dataset],
];

AK.show = function (name) {
  const views = document.getElementById("views");
  for (const btn of document.querySelectorAll("#tabs button")) {
    btn.setAttribute("aria-selected", String(btn.dataset.tab === name));
  }
  for (const sec of views.querySelectorAll("section.view")) sec.hidden = sec.dataset.tab !== name;
  const view = AK.views[name];
  const root = views.querySelector('section.view[data-tab="' + name + '"]');
  if (!view.shown) { view.shown = true; view.render(root); } else if (root.akFlush) root.akFlush();
  const controls = document.getElementById("controls");
  controls.hidden = name === "metrics";
  controls.classList.toggle("classes-only", name === "dataset");
  if (!controls.hidden && !controls.firstChild) AK.buildControls(controls);
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
};

AK.header = function () {
  const d = AK.data;
  document.getElementById("title").textContent = d.title;
  const parts = ["generated " + d.generated.slice(0, 19).replace("T", " ")];
  if (d.runs.length) parts.push(d.runs.length + (d.runs.length > 1 ? " runs" : " run"));
  if (d.dataset) parts.push("dataset " + d.dataset.ref);
  const meta = document.getElementById("meta");
  meta.replaceChildren(parts.join(" · "));
  if (d.warnings.length) {
    meta.append(AK.el("details", { class: "warnings" }, AK.el("summary", { text: d.warnings.length + " images could not be embedded" }),
      AK.el("ul", null, d.warnings.slice(0, 50).map((w) => AK.el("li", { text: w })))));
  }
};

AK.boot = function () {
  AK.data = AK.readJson("ak-data");
  AK.thumbs = AK.readJson("ak-thumbs");
  AK.large = AK.readJson("ak-large");
  const first = AK.data.runs.findIndex((r) => r.eval);
  AK.state.run = first < 0 ? 0 : first;
  AK.header();
  const tabs = AK.TABS.filter(([, has]) => has(AK.data)).map(([name]) => name);
  const nav = document.getElementById("tabs");
  const views = document.getElementById("views");
  views.replaceChildren();
  for (const name of tabs) {
    nav.append(AK.el("button", { role: "tab", "data-tab": name, id: "tab-" + name, text: AK.views[name].title, onclick: () => AK.show(name) }));
    views.append(AK.el("section", { class: "view", "data-tab": name, id: "view-" + name, role: "tabpanel", hidden: true }));
  }
  // The controls stick under the header, whose height depends on how its parts wrap.
  const header = document.getElementById("top");
  const place = () => document.documentElement.style.setProperty("--header-h", header.offsetHeight + "px");
  new ResizeObserver(place).observe(header);
  const wanted = location.hash.slice(1);
  AK.show(tabs.includes(wanted) ? wanted : tabs[0]);
  requestAnimationFrame(function () {
    window.akReady = performance.now();
    document.documentElement.setAttribute("data-ready", "1");
  });
};

try {
  AK.boot();
} catch (e) {
  // A broken report says so on the page instead of staying blank.
  document.getElementById("views").replaceChildren(AK.el("pre", { class: "error", text: "This report could not be shown: " + e }));
  document.documentElement.setAttribute("data-error", String(e));
  throw e;
}
