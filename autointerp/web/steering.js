// The feature page's steering section: per steering configuration, the strength and the KL it was made at, and
// per neutral prompt the steered continuation beside the unsteered ones (docs/steering.md).
import { el, fmt } from "/static/common.js";

// Strengths span orders of magnitude (a neuron's 0.2 to a residual direction's 1000): four significant digits.
const sig = (v) => (v === null || v === undefined ? "–" : String(Number(v.toPrecision(4))));

function runHead(run) {
  const c = run.config ?? {};
  const made = run.status === "ok"
    ? `strength ${sig(run.strength)} · KL ${fmt(run.kl, 3)} (target ${fmt(run.target_kl, 3)})`
    : `target KL ${fmt(run.target_kl, 3)}`;
  return el("h3", {}, `${made} · ${c.tokens ?? "?"} tokens · temperature ${c.temperature ?? "?"} · ${c.prompts_version ?? ""}`);
}

function continuations(run) {
  return el("table", { class: "grid steering" },
    el("thead", {}, el("tr", {}, el("th", {}, "prompt"), el("th", {}, "steered"), el("th", {}, "unsteered"))),
    el("tbody", {}, ...run.prompts.map((p) => el("tr", {},
      el("td", { class: "prompt" }, p.prompt),
      el("td", { class: "steered" }, p.steered),
      el("td", { class: "unsteered" }, ...p.unsteered.map((u) => el("div", {}, u)))))));
}

export function renderSteering(box, runs) {
  if (!runs || !runs.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Not steered (autointerp steer, or --scorer steering)."));
    return;
  }
  box.replaceChildren(...runs.map((run) => el("div", { class: "steering-run", dataset: { status: run.status } },
    runHead(run),
    run.status === "ok" ? continuations(run) : el("p", { class: "error" }, `failed: ${run.failure_reason}`))));
}
