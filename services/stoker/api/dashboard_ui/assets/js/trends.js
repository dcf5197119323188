// Trends over a chosen range of UTC days, drawn as SVG charts.

import { api, query } from "./api.js";
import { clear, duration, h } from "./dom.js";
import { horizontalBars, stackedBars } from "./charts.js";

const FINAL = ["Completed", "Failed", "Stopped"];

function isoDay(date) { return date.toISOString().slice(0, 10); }

function completionFigure(ttc) {
  // Seconds, minutes or hours: whichever keeps the p99 bar's figure readable.
  const [unit, per] = ttc.p99_s < 120 ? [" s", 1] : ttc.p99_s < 7200 ? [" min", 60] : [" h", 3600];
  const chart = horizontalBars({
    title: `Time to completion of ${ttc.jobs} jobs`,
    rows: ["p50", "p90", "p99"].map((q) => [q, +(ttc[`${q}_s`] / per).toFixed(1)]),
    unit,
  });
  chart.id = "time-to-completion";
  chart.append(
    h("dl", { class: "facts" }, ["p50", "p90", "p99"].flatMap((q) => [h("dt", {}, q), h("dd", {}, duration(ttc[`${q}_s`]))])),
    h("p", { class: "note" }, "Each figure is at most 10% above the true value (counted in buckets)."));
  return chart;
}

export function trendsView(main, params, signal) {
  const today = new Date();
  const until = params.get("until") || isoDay(today);
  const since = params.get("since") || isoDay(new Date(today.getTime() - 29 * 86400000));
  const team = params.get("team") || "";
  const form = h("form", { class: "range", "aria-label": "Range", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    location.hash = `#/trends${query({ since: data.get("since"), until: data.get("until"), team: data.get("team") })}`;
  } },
    h("label", {}, "From (UTC day)", h("input", { type: "date", name: "since", value: since, required: true })),
    h("label", {}, "Until (UTC day)", h("input", { type: "date", name: "until", value: until, required: true })),
    h("button", { type: "submit" }, "Show"));
  // Only an admin sees more than one team: the team field is offered to admins alone.
  api("/v1/me", { signal }).then((me) => {
    if (me.role !== "admin") return;
    form.lastElementChild.before(
      h("label", {}, "Team (empty: every team)", h("input", { name: "team", value: team, autocomplete: "off" })));
  }).catch(() => {});
  const body = h("div", { class: "grid", "aria-live": "polite", "aria-busy": "true" });
  const error = h("p", { class: "error", role: "alert" });
  clear(main).append(h("h1", {}, "Trends"), form, error, body);

  api(`/v1/trends${query({ since, until, team })}`, { signal }).then((report) => {
    const days = report.jobs_per_day.map((d) => d.day);
    const ttc = report.time_to_completion;
    body.replaceChildren(
      days.length
        ? stackedBars({
          title: "Jobs per day by final state",
          categories: days,
          series: FINAL.map((state) => ({ name: state, values: report.jobs_per_day.map((d) => d.counts[state] || 0) })),
        })
        : h("section", { class: "panel" }, h("h2", {}, "Jobs per day by final state"), h("p", { class: "note" }, "No job ended in this range.")),
      report.retries_by_reason.length
        ? horizontalBars({ title: "Retries by failure reason", rows: report.retries_by_reason.map((r) => [r.reason, r.count]) })
        : h("section", { class: "panel" }, h("h2", {}, "Retries by failure reason"), h("p", { class: "note" }, "No retries in this range.")),
      ttc.jobs ? completionFigure(ttc) : h("section", { class: "panel" }, h("h2", {}, "Time to completion"), h("p", { class: "note" }, "No job completed in this range.")),
      report.billable_hours.length
        ? horizontalBars({ title: "Billable hours by instance type and team", rows: report.billable_hours.map((b) => [`${b.instance_type} · ${b.team}`, b.hours]), unit: " h" })
        : h("section", { class: "panel" }, h("h2", {}, "Billable hours by instance type and team"), h("p", { class: "note" }, "No billable time reported in this range.")));
    body.setAttribute("aria-busy", "false");
  }).catch((err) => {
    if (!signal.aborted) error.textContent = `Could not load trends: ${err.message}`;
  });
}
