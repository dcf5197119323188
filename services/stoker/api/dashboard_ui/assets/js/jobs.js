// The jobs table: filters, search by id, cursor paging, live updates from /v1/events.

import { api, ApiError, followEvents, query } from "./api.js";
import { announce, clear, h, statusBadge, when } from "./dom.js";

export const STATUSES = [
  "New", "Launching", "Launched", "InProgress", "RetryScheduled", "Stopping", "Completed", "Failed", "Stopped",
];
const PAGE_SIZES = [25, 50, 100, 200];

function instanceType(job) {
  const chosen = job.details && job.details.instance_type;
  if (chosen) return chosen;
  const training = job.spec && job.spec.training;
  return (training && training.ResourceConfig && training.ResourceConfig.InstanceType) || "";
}

function toIso(local) {
  return local ? new Date(local).toISOString() : "";
}

function row(job) {
  return h("tr", { dataset: { jobId: job.job_id } },
    h("th", { scope: "row" }, h("a", { href: `#/job/${encodeURIComponent(job.job_id)}` }, job.job_id)),
    h("td", { class: "cell-status" }, statusBadge(job.status)),
    h("td", {}, job.owner),
    h("td", {}, instanceType(job)),
    h("td", { class: "cell-attempt" }, job.attempt),
    h("td", {}, when(job.created_at)),
    h("td", { class: "cell-updated" }, when(job.updated_at)));
}

