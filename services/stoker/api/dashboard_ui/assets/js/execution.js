// One pipeline execution (#/execution/<id>): its DAG with each step's state, the steps as a
// table (the DAG's text alternative, with job links, failure reasons and outputs), kept
// current by reading the execution again every POLL_MS until it ends.

import { api, ApiError } from "./api.js";
import { dagSvg, dependencies } from "./dag.js";
import { announce, clear, duration, h, statusBadge, when } from "./dom.js";
import { stepSeconds } from "./pipelines.js";

const POLL_MS = 1500;
const ENDED = new Set(["Succeeded", "Failed", "Stopped"]);

function facts(execution) {
  const rows = [
    ["Status", statusBadge(execution.status)],
    ["Pipeline", h("a", { href: `#/pipeline/${encodeURIComponent(execution.pipeline_name)}` }, execution.pipeline_name)],
    ["Started by", execution.schedule ? `schedule ${execution.schedule}` : execution.owner],
    ["Started", when(execution.started_at)],
    ["Ended", when(execution.ended_at)],
    ["Duration", duration(stepSeconds(execution))],
    ["Failure reason", execution.failure_reason],
    ["Parameters", Object.keys(execution.parameters).length ? h("code", {}, JSON.stringify(execution.parameters)) : null],
  ];
  return h("dl", { class: "facts" },
    rows.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
}

function outputs(step) {
  const notes = [];
  if (step.cache_hit_of) notes.push(`cached from ${step.cache_hit_of}`);
  if (step.outcome !== null && step.outcome !== undefined) notes.push(`condition ${step.outcome ? "true" : "false"}`);
  const props = step.properties && Object.keys(step.properties).length
    ? h("details", {}, h("summary", {}, "Properties"), h("pre", {}, JSON.stringify(step.properties, null, 2)))
    : null;
  return [notes.join("; "), props];
}

function stepsTable(execution) {
  return h("div", { class: "table-wrap" }, h("table", { id: "steps" },
    h("caption", {}, "Steps and their states"),
    h("thead", {}, h("tr", {}, ["Step", "State", "Attempt", "Job", "Started", "Duration", "Failure reason", "Outputs"]
      .map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, execution.steps.map((step) => h("tr", { dataset: { step: step.name } },
      h("th", { scope: "row" }, step.name),
      h("td", { class: "step-state" }, statusBadge(step.status)),
      h("td", {}, step.attempt || ""),
      h("td", {}, step.job_id ? h("a", { href: `#/job/${encodeURIComponent(step.job_id)}` }, step.job_id) : ""),
      h("td", {}, when(step.started_at)),
      h("td", {}, duration(stepSeconds(step))),
      h("td", { class: "wrap" }, step.failure_reason || ""),
      h("td", { class: "wrap" }, outputs(step)))))));
}

export async function executionView(main, executionId, signal) {
  const heading = h("h1", { tabindex: "-1" }, `Execution ${executionId}`);
  const summary = h("section", { "aria-labelledby": "exec-facts-h" });
  const graph = h("figure", { class: "dag-wrap" });
  const steps = h("section", { "aria-labelledby": "steps-h" });
  const live = h("p", { class: "live", id: "execution-live" });
  clear(main).append(heading, live, summary, graph, steps);
  heading.focus();

  let parents = new Map();
  let shown = "";
  let status = null;
  const render = (execution) => {
    const seen = JSON.stringify(execution);
    if (seen === shown) return;
    shown = seen;
    summary.replaceChildren(h("h2", { id: "exec-facts-h" }, "Summary"), facts(execution));
    graph.replaceChildren(
      dagSvg(execution.steps, parents, `DAG of ${execution.pipeline_name}: ${execution.steps.length} steps; their states are in the Steps table`),
      h("figcaption", { class: "note" }, "Steps left to right by dependency depth; an arrow goes from a step to one that waits for it."));
    steps.replaceChildren(h("h2", { id: "steps-h" }, "Steps"), stepsTable(execution));
    if (status && status !== execution.status) announce(`Execution ${execution.status}`);
    status = execution.status;
  };

  let execution;
  try {
    execution = await api(`/v1/executions/${encodeURIComponent(executionId)}`, { signal });
  } catch (error) {
    if (signal.aborted) return;
    const text = error instanceof ApiError && error.status === 404 ? `No execution with id ${executionId}.` : `Could not load: ${error.message}`;
    clear(summary).append(h("p", { class: "error", role: "alert" }, text));
    return;
  }
  try {
    const pipeline = await api(`/v1/pipelines/${encodeURIComponent(execution.pipeline_name)}`, { signal });
    parents = dependencies(pipeline.definition);
  } catch (error) {
    // A deleted pipeline keeps its executions: the steps are drawn without their arrows.
    if (signal.aborted) return;
  }
  render(execution);
  while (!signal.aborted && !ENDED.has(execution.status)) {
    live.textContent = "Live: reading the execution every 1.5 s";
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (signal.aborted) return;
    try {
      execution = await api(`/v1/executions/${encodeURIComponent(executionId)}`, { signal });
      render(execution);
    } catch (error) {
      if (signal.aborted) return;
      live.textContent = `Could not read the execution (${error.message}); trying again`;
    }
  }
  live.textContent = "The execution has ended.";
}
