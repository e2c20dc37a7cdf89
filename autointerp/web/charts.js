// Histograms as inline SVG built with DOM calls (no library, nothing from a CDN). Colours come from style.css
// classes (the Okabe–Ito palette, told apart with colour-blindness too): the strict CSP allows no inline style
// attributes.
import { fmt } from "/static/common.js";

const SVG = "http://www.w3.org/2000/svg";
const CHAR_W = 6.2; // width of one 10px tick character, to size the margins before the SVG is in the page

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// Swatch and label per series, right-aligned along the top edge.
function legend(series, right, y) {
  const group = svg("g", { class: "chart-legend" });
  let x = right;
  for (const s of [...series].reverse()) {
    x -= s.label.length * CHAR_W + 4;
    group.append(svg("text", { class: "legend-label", x, y: y + 9 }, s.label));
    x -= 14;
    group.append(svg("rect", { class: `swatch ${s.cls}`, x, y: y + 1, width: 10, height: 10 }));
    x -= 10;
  }
  return group;
}

// series: [{ counts, cls, label }] over the same bins (edges has counts.length + 1 values). Several series share
// each bin side by side, so overlapping distributions never blend into a third colour.
// logScale: bar heights by log(1 + count), for densities spanning orders of magnitude.
export function histogram({ edges, series, xLabel, yLabel, logScale = false, width = 440, height = 200 }) {
  const scaleY = (c) => (logScale ? Math.log1p(c) : c);
  const top = Math.max(scaleY(1), ...series.flatMap((s) => s.counts.map(scaleY)));
  const topLabel = String(logScale ? Math.round(Math.expm1(top)) : Math.round(top));
  const legendH = series.length > 1 ? 16 : 0;
  // Left: the rotated y label, then the widest count; right: half of the last x tick, which is centred on the edge.
  const pad = { left: 18 + topLabel.length * CHAR_W + 8, right: 4 * CHAR_W, top: 10 + legendH, bottom: 34 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const x = (v) => pad.left + (hi > lo ? ((v - lo) / (hi - lo)) * plotW : 0);
  const root = svg("svg", { class: "histogram", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  root.append(svg("title", {}, `${series.map((s) => s.label).join(" vs ")} — ${xLabel}`));
  series.forEach((s, k) => {
    const group = svg("g", { class: `bars ${s.cls}`, "data-series": s.label });
    s.counts.forEach((count, i) => {
      if (!count) return;
      const h = (scaleY(count) / top) * plotH;
      const binW = Math.max(series.length, x(edges[i + 1]) - x(edges[i]) - 1);
      const barW = binW / series.length;
      const bar = svg("rect", { x: x(edges[i]) + 0.5 + k * barW, y: pad.top + plotH - h, width: barW, height: h });
      bar.append(svg("title", {}, `${s.label}: ${count} in [${fmt(edges[i], 3)}, ${fmt(edges[i + 1], 3)})`));
      group.append(bar);
    });
    root.append(group);
  });
  const axisY = pad.top + plotH;
  root.append(svg("line", { class: "axis", x1: pad.left, y1: axisY, x2: width - pad.right, y2: axisY }));
  root.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: axisY }));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    root.append(svg("text", { class: "tick x-tick", x: x(v), y: axisY + 13, "text-anchor": "middle" }, fmt(v, 2)));
  }
  if (lo < 0 && hi > 0) root.append(svg("line", { class: "zero", x1: x(0), y1: pad.top, x2: x(0), y2: axisY }));
  root.append(svg("text", { class: "tick y-tick", x: pad.left - 4, y: pad.top + 9, "text-anchor": "end" }, topLabel));
  root.append(svg("text", { class: "tick y-tick", x: pad.left - 4, y: axisY, "text-anchor": "end" }, "0"));
  root.append(svg("text", { class: "axis-label x-label", x: pad.left + plotW / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  const yMid = pad.top + plotH / 2;
  root.append(svg("text", { class: "axis-label y-label", x: 12, y: yMid, "text-anchor": "middle", transform: `rotate(-90 12 ${yMid})` },
    logScale ? `${yLabel} (log scale)` : yLabel));
  if (legendH) root.append(legend(series, width - pad.right, 2));
  return root;
}

// Equal-width bins over `range` ([min, max] of the values unless given; it must contain them). A single value
// sits in the middle of a unit-wide axis rather than at the left end of an invented one.
export function binValues(values, nBins = 30, range = null) {
  const [min, max] = range ?? [Math.min(...values), Math.max(...values)];
  const [lo, hi] = max > min ? [min, max] : [min - 0.5, min + 0.5];
  const width = (hi - lo) / nBins;
  const edges = Array.from({ length: nBins + 1 }, (_, i) => lo + i * width);
  const counts = new Array(nBins).fill(0);
  for (const v of values) counts[Math.min(nBins - 1, Math.floor((v - lo) / width))] += 1;
  return { edges, counts };
}
