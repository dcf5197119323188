// Pipelines: the team's pipelines and schedules (#/pipelines), one pipeline's executions
// (#/pipeline/<name>) and two executions side by side (#/compare/<a>/<b>).

import { api, ApiError } from "./api.js";
import { clear, duration, h, statusBadge, when } from "./dom.js";

export function stepSeconds(step) {
  if (!step || !step.started_at) return null;
  const end = step.ended_at ? Date.parse(step.ended_at) : Date.now();
  return (end - Date.parse(step.started_at)) / 1000;
}

function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "note" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows)));
}

function problem(target, error, what) {
  const text = error instanceof ApiError && error.status === 404 ? `No ${what}.` : `Could not load: ${error.message}`;
  target.append(h("p", { class: "error", role: "alert" }, text));
}

const pipelineHref = (name) => `#/pipeline/${encodeURIComponent(name)}`;
export const executionHref = (id) => `#/execution/${encodeURIComponent(id)}`;

export async function pipelinesView(main, _params, signal) {
  const heading = h("h1", { tabindex: "-1" }, "Pipelines");
  const body = h("div", {});
  clear(main).append(heading, body);
  try {
    const [pipelines, schedules] = await Promise.all([
      api("/v1/pipelines", { signal }), api("/v1/schedules", { signal }),
    ]);
    body.append(
      table("Pipelines", ["Name", "Version", "Updated", "Description"],
        pipelines.map((p) => h("tr", { dataset: { pipeline: p.name } },
          h("th", { scope: "row" }, h("a", { href: pipelineHref(p.name) }, p.name)),
          h("td", {}, p.version), h("td", {}, when(p.updated_at)), h("td", {}, p.description || ""))),
        "No pipelines yet: create one with stoker pipelines put or PUT /v1/pipelines/{name}."),
      h("h2", { id: "schedules-h" }, "Schedules"),
      table("Schedules", ["Name", "Pipeline", "Expression", "Enabled", "Last tick", "Last execution"],
        schedules.map((s) => h("tr", { dataset: { schedule: s.name } },
          h("th", { scope: "row" }, s.name),
          h("td", {}, h("a", { href: pipelineHref(s.pipeline) }, s.pipeline)),
          h("td", {}, h("code", {}, s.expression)),
          h("td", {}, s.enabled ? "yes" : "paused"),
          h("td", {}, when(s.last_tick)),
          h("td", {}, s.last_execution_id ? h("a", { href: executionHref(s.last_execution_id) }, s.last_execution_id) : ""))),
        "No schedules."));
  } catch (error) {
    if (signal.aborted) return;
    // The routes exist only where the API has a pipeline store (the SQLite one, pipelines.md).
    if (error instanceof ApiError && error.status === 404) {
      body.append(h("p", { class: "note" }, "This deployment serves no pipelines: they need the SQLite store."));
    } else {
      problem(body, error, "pipelines");
    }
  }
}

export async function pipelineView(main, name, signal) {
  const heading = h("h1", { tabindex: "-1" }, `Pipeline ${name}`);
  const body = h("div", {});
  clear(main).append(h("p", {}, h("a", { href: "#/pipelines" }, "← Pipelines")), heading, body);
  heading.focus();
  let executions;
  try {
    // The newest page (100 executions); older ones are on the CLI and the API's next pages.
    executions = (await api(`/v1/pipelines/${encodeURIComponent(name)}/executions`, { signal })).items;
  } catch (error) {
    if (!signal.aborted) problem(body, error, `pipeline named ${name}`);
    return;
  }
  body.append(table("Executions, newest first", ["Execution", "Status", "Started", "Ended", "Owner or schedule", "Failure reason"],
    executions.map((e) => h("tr", { dataset: { execution: e.execution_id } },
      h("th", { scope: "row" }, h("a", { href: executionHref(e.execution_id) }, e.execution_id)),
      h("td", {}, statusBadge(e.status)), h("td", {}, when(e.started_at)), h("td", {}, when(e.ended_at)),
      h("td", {}, e.schedule ? `schedule ${e.schedule}` : e.owner || ""), h("td", {}, e.failure_reason || ""))),
    "No executions yet."));
  if (executions.length < 2) return;
  const pick = (id, label, chosen) => [
    h("label", { for: id }, label,
      h("select", { id, name: id }, executions.map((e) => h("option", { value: e.execution_id, selected: e.execution_id === chosen }, `${e.execution_id} (${e.status})`)))),
  ];
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const a = form.querySelector("#compare-a").value;
    const b = form.querySelector("#compare-b").value;
    location.hash = `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;
  } },
    pick("compare-a", "First execution", executions[1].execution_id),
    pick("compare-b", "Second execution", executions[0].execution_id),
    h("button", { type: "submit" }, "Compare"));
  body.append(h("h2", {}, "Compare two executions"), form);
}

export async function compareView(main, first, second, signal) {
  const heading = h("h1", { tabindex: "-1" }, "Compare executions");
  const body = h("div", {});
  clear(main).append(heading, body);
  heading.focus();
  let a;
  let b;
  try {
    [a, b] = await Promise.all([first, second].map((id) => api(`/v1/executions/${encodeURIComponent(id)}`, { signal })));
  } catch (error) {
    if (!signal.aborted) problem(body, error, "such execution");
    return;
  }
  const byName = (execution) => new Map(execution.steps.map((s) => [s.name, s]));
  const left = byName(a);
  const right = byName(b);
  const names = [...new Set([...left.keys(), ...right.keys()])];
  const cells = (step) => step
    ? [h("td", {}, statusBadge(step.status)), h("td", {}, duration(stepSeconds(step)))]
    : [h("td", {}, "not in this execution"), h("td", {}, "")];
  body.append(
    h("p", {}, h("a", { href: pipelineHref(a.pipeline_name) }, `← Pipeline ${a.pipeline_name}`)),
    table(`Steps of ${a.execution_id} and ${b.execution_id}`,
      ["Step", `${a.execution_id} state`, `${a.execution_id} duration`, `${b.execution_id} state`, `${b.execution_id} duration`],
      [
        h("tr", { class: "overall" }, h("th", { scope: "row" }, "Execution"),
          h("td", {}, statusBadge(a.status)), h("td", {}, duration(stepSeconds(a))),
          h("td", {}, statusBadge(b.status)), h("td", {}, duration(stepSeconds(b)))),
        ...names.map((name) => h("tr", { dataset: { step: name } }, h("th", { scope: "row" }, name),
          cells(left.get(name)), cells(right.get(name)))),
      ], ""));
}
