// The search page: filters live in the URL, so a result list can be shared or reloaded.
import { el, fmt, featureLink, getJSON, setStatus } from "/static/common.js";

const PAGE = 50;
const FIELDS = ["model", "layer", "min_score", "method", "subset", "q", "semantic"];
const form = document.getElementById("filters");
const tbody = document.querySelector("#results tbody");
const status = document.getElementById("status");
const prev = document.getElementById("prev");
const next = document.getElementById("next");
let offset = 0;

function currentParams() {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value !== "") params.set(name, value);
  }
  return params;
}

function fillForm(params) {
  for (const name of FIELDS) {
    if (params.has(name)) form.elements[name].value = params.get(name);
  }
  offset = Number(params.get("offset") || 0);
}

async function loadModels(selected) {
  const models = await getJSON("/api/models");
  const select = form.elements.model;
  for (const m of models) select.append(el("option", { value: m.model }, m.model));
  if (selected) select.value = selected;
}

function row(item) {
  return el("tr", { class: "result" },
    el("td", { class: "num score" }, fmt(item.score)),
    el("td", { class: "num" }, item.similarity === undefined ? "" : fmt(item.similarity)),
    el("td", {}, featureLink(item)),
    el("td", { class: "explanation" }, item.explanation ?? "(no explanation yet)"),
    el("td", { class: "muted" }, item.explainer ?? ""),
  );
}

// With a model and a layer chosen, the layer's score distributions are one click away.
function layerLink(params) {
  const box = document.getElementById("layer-link");
  if (!params.get("model") || !params.get("layer")) { box.replaceChildren(); return; }
  const target = new URLSearchParams({ model: params.get("model"), layer: params.get("layer") });
  box.replaceChildren(el("a", { href: `/layer?${target}`, id: "layer-scores" }, "Score distributions of this layer →"));
}

async function search() {
  const params = currentParams();
  params.set("limit", PAGE);
  params.set("offset", offset);
  history.replaceState(null, "", `/?${params}`);
  setStatus(status, "Loading…");
  try {
    const page = await getJSON(`/api/features?${params}`);
    tbody.replaceChildren(...page.items.map(row));
    const shown = page.items.length ? `${offset + 1}–${offset + page.items.length}` : "none";
    setStatus(status, `Features ${shown}, sorted by ${page.order}.`);
    layerLink(params);
    prev.disabled = offset === 0;
    next.disabled = !page.has_more;
  } catch (err) {
    tbody.replaceChildren();
    setStatus(status, err.message, true);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  offset = 0;
  search();
});
prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); search(); });
next.addEventListener("click", () => { offset += PAGE; search(); });

const initial = new URLSearchParams(location.search);
fillForm(initial);
loadModels(initial.get("model")).catch((err) => setStatus(status, err.message, true)).finally(search);
