// One layer's score distributions: per method, subset and simulator, own scores overlaid on the shuffled baseline.
import { histogram } from "/static/charts.js";
import { el, fmt, getJSON, setStatus } from "/static/common.js";

const status = document.getElementById("status");
const box = document.getElementById("histograms");

function summary(label, d) {
  const undefinedNote = d.undefined ? `, ${d.undefined} undefined` : "";
  return `${label}: n=${d.n}, mean ${fmt(d.mean)}${undefinedNote}`;
}

function chart(h) {
  const name = `${h.method} · ${h.subset}${h.simulator ? " · " + h.simulator : ""}`;
  return el("div", { class: "chart", dataset: { method: h.method, subset: h.subset } },
    el("h3", {}, name),
    histogram({ edges: h.edges, xLabel: h.method, series: [
      { counts: h.shuffled.counts, cls: "shuffled", label: "shuffled" },
      { counts: h.own.counts, cls: "own", label: "own" }] }),
    el("p", { class: "muted legend" }, el("span", { class: "own" }, summary("own", h.own)), " · ",
      el("span", { class: "shuffled" }, summary("shuffled", h.shuffled))));
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
    box.replaceChildren(...body.histograms.map(chart));
    setStatus(status, body.histograms.length ? "" : "No scores stored for this layer yet.");
  } catch (err) {
    setStatus(status, err.message, true);
  }
}

main();
