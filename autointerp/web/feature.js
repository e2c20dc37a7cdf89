// The feature page: explanations with scores, baseline and provenance, the top records, simulations, then the
// steered and unsteered continuations, evidence (statistics, density, logit lens, weight neighbours).
import { histogram, binValues } from "/static/charts.js";
import { el, fmt, featureLink, getJSON, heatmap, importedLabel, setStatus } from "/static/common.js";
import { renderSteering } from "/static/steering.js";

const status = document.getElementById("status");
const byId = (id) => document.getElementById(id);

function table(headers, rows) {
  return el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
}

function scoreValue(s) {
  if (s.value === null) return el("span", { class: "undefined", title: s.undefined_reason || "" }, `undefined (${s.undefined_reason || "no reason"})`);
  const ci = s.ci_low !== null && s.ci_high !== null ? ` [${fmt(s.ci_low)}, ${fmt(s.ci_high)}]` : "";
  return `${fmt(s.value)}${ci}`;
}

function scoreCell(s) {
  return el("span", {}, scoreValue(s), importedLabel(s));
}

function scoreRows(scores) {
  return scores.map((s) => [s.method, s.subset, scoreCell(s), s.simulator ?? "", s.n_records ?? ""]);
}

const SCORE_HEADERS = ["method", "subset", "value [CI]", "simulator", "records"];

// The shuffled baseline measured the same way (method, subset, simulator, scoring version), to read beside the
// own score: a baseline of another scoring version means something else.
function baselineFor(score, baselines) {
  const match = baselines.find((b) => b.method === score.method && b.subset === score.subset
    && (b.simulator ?? "") === (score.simulator ?? "") && b.scoring_version === score.scoring_version);
  return match ? scoreValue(match) : el("span", { class: "muted" }, "–");
}

function renderTitle(f) {
  document.title = `autointerp — ${f.model} L${f.layer} #${f.index}`;
  const nav = el("nav", { class: "neighbours" });
  if (f.neighbours.prev !== null) nav.append(el("a", { href: `/feature?id=${f.neighbours.prev}`, id: "prev-feature" }, "← previous"), " ");
  if (f.neighbours.next !== null) nav.append(el("a", { href: `/feature?id=${f.neighbours.next}`, id: "next-feature" }, "next →"));
  const layerParams = new URLSearchParams({ model: f.model, layer: f.layer, kind: f.kind });
  if (f.sae) layerParams.set("sae", f.sae);
  nav.append(" ", el("a", { href: `/layer?${layerParams}`, id: "layer-link" }, "layer score distributions"));
  byId("title").replaceChildren(
    el("h1", {}, `${f.model} · layer ${f.layer} · ${f.sae ? f.sae + " · " : ""}${f.kind} ${f.index}`), nav);
}

function renderStats(s) {
  const q = s.quantile_boundaries ? s.quantile_boundaries.map((b) => fmt(b, 2)).join(", ") : "–";
  byId("stats").replaceChildren(table(
    ["max", "min", "mean", "variance", "firing fraction", "tokens", "dead", "quantile boundaries"],
    [[fmt(s.max_activation), fmt(s.min_activation), fmt(s.mean), fmt(s.variance), fmt(s.firing_fraction, 5),
      s.n_tokens ?? "–", s.dead ? "yes" : "no", q]]));
}

// Honest about its source: the random sample's windows are drawn uniformly from the corpus, so their tokens are
// an unbiased (if small) sample of the feature's activations; the top and quantile records are not, so they only
// widen the x-axis (to the feature's whole range) and are never counted in the bars.
function renderDensity(f, allRecords) {
  const box = byId("density");
  const random = f.records.random ?? [];
  const values = random.flatMap((r) => r.activations);
  if (!values.length) {
    box.replaceChildren(el("p", { class: "muted", id: "density-absent" },
      "No random-sample records: the activation density is not shown (top records alone would misrepresent it)."));
    return;
  }
  const known = (v) => v !== null && v !== undefined;
  const everything = [...allRecords.flatMap((r) => r.activations), ...[f.stats.min_activation, f.stats.max_activation].filter(known)];
  const range = [Math.min(...everything), Math.max(...everything)];
  const { edges, counts } = binValues(values, 30, range);
  const ff = f.stats.firing_fraction;
  box.replaceChildren(
    el("div", { class: "chart", id: "density-chart" }, histogram({
      edges, series: [{ counts, cls: "density", label: "tokens" }], xLabel: "activation", yLabel: "tokens", logScale: true })),
    el("p", { class: "muted", id: "density-note" },
      `Bars: all ${values.length} tokens of the ${random.length} random-sample window${random.length === 1 ? "" : "s"} `
      + "(drawn uniformly from the corpus, so an unbiased sample; heights on a log scale), "
      + `reaching ${fmt(Math.min(...values), 2)} to ${fmt(Math.max(...values), 2)}. `
      + `The x-axis spans the feature's whole range, ${fmt(range[0], 2)} to ${fmt(range[1], 2)}, `
      + "from every stored record and the collection statistics: an empty stretch on the right is how far the top "
      + "records lie beyond the random sample."
      + (known(ff) ? ` Firing fraction over all ${f.stats.n_tokens ?? "?"} collected tokens: ${fmt(ff, 5)}.` : "")));
}

