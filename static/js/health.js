/* The banner: the worker's trouble and the model's state, from GET /api/health, polled
 * closely while something is wrong or under way.
 */

import { api, ENTRY, NETWORK_ERROR, RETRY_MS } from "./api.js";
import { $, el } from "./dom.js";
import { roughDuration, sameMessage } from "./format.js";
import { boardBusy, state } from "./state.js";
import { renderStatus } from "./view.js";

const HEALTH_POLL_MS = 2000; // while something is under way or wrong

const HEALTH_IDLE_MS = 30000; // otherwise: a worker that stops while the page is idle still shows


const WORKER_STOPPED = "The studio's worker has stopped; restart the studio.";

export async function checkHealth() {
  clearTimeout(state.healthTimer);
  let health;
  try {
    health = await api("GET", ENTRY.health);
  } catch (err) {
    renderBanner(err.message || NETWORK_ERROR, "error");
    clearTimeout(state.healthTimer);
    state.healthTimer = setTimeout(checkHealth, RETRY_MS);
    return;
  }
  state.health = health || {};
  $("demo-note").hidden = !state.health.demo;
  renderWorkers(state.health);
  const banner = healthBanner(state.health);
  if (banner.lines.length) renderBanner(banner.lines.join("\n"), banner.kind);
  else hideBanner();
  // Watch closely while something is wrong or under way (a queued board starts the model
  // loading any moment, a full disk stops a drawing board), so the banner comes and goes
  // with the trouble; otherwise now and then, so a worker that stops is seen.
  const watch = workerTrouble(state.health) || ["loading", "warming_up"].includes(state.health.model)
    || boardBusy(state.board);
  clearTimeout(state.healthTimer); // two checks at once (a timer, a submit) leave one timer
  state.healthTimer = setTimeout(checkHealth, watch ? HEALTH_POLL_MS : HEALTH_IDLE_MS);
  renderStatus(); // a board error that the banner shows is not repeated on the board
}

/** Whether the worker cannot go on: stopped, or failing (e.g. the disk is full). */
function workerTrouble(health) {
  return Boolean(health && health.status && health.status !== "ok");
}

/** The banner's lines: the worker's trouble first (nothing gets drawn until it is solved),
 * then the model's state. ``kind`` is error when any line is one. */
function healthBanner(health) {
  const lines = [];
  let kind = "info";
  if (workerTrouble(health)) {
    kind = "error";
    const problem = typeof health.problem === "string" && health.problem.trim() ? health.problem.trim() : null;
    if (health.status === "worker_stopped") {
      if (problem && !sameMessage(problem, WORKER_STOPPED)) lines.push(problem);
      lines.push(WORKER_STOPPED);
    } else {
      lines.push(problem || "The studio's worker cannot go on; the details are in the server log.");
    }
  }
  if (health.model === "loading") {
    lines.push(health.loading_message || "Loading the model…");
  } else if (health.model === "warming_up") {
    lines.push(warmUpMessage(health.warm_up));
  } else if (health.model === "error") {
    kind = "error";
    lines.push(`The model could not be loaded: ${health.error || "unknown error"}`);
  }
  return { lines, kind };
}

/** What the banner says while a compiled model warms up (between boards, which are drawn
 * meanwhile, without compile): how far, and how long is left. */
function warmUpMessage(progress) {
  let text = "Warming up the compiled model for this GPU";
  if (progress && Number.isInteger(progress.of) && progress.of > 0) {
    text += `: ${progress.done} of ${progress.of} panel shapes ready`;
    if (Number.isInteger(progress.eta_s)) text += `, about ${roughDuration(progress.eta_s)} left`;
  }
  return `${text}. Boards are drawn meanwhile, more slowly until then; later starts reuse the compiled kernels.`;
}

const MODEL_WORDS = { not_loaded: "idle, model not loaded", loading: "loading the model", warming_up: "warming up",
  ready: "ready", error: "cannot load its model" };

/** The Redis workers (GET /api/health's `workers`): name, device, state, and the board drawn. */
function renderWorkers(health) {
  const list = $("workers");
  const workers = health.backend && health.backend !== "embedded" && Array.isArray(health.workers)
    ? health.workers : null;
  list.hidden = workers === null;
  if (workers === null) return;
  const items = workers.map((worker) => {
    const words = [worker.name || "worker", worker.device || "", MODEL_WORDS[worker.model] || worker.model || ""];
    if (worker.board) words.push(`drawing ${worker.board}`);
    return el("li", { className: "worker", text: words.filter(Boolean).join(" · ") });
  });
  list.replaceChildren(...(items.length ? items : [el("li", { text: "No worker is running: boards wait for one "
    + "(start one with python worker.py)." })]));
}

function renderBanner(text, kind) {
  const banner = $("health-banner");
  banner.textContent = text;
  banner.className = `banner ${kind}`;
  banner.hidden = false;
}

function hideBanner() {
  const banner = $("health-banner");
  banner.hidden = true;
  banner.textContent = "";
}

/** The model error the banner shows now, or null. */
export function bannerError() {
  return state.health && state.health.model === "error" ? state.health.error || null : null;
}

/** The worker's problem the banner shows now, or null. */
export function bannerProblem() {
  return workerTrouble(state.health) ? state.health.problem || null : null;
}
