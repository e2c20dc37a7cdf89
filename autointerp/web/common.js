// Shared helpers. Every piece of data reaches the page through textContent or element properties,
// never through HTML parsing: token text comes from arbitrary corpora.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

export function fmt(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

// Scores loaded from a file were not measured here; the API marks them (storage.reads.score_source.is_imported).
export function isImported(score) {
  return score.imported === true;
}

// Put beside an imported score's value, so it is never read as a measured one; null for a measured score.
export function importedLabel(score) {
  if (!isImported(score)) return null;
  return el("span", { class: "imported", title: "loaded from a file, not measured by this service" },
    "imported");
}

export function featureLink(item) {
  const label = `${item.model} L${item.layer}${item.sae ? " " + item.sae : ""} #${item.index}`;
  return el("a", { href: `/feature?id=${encodeURIComponent(item.feature_id)}` }, label);
}

// Shows invisible characters so a token of spaces or a newline still has something to hover.
function visible(token) {
  return token.replace(/\n/g, "↵").replace(/\t/g, "→") || "∅";
}

// A row of tokens shaded by value / scale; hover (title) shows the exact token and value.
export function heatmap(tokens, values, scale, kind = "real") {
  const row = el("div", { class: `heatmap ${kind}` });
  const top = scale > 0 ? scale : 1;
  tokens.forEach((token, i) => {
    const value = values[i];
    const span = el("span", { class: "tok", title: `${JSON.stringify(token)} = ${fmt(value, 4)}` }, visible(token));
    // "negative": a signed feature's negative side, shaded by how far below zero (scale: |min|).
    const alpha = Math.max(0, Math.min(1, (kind === "negative" ? -value : value) / top));
    const colour = { simulated: "40, 120, 255", negative: "140, 60, 220" }[kind] ?? "255, 120, 0";
    span.style.backgroundColor = `rgba(${colour}, ${alpha})`;
    row.append(span);
  });
  return row;
}

export function setStatus(node, message, isError = false) {
  node.textContent = message;
  node.classList.toggle("error", isError);
}
