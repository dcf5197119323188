// Small SVG charts. Each chart is an image with a text summary for screen readers, and the
// same figures as a table under a disclosure, so nothing is shown by colour alone. Colours
// are SVG attributes and CSS classes: the page's Content-Security-Policy allows no inline style.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1a7f37", "#b42318", "#57606a", "#0b5cad", "#9a6700", "#8250df", "#bf3989"];

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/**
 * Vertical bars, one per category, stacked by series.
 * series: [{ name, values: [number per category] }]
 */
export function stackedBars({ title, categories, series, unit = "" }) {
  const width = 480, height = 220, left = 40, bottom = 30, top = 10;
  const totals = categories.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const plotH = height - top - bottom;
  const slot = (width - left) / Math.max(categories.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  chart.append(svg("title", {}, title));
  for (const tick of [0, 0.5, 1]) {
    const y = top + plotH * (1 - tick);
    chart.append(svg("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#d0d7de" }));
    chart.append(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end" }, `${+(max * tick).toFixed(2)}`));
  }
  categories.forEach((category, i) => {
    let y = top + plotH;
    series.forEach((s, k) => {
      const value = s.values[i] || 0;
      if (!value) return;
      const barH = (value / max) * plotH;
      y -= barH;
      const rect = svg("rect", {
        x: left + i * slot + slot * 0.15, y, width: slot * 0.7, height: barH, fill: PALETTE[k % PALETTE.length],
      });
      rect.append(svg("title", {}, `${category}: ${s.name} ${value}${unit}`));
      chart.append(rect);
    });
    const every = Math.ceil(categories.length / 10);
    if (i % every === 0) {
      chart.append(svg("text", { x: left + i * slot + slot / 2, y: height - bottom + 14, "text-anchor": "middle" }, category));
    }
  });
  return figure(title, chart, series.length > 1 ? legend(series) : null,
    table(title, ["", ...series.map((s) => s.name)], categories.map((c, i) => [c, ...series.map((s) => s.values[i] || 0)])));
}

/** Horizontal bars: rows of [label, value]. */
export function horizontalBars({ title, rows, unit = "" }) {
  const width = 480, rowH = 26, left = 170, right = 70;
  const height = Math.max(rows.length, 1) * rowH + 10;
  const max = niceMax(Math.max(0, ...rows.map((r) => r[1])));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  chart.append(svg("title", {}, title));
  rows.forEach(([label, value], i) => {
    const y = 5 + i * rowH;
    chart.append(svg("text", { x: left - 6, y: y + rowH * 0.65, "text-anchor": "end" }, label));
    const barW = (value / max) * (width - left - right);
    const rect = svg("rect", { x: left, y: y + 3, width: barW, height: rowH - 6, fill: PALETTE[3] });
    rect.append(svg("title", {}, `${label}: ${value}${unit}`));
    chart.append(rect);
    chart.append(svg("text", { x: left + barW + 4, y: y + rowH * 0.65 }, `${value}${unit}`));
  });
  return figure(title, chart, null, table(title, ["", title], rows));
}

function legend(series) {
  return h("ul", { class: "legend", "aria-hidden": "true" },
    series.map((s, k) => h("li", {}, h("span", { class: `swatch-${k % PALETTE.length}` }), s.name)));
}

function table(title, columns, rows) {
  return h("details", {},
    h("summary", {}, `${title}: as a table`),
    h("div", { class: "table-wrap" },
      h("table", {},
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell, i) => (i === 0 ? h("th", { scope: "row" }, cell) : h("td", {}, cell)))))))));
}

function figure(title, chart, extra, data) {
  return h("figure", { class: "panel" }, h("figcaption", {}, h("h2", {}, title)), chart, extra, data);
}
