// One layer's score distributions: per method, subset and simulator, own scores beside the shuffled baseline.
import { histogram } from "/static/charts.js";
import { el, fmt, getJSON, isImported, setStatus } from "/static/common.js";

const status = document.getElementById("status");
const box = document.getElementById("histograms");

// Panel order (docs/viewer.md): measured scores before imported ones; within each, the headline ev_correlation
// first, then the other simulation methods, their calibrated forms and the example scorers; subsets default
// first. A method not listed comes after those, by name.
const METHOD_ORDER = [
  "ev_correlation", "rsquared", "absolute_dev_explained", "spearman", "mean_record_correlation",
  "rsquared_calibrated", "absolute_dev_explained_calibrated",
  "detection_balanced_accuracy", "detection_auroc", "fuzzing_balanced_accuracy", "fuzzing_auroc", "embedding_auroc",
];
const SUBSET_ORDER = ["top_and_random", "random_only", "random", "neighbours"];

function rank(list, value) {
  const i = list.indexOf(value);
  return i < 0 ? list.length : i;
}

function panelOrder(a, b) {
  return Number(isImported(a)) - Number(isImported(b))
    || rank(METHOD_ORDER, a.method) - rank(METHOD_ORDER, b.method) || a.method.localeCompare(b.method)
    || rank(SUBSET_ORDER, a.subset) - rank(SUBSET_ORDER, b.subset) || a.subset.localeCompare(b.subset)
    || (a.simulator ?? "").localeCompare(b.simulator ?? "");
}

function summary(label, d) {
  const undefinedNote = d.undefined ? `, ${d.undefined} undefined` : "";
  return `${label}: n=${d.n}, mean ${fmt(d.mean)}${undefinedNote}`;
}

function chart(h) {
  const source = isImported(h) ? " · imported" : "";
  const name = `${h.method} · ${h.subset}${h.simulator ? " · " + h.simulator : ""}${source}`;
  return el("div", { class: "chart", dataset: { method: h.method, subset: h.subset } },
    el("h3", {}, name),
    histogram({ edges: h.edges, xLabel: h.method, yLabel: "features", series: [
      { counts: h.own.counts, cls: "own", label: "own" },
      { counts: h.shuffled.counts, cls: "shuffled", label: "shuffled" }] }),
    el("p", { class: "muted legend" }, el("span", { class: "swatch own" }), summary("own", h.own), " · ",
      el("span", { class: "swatch shuffled" }), summary("shuffled", h.shuffled)));
}

async function main() {
  const params = new URLSearchParams(location.search);
  const model = params.get("model");
  const layer = params.get("layer");
  if (!model || !layer || !/^\d+$/.test(layer)) {
    setStatus(status, "Open this page from a feature page or the search page (needs ?model=…&layer=…).", true);
    return;
  }
  const query = new URLSearchParams();
  for (const key of ["kind", "sae", "subset"]) if (params.get(key)) query.set(key, params.get(key));
  document.getElementById("title").textContent = `${model} · layer ${layer}${params.get("sae") ? " · " + params.get("sae") : ""}: score distributions`;
  document.title = `autointerp — ${model} L${layer} scores`;
  try {
    const body = await getJSON(`/api/layers/${encodeURIComponent(model)}/${layer}/score_histograms?${query}`);
    box.replaceChildren(...[...body.histograms].sort(panelOrder).map(chart));
    setStatus(status, body.histograms.length ? "" : "No scores stored for this layer yet.");
  } catch (err) {
    setStatus(status, err.message, true);
  }
}

main();
