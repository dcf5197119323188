// The inference router's and the multi-model endpoint's figures, each from its own
// Prometheus endpoint through the API, read every 5 s. Requests per second come from two
// readings; a panel whose URL is not configured says so instead of guessing.

import { api } from "./api.js";
import { clear, h } from "./dom.js";
import { stackedBars } from "./charts.js";

const EVERY_MS = 5000;

function bytes(n) {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function perSecond(panel, previous) {
  return previous && panel.read_at > previous.read_at
    ? Math.max(0, (panel.requests_total - previous.requests_total) / (panel.read_at - previous.read_at)).toFixed(1)
    : "measuring…";
}

function dataTable(caption, columns, rows) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell, i) => (i === 0 ? h("th", { scope: "row" }, cell) : h("td", {}, cell))))))));
}

function endpointFigures(panel, rate) {
  const lookups = Object.values(panel.lookups).reduce((a, b) => a + b, 0);
  const hit = panel.hit_rate === null ? "no lookups yet" : `${(panel.hit_rate * 100).toFixed(1)} %`;
  const coldLoads = panel.cold_loads.reduce((sum, load) => sum + load.count, 0);
  return [
    h("div", { class: "grid" },
      h("section", { class: "panel" }, h("h3", {}, "Requests per second"), h("p", { class: "figure" }, rate)),
      h("section", { class: "panel" }, h("h3", {}, "Latency"), h("p", { class: "figure" }, `p50 ${ms(panel.latency_p50_s)} · p99 ${ms(panel.latency_p99_s)}`)),
      h("section", { class: "panel" }, h("h3", {}, "Cache hit rate"), h("p", { class: "figure", id: "endpoint-hit-rate" }, hit),
        h("p", { class: "note" }, `${panel.lookups.memory || 0} of ${lookups} lookups found the model in memory`)),
      h("section", { class: "panel" }, h("h3", {}, "Cold loads"), h("p", { class: "figure" }, coldLoads),
        h("p", { class: "note" }, `${panel.load_failures_total} failed`))),
    panel.cold_loads.length
      ? dataTable("Cold loads by source", ["Source", "Loads", "p50", "p99"],
        panel.cold_loads.map((load) => [load.source, load.count, ms(load.p50_s), ms(load.p99_s)]))
      : h("p", { class: "note" }, "No cold loads yet."),
    panel.tiers.length
      ? dataTable("What each tier holds", ["Tier", "Models", "Size", "Evictions"],
        panel.tiers.map((tier) => [tier.tier, tier.models, bytes(tier.bytes), tier.evictions]))
      : h("p", { class: "note" }, "No tier reported yet."),
  ];
}

function ms(seconds) { return seconds === null || seconds === undefined ? "–" : `${(seconds * 1000).toFixed(1)} ms`; }

export function inferenceView(main, _params, signal) {
  const router = h("div", { "aria-live": "polite" }, h("p", {}, "Reading the router's metrics…"));
  const endpoint = h("div", { "aria-live": "polite" }, h("p", {}, "Reading the endpoint's metrics…"));
  clear(main).append(h("h1", {}, "Inference"),
    h("section", { "aria-labelledby": "router-h" }, h("h2", { id: "router-h" }, "Router"), router),
    h("section", { "aria-labelledby": "endpoint-h", id: "endpoint-panel" }, h("h2", { id: "endpoint-h" }, "Multi-model endpoint"), endpoint));

  let previous = null;
  let previousEndpoint = null;
  async function readEndpoint() {
    try {
      const panel = await api("/v1/inference/endpoint", { signal });
      if (!panel.configured) {
        endpoint.replaceChildren(h("p", { class: "note" }, "No endpoint metrics URL is configured: set STOKER_DASHBOARD_ENDPOINT_METRICS_URL to the endpoint's /metrics."));
        return;
      }
      const rate = perSecond(panel, previousEndpoint);
      previousEndpoint = panel;
      endpoint.replaceChildren(...endpointFigures(panel, rate));
    } catch (err) {
      if (!signal.aborted) endpoint.replaceChildren(h("p", { class: "error" }, `Could not read the endpoint's metrics: ${err.message}`));
    }
  }
  async function readRouter() {
    try {
      const panel = await api("/v1/inference/router", { signal });
      if (!panel.configured) {
        router.replaceChildren(h("p", { class: "note" }, "No router metrics URL is configured: set STOKER_DASHBOARD_ROUTER_METRICS_URL to the router's /metrics."));
        return;
      }
      const rate = perSecond(panel, previous);
      previous = panel;
      router.replaceChildren(
        h("div", { class: "grid" },
          h("section", { class: "panel" }, h("h3", {}, "Requests per second"), h("p", { class: "figure" }, rate)),
          h("section", { class: "panel" }, h("h3", {}, "Latency"), h("p", { class: "figure" }, `p50 ${ms(panel.latency_p50_s)} · p99 ${ms(panel.latency_p99_s)}`)),
          h("section", { class: "panel" }, h("h3", {}, "Queue depth"),
            Object.keys(panel.queue_depth).length
              ? h("dl", { class: "facts" }, Object.entries(panel.queue_depth).flatMap(([model, depth]) => [h("dt", {}, model || "(all)"), h("dd", {}, depth)]))
              : h("p", { class: "note" }, "No queue reported yet.")),
          h("section", { class: "panel" }, h("h3", {}, "Refused"), h("p", { class: "figure" }, panel.rejections_total))),
        stackedBars({
          title: "Batch size histogram",
          categories: panel.batches.map((b) => (b.le === null ? "more" : `≤ ${b.le}`)),
          series: [{ name: "batches", values: panel.batches.map((b) => b.count) }],
        }));
    } catch (err) {
      if (!signal.aborted) router.replaceChildren(h("p", { class: "error" }, `Could not read the router's metrics: ${err.message}`));
    }
  }
  function read() { readRouter(); readEndpoint(); }
  read();
  const timer = setInterval(read, EVERY_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