function tokenChips(pairs, cls) {
  return el("div", { class: "token-list" }, ...pairs.map(([token, value]) =>
    el("span", { class: `token-chip ${cls}`, title: `${JSON.stringify(token)}: ${fmt(value, 4)}` },
      token.replace(/\n/g, "↵").replace(/\t/g, "→") || "∅")));
}

function renderLogits(logits) {
  const box = byId("logits");
  if (!logits) {
    box.replaceChildren(el("p", { class: "muted", id: "logits-absent" },
      "Not stored for this feature (imported, or collected before evidence was stored: recollect to add it)."));
    return;
  }
  box.replaceChildren(
    el("p", { class: "muted" }, "Tokens whose next-token logits this feature's output direction, read through the "
      + "final norm and the unembedding, raises and lowers most (hover for the logit per unit of activation)."),
    el("h4", {}, "Promoted"), tokenChips(logits.promoted, "promoted"),
    el("h4", {}, "Suppressed"), tokenChips(logits.suppressed, "suppressed"));
}

function renderWeightNeighbours(neighbours) {
  const box = byId("weight-neighbours");
  if (!neighbours) {
    box.replaceChildren(el("p", { class: "muted", id: "weight-neighbours-absent" }, "Not stored for this feature."));
    return;
  }
  box.replaceChildren(
    el("p", { class: "muted" }, "Features of this layer whose output directions (SAE decoder rows, or MLP "
      + "down-projection columns) have the highest cosine similarity with this one."),
    table(["feature", "cosine"], neighbours.map((n) => [
      n.feature_id !== null && n.feature_id !== undefined
        ? el("a", { href: `/feature?id=${encodeURIComponent(n.feature_id)}`, class: "weight-neighbour" }, `#${n.index}`)
        : `#${n.index}`,
      fmt(n.similarity, 3)])));
}

function provenance(e) {
  const parts = [`explainer ${e.explainer}`];
  if (e.prompt_version) parts.push(`prompt ${e.prompt_version}`);
  if (e.run) parts.push(`run ${e.run.id} (${e.run.kind}, ${e.run.status})`);
  if (e.prompt_tokens !== null || e.completion_tokens !== null) parts.push(`tokens ${e.prompt_tokens ?? 0}+${e.completion_tokens ?? 0}`);
  if (e.cost_usd !== null) parts.push(`$${fmt(e.cost_usd, 4)}`);
  if (e.candidate) parts.push(`candidate ${e.candidate}${e.selected ? " (selected)" : ""}`);
  if (e.source) parts.push(`imported from ${e.source}`);
  if (Object.keys(e.params || {}).length) parts.push(`params ${JSON.stringify(e.params)}`);
  return parts.join(" · ");
}

// Both sides of a signed feature: which is larger, and each side's explanation with its best score.
function renderSides(f) {
  const box = byId("sides");
  const sides = Object.entries(f.sides || {});
  if (!sides.some(([side]) => side === "negative") && !f.records.bottom) { box.replaceChildren(); return; }
  const s = f.stats;
  box.replaceChildren(
    el("p", { class: "larger-side" }, `Larger side: ${f.larger_side ?? "unknown"} (max ${fmt(s.max_activation)}, `
      + `min ${fmt(s.min_activation)})`),
    table(["side", "explanation", "ev_correlation (top_and_random)"], ["positive", "negative"].map((side) => {
      const got = f.sides?.[side];
      return [side + (side === f.larger_side ? " (larger)" : ""), got ? got.explanation ?? "" : "not explained",
              got ? fmt(got.score) : "-"];
    })));
}

function renderExplanations(list, baselines) {
  const box = byId("explanations");
  if (!list.length) { box.replaceChildren(el("p", { class: "muted" }, "No explanation yet.")); return; }
  box.replaceChildren(...list.map((e) => el("article", { class: "explanation-card", dataset: { polarity: e.polarity } },
    el("p", { class: "muted side" }, `${e.polarity} side`),
    el("p", { class: e.status === "ok" ? "explanation-text" : "explanation-text failed" },
      e.status === "ok" ? e.text : `failed: ${e.failure_reason}`),
    el("p", { class: "muted" }, provenance(e)),
    e.scores.length ? table([...SCORE_HEADERS, "shuffled baseline"],
                            scoreRows(e.scores).map((cells, i) => [...cells, baselineFor(e.scores[i], baselines)]))
                    : el("p", { class: "muted" }, "Not scored."))));
}

function borrowedFrom(b) {
  const text = b.explanation_text ?? "";
  if (b.explanation_feature_id === null || b.explanation_feature_id === undefined) return text;
  return el("a", { href: `/feature?id=${encodeURIComponent(b.explanation_feature_id)}`, class: "borrowed" }, text || "(feature)");
}

