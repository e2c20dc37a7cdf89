// Histograms as inline SVG built with DOM calls (no library, nothing from a CDN). Colours come from style.css
// classes: the strict CSP allows no inline style attributes.
import { fmt } from "/static/common.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// series: [{ counts, cls, label }] drawn over the same bins (edges has counts.length + 1 values).
// logScale: bar heights by log(1 + count), for densities spanning orders of magnitude.
export function histogram({ edges, series, xLabel, logScale = false, width = 420, height = 180 }) {
  const pad = { left: 40, right: 10, top: 10, bottom: 34 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const scaleY = (c) => (logScale ? Math.log1p(c) : c);
  const top = Math.max(scaleY(1), ...series.flatMap((s) => s.counts.map(scaleY)));
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const x = (v) => pad.left + (hi > lo ? ((v - lo) / (hi - lo)) * plotW : 0);
  const root = svg("svg", { class: "histogram", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  root.append(svg("title", {}, `${series.map((s) => s.label).join(" vs ")} — ${xLabel}`));
  for (const s of series) {
    const group = svg("g", { class: `bars ${s.cls}`, "data-series": s.label });
    s.counts.forEach((count, i) => {
      if (!count) return;
      const h = (scaleY(count) / top) * plotH;
      const bar = svg("rect", { x: x(edges[i]) + 0.5, y: pad.top + plotH - h, width: Math.max(1, x(edges[i + 1]) - x(edges[i]) - 1),
                                height: h });
      bar.append(svg("title", {}, `${s.label}: ${count} in [${fmt(edges[i], 3)}, ${fmt(edges[i + 1], 3)})`));
      group.append(bar);
    });
    root.append(group);
  }
  const axisY = pad.top + plotH;
  root.append(svg("line", { class: "axis", x1: pad.left, y1: axisY, x2: width - pad.right, y2: axisY }));
  root.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: axisY }));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    root.append(svg("text", { class: "tick", x: x(v), y: axisY + 13, "text-anchor": "middle" }, fmt(v, 2)));
  }
  if (lo < 0 && hi > 0) root.append(svg("line", { class: "zero", x1: x(0), y1: pad.top, x2: x(0), y2: axisY }));
  const topLabel = logScale ? `${Math.round(Math.expm1(top))} (log)` : String(Math.round(top));
  root.append(svg("text", { class: "tick", x: pad.left - 4, y: pad.top + 9, "text-anchor": "end" }, topLabel));
  root.append(svg("text", { class: "tick", x: pad.left - 4, y: axisY, "text-anchor": "end" }, "0"));
  root.append(svg("text", { class: "axis-label", x: pad.left + plotW / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  return root;
}

// Equal-width bins over [min, max] of the values.
export function binValues(values, nBins = 30) {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const width = hi > lo ? (hi - lo) / nBins : 1;
  const edges = Array.from({ length: nBins + 1 }, (_, i) => lo + i * width);
  const counts = new Array(nBins).fill(0);
  for (const v of values) counts[Math.min(nBins - 1, Math.floor((v - lo) / width))] += 1;
  return { edges, counts };
}
