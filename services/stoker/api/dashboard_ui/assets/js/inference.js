// The inference router's figures from its Prometheus endpoint, read every 5 s. The
// multi-model endpoint exports no metrics yet, so its panel says so instead of guessing.

import { api } from "./api.js";
import { clear, h } from "./dom.js";
import { stackedBars } from "./charts.js";

const EVERY_MS = 5000;

function ms(seconds) { return seconds === null || seconds === undefined ? "–" : `${(seconds * 1000).toFixed(1)} ms`; }

export function inferenceView(main, _params, signal) {
  const router = h("div", { "aria-live": "polite" }, h("p", {}, "Reading the router's metrics…"));
  const endpoint = h("section", { class: "panel", id: "endpoint-panel" },
    h("h2", {}, "Multi-model endpoint"),
    h("p", { class: "note" }, "The endpoint exports no metrics endpoint yet, so cache hit rate and cold loads are not shown. This panel fills in once it has one."));
  clear(main).append(h("h1", {}, "Inference"), h("section", { "aria-labelledby": "router-h" }, h("h2", { id: "router-h" }, "Router"), router), endpoint);

  let previous = null;
  async function read() {
    try {
      const panel = await api("/v1/inference/router", { signal });
      if (!panel.configured) {
        router.replaceChildren(h("p", { class: "note" }, "No router metrics URL is configured: set STOKER_DASHBOARD_ROUTER_METRICS_URL to the router's /metrics."));
        return;
      }
      const rate = previous && panel.read_at > previous.read_at
        ? Math.max(0, (panel.requests_total - previous.requests_total) / (panel.read_at - previous.read_at)).toFixed(1)
        : "measuring…";
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
  read();
  const timer = setInterval(read, EVERY_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