function renderBaselines(list) {
  byId("baselines").replaceChildren(list.length
    ? table([...SCORE_HEADERS, "borrowed explanation"], scoreRows(list).map((cells, i) => [...cells, borrowedFrom(list[i])]))
    : el("p", { class: "muted" }, "No shuffled baseline scored."));
}

function sampleTitle(sample) {
  if (sample === "top") return "Top activating";
  if (sample === "bottom") return "Most negative";
  if (sample === "random") return "Random";
  return `Quantile ${sample.split(":")[1]}`;
}

// Top records (and a signed feature's most negative ones) go to the top of the page, the others further down.
function renderRecords(records, scale, negativeScale) {
  const shade = (sample, r) => sample === "bottom"
    ? heatmap(r.tokens, r.activations, negativeScale, "negative") : heatmap(r.tokens, r.activations, scale, "real");
  const section = ([sample, list]) => el("div", { class: "sample", dataset: { sample } },
    el("h3", {}, `${sampleTitle(sample)} (${list.length})`),
    ...list.map((r) => el("div", { class: "record", dataset: { recordId: r.id } },
      el("div", { class: "record-meta muted" }, `#${r.position} · ${r.data_split} · `
        + (sample === "bottom" ? `min ${fmt(Math.min(...r.activations))}` : `max ${fmt(r.max_activation)}`)
        + (r.corpus ? ` · ${r.corpus}${r.document ? "/" + r.document : ""}` : "")),
      shade(sample, r))));
  const fill = (box, entries, none) => byId(box).replaceChildren(
    ...(entries.length ? entries.map(section) : [el("p", { class: "muted" }, none)]));
  const entries = Object.entries(records);
  const lead = (sample) => sample === "top" || sample === "bottom";
  fill("top-records", entries.filter(([sample]) => lead(sample)), "No top records.");
  fill("records", entries.filter(([sample]) => !lead(sample)), "No quantile or random records.");
}

function renderSimulations(sims, scale, negativeScale) {
  const box = byId("simulations");
  if (!sims.length) { box.replaceChildren(el("p", { class: "muted" }, "No simulation yet.")); return; }
  box.replaceChildren(...sims.map((s) => {
    // A negative explanation's simulation (own or shuffled) covers the bottom records: its side is below zero.
    const negative = s.records.some((r) => r.sample === "bottom");
    const head = el("h3", {}, `${s.simulator} · ${s.role === "own" ? "own explanation" : "shuffled baseline"}`
      + `${negative ? " · negative side" : ""} · simulation ${s.id}`);
    if (s.status !== "ok") return el("div", { class: "simulation" }, head, el("p", { class: "error" }, `failed: ${s.failure_reason}`));
    const simScale = Math.max(0, ...s.records.flatMap((r) => r.expected));
    return el("div", { class: "simulation", dataset: { simulationId: s.id } }, head,
      ...s.records.filter((r) => r.tokens).map((r) => el("div", { class: "pair" },
        el("div", { class: "record-meta muted" }, `${r.sample ?? ""} ${r.data_split ?? ""}`),
        el("div", { class: "pair-label" }, "real"), heatmap(r.tokens, r.real ?? r.tokens.map(() => 0),
          negative ? negativeScale : scale, negative ? "negative" : "real"),
        el("div", { class: "pair-label" }, "simulated"), heatmap(r.tokens, r.expected, simScale, "simulated"))));
  }));
}

async function renderSimilar(id) {
  const box = byId("similar");
  try {
    const { items } = await getJSON(`/api/features/${id}/similar?limit=8`);
    box.replaceChildren(items.length
      ? el("ul", {}, ...items.map((it) => el("li", {}, featureLink(it), ` (${fmt(it.similarity, 2)}) `, el("span", { class: "muted" }, it.explanation ?? ""))))
      : el("p", { class: "muted" }, "None found."));
  } catch (err) {
    box.replaceChildren(el("p", { class: "muted" }, `Unavailable: ${err.message}`));
  }
}

async function main() {
  const id = new URLSearchParams(location.search).get("id");
  if (!id || !/^\d+$/.test(id)) { setStatus(status, "Open a feature from the search page (missing ?id=).", true); return; }
  try {
    const f = await getJSON(`/api/features/${id}`);
    const allRecords = Object.values(f.records).flat();
    const scale = f.stats.max_activation ?? Math.max(0, ...allRecords.flatMap((r) => r.activations));
    const negativeScale = -(f.stats.min_activation ?? Math.min(0, ...allRecords.flatMap((r) => r.activations)));
    renderTitle(f);
    renderSides(f);
    renderExplanations(f.explanations, f.shuffled_baselines);
    renderBaselines(f.shuffled_baselines);
    renderRecords(f.records, scale, negativeScale);
    renderSimulations(f.simulations, scale, negativeScale);
    renderSteering(byId("steering"), f.steering);
    renderStats(f.stats);
    renderDensity(f, allRecords);
    renderLogits(f.evidence?.logits);
    renderWeightNeighbours(f.evidence?.neighbours);
    setStatus(status, "");
    renderSimilar(id);
  } catch (err) {
    setStatus(status, err.message, true);
  }
}

main();
