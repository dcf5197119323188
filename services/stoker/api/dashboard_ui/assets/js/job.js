// One job: facts, history as a timeline by attempt, the training request, notifications,
// a stop button and the trace id of its events; kept current from /v1/events.

import { api, ApiError, followEvents, traceId } from "./api.js";
import { clear, duration, h, statusBadge, when } from "./dom.js";

const TERMINAL = new Set(["Completed", "Failed", "Stopped"]);

function timeline(history) {
  const items = [];
  let attempt = -1;
  for (const line of history) {
    if (line.attempt !== attempt) {
      attempt = line.attempt;
      items.push(h("li", { class: "attempt" }, attempt === 0 ? "Before the first launch" : `Attempt ${attempt}`));
    }
    const retry = line.to_status === "RetryScheduled";
    items.push(h("li", { dataset: { status: line.to_status } },
      when(line.at),
      line.from_status ? `${line.from_status} → ` : "",
      statusBadge(line.to_status),
      line.reason ? ` ${retry ? "retry because" : "—"} ${line.reason}` : ""));
  }
  return h("ol", { class: "timeline", "aria-label": "History" }, items);
}

function traceLink(trace, template) {
  if (!trace) return null;
  if (!template) return h("code", { id: "trace-id" }, trace);
  return h("a", { id: "trace-id", href: template.replace("{trace_id}", trace), rel: "noreferrer" }, trace);
}

function facts(job, trace, template) {
  const d = job.details || {};
  const rows = [
    ["Status", statusBadge(job.status)],
    ["Owner", job.owner],
    ["Team", job.team],
    ["Attempts", job.attempt],
    ["Created", when(job.created_at)],
    ["Updated", when(job.updated_at)],
    ["Instance type", d.instance_type],
    ["Training job", d.training_job_name],
    ["Billable time", duration(d.billable_seconds)],
    ["Training time", duration(d.training_seconds)],
    ["Failure reason", job.failure_reason],
    ["Model artifacts", d.model_artifacts],
    // The job keeps its submission's trace id; an event's traceparent stands in for older jobs.
    ["Trace id", traceLink(d.trace_id || trace, template)],
  ];
  return h("dl", { class: "facts" },
    rows.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
}

export function jobView(main, jobId, signal) {
  let trace = null;
  const seenNotes = [];
  const heading = h("h1", { tabindex: "-1" }, `Job ${jobId}`);
  const summary = h("section", { "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h" }, "Summary"));
  const stop = h("button", { type: "button", class: "danger", id: "stop-job", onclick: stopJob }, "Stop job");
  const stopMessage = h("p", { role: "status", class: "note", id: "stop-message" });
  const history = h("section", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h" }, "History"));
  const notes = h("section", { "aria-labelledby": "notes-h" }, h("h2", { id: "notes-h" }, "Notifications sent"));
  const request = h("section", { "aria-labelledby": "request-h" }, h("h2", { id: "request-h" }, "Training request"));
  const error = h("p", { class: "error", role: "alert" });
  clear(main).append(
    h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), heading, error,
    h("div", { class: "pager" }, stop), stopMessage, summary, history, notes, request);

  async function refresh() {
    try {
      const [job, lines, sent, config] = await Promise.all([
        api(`/v1/jobs/${encodeURIComponent(jobId)}`, { signal }),
        api(`/v1/jobs/${encodeURIComponent(jobId)}/history`, { signal }),
        api(`/v1/jobs/${encodeURIComponent(jobId)}/notifications`, { signal }),
        api("/v1/dashboard", { signal }),
      ]);
      summary.replaceChildren(summary.firstChild, facts(job, trace, config.trace_url));
      history.replaceChildren(history.firstChild, timeline(lines));
      renderNotes(sent);
      request.replaceChildren(request.firstChild,
        h("pre", { tabindex: "0", "aria-label": "Training request (JSON)" }, JSON.stringify(job.spec.training || job.spec, null, 2)));
      stop.disabled = TERMINAL.has(job.status) || job.status === "Stopping";
    } catch (err) {
      if (signal.aborted) return;
      error.textContent = err instanceof ApiError && err.status === 404 ? `No job with id ${jobId}.` : `Could not load the job: ${err.message}`;
      stop.disabled = true;
    }
  }

  function renderNotes(sent) {
    const items = sent.available
      ? sent.items.map((n) => h("li", {}, `${n.target}: ${n.status || "not owed yet"}`, n.updated_at ? [" (", when(n.updated_at), ")"] : "",
        n.failure_reason ? ` — ${n.failure_reason}` : ""))
      : [];
    for (const e of sent.available ? [] : seenNotes) {
      items.push(h("li", {}, `${e.data.target}: sent (`, when(e.time), ")"));
    }
    const body = items.length
      ? h("ul", {}, items)
      : h("p", { class: "note" }, sent.available ? "None yet: notifications go out when the job ends." : "This API has no notification ledger to read; notifications sent while this page is open appear here.");
    notes.replaceChildren(notes.firstChild, body);
  }

  async function stopJob() {
    stop.disabled = true;
    stopMessage.textContent = "Stopping…";
    try {
      const job = await api(`/v1/jobs/${encodeURIComponent(jobId)}/stop`, { method: "POST", signal });
      // A live region itself: screen readers hear it without a second announcement.
      stopMessage.textContent = `Job ${job.status === "Stopped" ? "stopped" : "is stopping"}.`;
      await refresh();
    } catch (err) {
      if (!signal.aborted) {
        stopMessage.textContent = `Could not stop the job: ${err.message}`;
        stop.disabled = false;
      }
    }
  }

  followEvents({
    signal,
    onState: () => {},
    onEvent: (event) => {
      if (!event.data || event.data.job_id !== jobId) return;
      trace = traceId(event) || trace;
      if (event.type === "stoker.notification.sent.v1") seenNotes.push(event);
      refresh();
    },
  });
  refresh().then(() => heading.focus());
}
