// The page's router: #/jobs, #/job/<id>, #/trends, #/inference, #/pipelines,
// #/pipeline/<name>, #/execution/<id>, #/compare/<id>/<id>. Each view gets
// an AbortSignal that ends its requests, timers and event stream when the user leaves it.

import { api, forget, onSignedOut, setToken, token } from "./api.js";
import { clear, h } from "./dom.js";
import { executionView } from "./execution.js";
import { inferenceView } from "./inference.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { compareView, pipelineView, pipelinesView } from "./pipelines.js";
import { trendsView } from "./trends.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
let current = null;
let signingIn = false;

function loginView() {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const problem = h("p", { class: "error", role: "alert" });
  const form = h("form", { onsubmit: async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    signingIn = true; // a refusal is answered here, not by showing this form again
    try {
      await whoAmI();
      signingIn = false;
      route();
    } catch (error) {
      signingIn = false;
      forget();
      problem.textContent = error.status === 401 ? "That token was refused." : `Could not sign in: ${error.message}`;
      input.focus();
    }
  } },
    h("label", { for: "token" }, "API token"),
    input,
    h("button", { type: "submit" }, "Sign in"));
  clear(who);
  clear(main).append(h("section", { class: "login" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste a stoker API token (", h("code", {}, "stoker auth token create"), ") or an OIDC access token. It is kept in this tab only, until the tab closes or you sign out."),
    form, problem));
  input.focus();
}

async function whoAmI() {
  const me = await api("/v1/me");
  who.replaceChildren(
    h("span", { id: "whoami" }, `${me.subject} · ${me.team} · ${me.role}`),
    h("button", { type: "button", class: "secondary", onclick: () => { forget(); route(); } }, "Sign out"));
  return me;
}

const VIEWS = {
  jobs: jobsView,
  trends: trendsView,
  inference: inferenceView,
  pipelines: pipelinesView,
};

const PIPELINE_PAGES = new Set(["pipeline", "execution", "compare"]);

function route() {
  if (current) current.abort();
  current = new AbortController();
  if (!token()) {
    loginView();
    return;
  }
  if (!who.childElementCount) whoAmI().catch(() => {});
  const hash = location.hash.replace(/^#\/?/, "") || "jobs";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search || "");
  const [section, ...rest] = path.split("/");
  for (const link of document.querySelectorAll("nav a[data-section]")) {
    const here = link.dataset.section === (PIPELINE_PAGES.has(section) ? "pipelines" : section)
      || (section === "job" && link.dataset.section === "jobs");
    if (here) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (section === "job" && rest.length) {
    document.title = "Job · stoker";
    jobView(main, decodeURIComponent(rest.join("/")), current.signal);
    return;
  }
  const parts = rest.map(decodeURIComponent);
  if (section === "pipeline" && parts.length === 1) {
    document.title = "Pipeline · stoker";
    pipelineView(main, parts[0], current.signal);
    return;
  }
  if (section === "execution" && parts.length === 1) {
    document.title = "Execution · stoker";
    executionView(main, parts[0], current.signal);
    return;
  }
  if (section === "compare" && parts.length === 2) {
    document.title = "Compare executions · stoker";
    compareView(main, parts[0], parts[1], current.signal);
    return;
  }
  const view = VIEWS[section] || jobsView;
  document.title = `${(VIEWS[section] ? section : "jobs").replace(/^./, (c) => c.toUpperCase())} · stoker`;
  view(main, params, current.signal);
}

onSignedOut(() => { if (!signingIn) route(); });
window.addEventListener("hashchange", route);
route();
