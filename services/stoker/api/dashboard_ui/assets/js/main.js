// The page's router: #/jobs, #/job/<id>, #/trends, #/inference, #/pipelines. Each view gets
// an AbortSignal that ends its requests, timers and event stream when the user leaves it.

import { api, forget, onSignedOut, setToken, token } from "./api.js";
import { clear, h } from "./dom.js";
import { inferenceView } from "./inference.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { trendsView } from "./trends.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
let current = null;
let signingIn = false;

function pipelinesView(target) {
  clear(target).append(h("h1", {}, "Pipelines"),
    h("p", { class: "note" }, "This version of stoker runs no pipelines yet. Their DAGs, executions and schedules will be shown here."));
}

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
    const here = link.dataset.section === section || (section === "job" && link.dataset.section === "jobs");
    if (here) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (section === "job" && rest.length) {
    document.title = "Job · stoker";
    jobView(main, decodeURIComponent(rest.join("/")), current.signal);
    return;
  }
  const view = VIEWS[section] || jobsView;
  document.title = `${(VIEWS[section] ? section : "jobs").replace(/^./, (c) => c.toUpperCase())} · stoker`;
  view(main, params, current.signal);
}

onSignedOut(() => { if (!signingIn) route(); });
window.addEventListener("hashchange", route);
route();
