"use strict";
// Each run's lineage, under the run table: what it used (the dataset version, the weights it was
// fine-tuned from) and what it made (checkpoint versions with their aliases, evaluation tables).

AK.lineage = function (runs) {
  const shown = runs.filter((r) => r.lineage);
  if (!shown.length) return null;
  const item = (n) => AK.el("span", { class: "lineage-item" + (n.missing ? " missing" : ""), "data-id": n.id,
    title: n.missing ? n.label + ": " + n.missing : (n.store ? "in " + n.store : n.id) },
    n.label, (n.aliases || []).length ? AK.el("span", { class: "aliases", text: " " + n.aliases.join(", ") }) : null,
    n.missing ? " (" + n.missing + ")" : null);
  const group = (title, nodes) => nodes.length ? AK.el("div", { class: "lineage-group" },
    AK.el("span", { class: "lineage-title", text: title }), nodes.map(item)) : null;
  return AK.el("div", { class: "lineage" }, shown.map(function (r) {
    const inputs = r.lineage.inputs, outputs = r.lineage.outputs;
    const by = (list, rel) => list.filter((n) => n.relation === rel);
    return AK.el("div", { class: "lineage-run", "data-run": r.id },
      AK.el("strong", { text: "run " + r.id }),
      group("dataset", by(inputs, "dataset")), group("fine-tuned from", by(inputs, "weights")),
      group("checkpoints", by(outputs, "checkpoint")), group("evaluation tables", by(outputs, "evaluation")));
  }));
};