export function jobsView(main, params, signal) {
  const filters = {
    status: params.get("status") || "",
    owner: params.get("owner") || "",
    instance_type: params.get("instance_type") || "",
    since: params.get("since") || "",
    until: params.get("until") || "",
    limit: Number(params.get("limit")) || 50,
  };
  const cursors = [null]; // cursors[i] is the cursor of page i; page 0 is the newest
  let page = 0;
  let nextCursor = null;

  const field = (label, control) => h("label", {}, label, control);
  const statusSelect = h("select", { name: "status" },
    h("option", { value: "" }, "Any"), STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
  const filterForm = h("form", { class: "filters", "aria-label": "Filter jobs", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(filterForm);
    const next = new URLSearchParams();
    for (const key of ["status", "owner", "instance_type", "since", "until", "limit"]) {
      const value = String(data.get(key) || "").trim();
      if (value) next.set(key, value);
    }
    location.hash = `#/jobs${next.toString() ? `?${next}` : ""}`;
  } },
    field("Status", statusSelect),
    field("Owner", h("input", { name: "owner", value: filters.owner, autocomplete: "off" })),
    field("Instance type", h("input", { name: "instance_type", value: filters.instance_type, placeholder: "ml.p3.2xlarge", autocomplete: "off" })),
    field("Created from", h("input", { name: "since", type: "datetime-local", value: filters.since })),
    field("Created until", h("input", { name: "until", type: "datetime-local", value: filters.until })),
    field("Per page", h("select", { name: "limit" }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === filters.limit }, n)))),
    h("button", { type: "submit" }, "Apply filters"),
    h("button", { type: "button", class: "secondary", onclick: () => { location.hash = "#/jobs"; } }, "Clear"));

  const searchMessage = h("p", { class: "error", role: "alert" });
  const searchInput = h("input", { name: "job_id", required: true, autocomplete: "off", spellcheck: "false" });
  const searchForm = h("form", { class: "filters", role: "search", onsubmit: async (event) => {
    event.preventDefault();
    const id = searchInput.value.trim();
    searchMessage.textContent = "";
    try {
      await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
      location.hash = `#/job/${encodeURIComponent(id)}`;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        searchMessage.textContent = `No job with id ${id}.`;
      } else if (!signal.aborted) {
        searchMessage.textContent = error.message;
      }
    }
  } }, field("Job id", searchInput), h("button", { type: "submit" }, "Open job"));

  const live = h("p", { class: "live", dataset: { state: "closed" } }, "Live updates: connecting");
  const tbody = h("tbody", { id: "jobs-body" });
  const caption = h("caption", {}, "Jobs, newest first");
  const table = h("table", { id: "jobs-table", "aria-busy": "true" }, caption,
    h("thead", {}, h("tr", {}, ["Job", "Status", "Owner", "Instance type", "Attempt", "Created", "Updated"]
      .map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  const message = h("p", { class: "note", role: "status" });
  const newer = h("button", { type: "button", class: "secondary", onclick: () => load(page - 1) }, "Newer");
  const older = h("button", { type: "button", class: "secondary", onclick: () => load(page + 1) }, "Older");
  const where = h("span", { class: "note" });

  clear(main).append(
    h("h1", {}, "Jobs"), searchForm, searchMessage, filterForm, live,
    // Focusable, so the keyboard can scroll the table sideways on a narrow screen.
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Jobs table" }, table), message,
    h("nav", { class: "pager", "aria-label": "Pages of jobs" }, newer, where, older));

  function listing(cursor) {
    return `/v1/jobs${query({
      status: filters.status, owner: filters.owner, instance_type: filters.instance_type,
      created_since: toIso(filters.since), created_until: toIso(filters.until),
      limit: filters.limit, cursor,
    })}`;
  }

  async function load(target) {
    if (target < 0 || target >= cursors.length) return;
    table.setAttribute("aria-busy", "true");
    try {
      const result = await api(listing(cursors[target]), { signal });
      page = target;
      nextCursor = result.next_cursor;
      if (nextCursor && cursors.length === page + 1) cursors.push(nextCursor);
      tbody.replaceChildren(...result.items.map(row));
      message.textContent = result.items.length
        ? ""
        : nextCursor ? "No matching jobs on this page; older jobs may still match." : "No jobs match.";
      where.textContent = `Page ${page + 1}`;
      newer.disabled = page === 0;
      older.disabled = !nextCursor;
    } catch (error) {
      if (!signal.aborted) message.textContent = `Could not load jobs: ${error.message}`;
    } finally {
      table.setAttribute("aria-busy", "false");
    }
  }

  function matches(job) {
    if (filters.status && job.status !== filters.status) return false;
    if (filters.owner && job.owner !== filters.owner) return false;
    if (filters.instance_type && instanceType(job) !== filters.instance_type) return false;
    if (filters.since && new Date(job.created_at) < new Date(filters.since)) return false;
    if (filters.until && new Date(job.created_at) > new Date(filters.until)) return false;
    return true;
  }

  async function onEvent(event) {
    const data = event.data || {};
    if (!data.job_id) return;
    const existing = tbody.querySelector(`tr[data-job-id="${CSS.escape(data.job_id)}"]`);
    if (existing && data.to_status) {
      existing.querySelector(".cell-status").replaceChildren(statusBadge(data.to_status));
      if (data.attempt !== undefined) existing.querySelector(".cell-attempt").textContent = data.attempt;
      existing.querySelector(".cell-updated").replaceChildren(when(event.time));
      existing.classList.remove("changed");
      void existing.offsetWidth; // restart the highlight
      existing.classList.add("changed");
      return;
    }
    // A job just submitted appears on the newest page if it passes the filters.
    if (!existing && page === 0 && data.to_status === "New") {
      try {
        const job = await api(`/v1/jobs/${encodeURIComponent(data.job_id)}`, { signal });
        if (!matches(job) || tbody.querySelector(`tr[data-job-id="${CSS.escape(job.job_id)}"]`)) return;
        tbody.prepend(row(job));
        while (tbody.rows.length > filters.limit) tbody.lastElementChild.remove();
        message.textContent = "";
      } catch (error) { /* gone or not ours: nothing to show */ }
    }
  }

  followEvents({
    signal,
    onEvent,
    onState: (state) => {
      live.dataset.state = state;
      live.textContent = state === "open" ? "Live updates: on" : "Live updates: reconnecting";
      if (state === "closed") announce("Live updates interrupted; reconnecting.");
    },
  });
  load(0);
}
