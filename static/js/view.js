/* The board's head: title, status, notices, cast, progress.
 */

import { $, el, safeUrl } from "./dom.js";
import { renderExports } from "./exports.js";
import { formatDate, formatEta, sameMessage } from "./format.js";
import { bannerError, bannerProblem } from "./health.js";
import { renderHistorySelection } from "./history.js";
import { renderBoard, runningText } from "./panels.js";
import { boardBusy, boardCharacters, boardHasNames, state } from "./state.js";

export function renderAll() {
  renderHeader();
  renderStatus();
  renderNotices();
  renderCastView();
  renderProgress();
  renderBoard();
  renderHistorySelection();
}

function renderHeader() {
  const board = state.board;
  $("board-title").textContent = board ? board.title || "Untitled storyboard" : "No storyboard open";
  $("board-meta").textContent = board ? boardMetaText(board) : "";
  $("reuse").hidden = !board;
  $("animatic-open").hidden = !board || !(board.frames || []).length;
  renderRefine(board);
  renderExports(board);
}

/** The board's Refine: offered once nothing is being drawn and some panel has a take, in the
 * modes the server refines to (GET /api/presets ``refine``), at its default strength. */
function renderRefine(board) {
  const refine = state.presets && state.presets.refine;
  const box = $("refine-board");
  box.hidden = !refine || !board || boardBusy(board) || !(board.frames || []).some((f) => f.take !== null
    && f.take !== undefined);
  if (box.hidden) return;
  const select = $("refine-preset");
  if (select.options.length === 0) {
    const labels = new Map((state.presets.presets || []).map((p) => [p.name, p.label || p.name]));
    select.replaceChildren(...refine.presets.map((name) =>
      el("option", { text: labels.get(name) || name, attrs: { value: name } })));
    select.value = refine.default_preset;
  }
  $("refine").title = `A new take of every drawn panel in this mode, from the take it shows, keeping its `
    + `composition (strength ${refine.strength}: it reruns that share of the mode's steps)`;
}

function boardMetaText(board) {
  const s = board.settings || {};
  const parts = [];
  const preset = state.presets && (state.presets.presets || []).find((p) => p.name === s.preset);
  if (s.preset) parts.push(preset ? preset.label : s.preset);
  if (s.steps) parts.push(`${s.steps} steps`);
  if (s.aspect) parts.push(s.width && s.height ? `${s.aspect} (${s.width}×${s.height})` : s.aspect);
  if (s.seed !== null && s.seed !== undefined) parts.push(`seed ${s.seed}`);
  if (typeof s.identity_lock === "boolean") parts.push(s.identity_lock ? "identity lock on" : "identity lock off");
  const date = formatDate(board.created_at);
  if (date) parts.push(date);
  return parts.join(" · ");
}

function setBoardMessage(message) {
  $("board-message").textContent = message;
}

export function renderStatus() {
  const board = state.board;
  const pill = $("board-status");
  const resume = $("resume");
  if (!board) {
    pill.hidden = true;
    pill.textContent = "";
    resume.hidden = true;
    setBoardMessage("");
    return;
  }
  pill.hidden = false;
  pill.textContent = board.status;
  pill.className = `status-pill status-${board.status}`;
  resume.hidden = !canResume(board);
  setBoardMessage(statusMessage(board));
}

/** What POST .../resume accepts: a board that stopped with panels left to draw. */
function canResume(board) {
  return ["failed", "canceled", "interrupted"].includes(board.status) && !boardBusy(board)
    && (board.frames || []).some((f) => f.status !== "done");
}

function statusMessage(board) {
  const frames = board.frames || [];
  const done = frames.filter((f) => f.status === "done").length;
  switch (board.status) {
    case "queued":
      return "Waiting in the queue…";
    case "running":
      return "";
    case "done":
      return boardBusy(board)
        ? "Redrawing…"
        : `Finished — ${done} of ${frames.length} panel${frames.length === 1 ? "" : "s"} drawn.`;
    case "failed":
      // The banner already says it in full when the model could not be loaded.
      if (sameMessage(board.error, bannerError())) {
        return "Failed: the model could not be loaded. Fix what the message at the top says, then Resume: "
          + "it tries loading the model again.";
      }
      if (sameMessage(board.error, bannerProblem())) return "Failed: see the message at the top.";
      return `Failed: ${board.error || "unknown error"}`;
    case "canceled":
      return `Canceled after ${done} of ${frames.length} panels. Resume to draw the rest.`;
    case "interrupted":
      return `Interrupted — the studio stopped while drawing (${done} of ${frames.length} panels done). Resume to finish.`;
    default:
      return "";
  }
}

/** Things to know about this board's input (e.g. a story the text encoders cannot read well). */
function renderNotices() {
  const box = $("board-notices");
  const board = state.board;
  let notices = board && board.notices;
  if (board && !Array.isArray(notices)) notices = state.createdNotices[String(board.id)];
  const texts = (Array.isArray(notices) ? notices : []).filter((n) => typeof n === "string" && n.trim());
  box.replaceChildren(...texts.map((text) => el("li", { text })));
  box.hidden = texts.length === 0;
}

/** The board's cast beside its progress: each character's reference face (uploaded, or
 * the portrait drawn from its traits) or what is still to come. One unnamed character
 * shows only its reference, as before the cast. */
export function renderCastView() {
  const view = $("cast-view");
  const board = state.board;
  const named = boardHasNames(board);
  const shown = boardCharacters(board).map((character, i) => ({ character, k: i + 1 }))
    .filter(({ character }) => named || safeUrl(character.reference && character.reference.image_url));
  view.hidden = shown.length === 0;
  view.classList.toggle("several", shown.length > 1);
  const busy = boardBusy(board);
  // Rebuilt only when something shown changes: a new <img> per frame event would flicker.
  const signature = JSON.stringify([busy, shown.map(({ character }) => [character.name,
    character.reference && character.reference.kind, character.reference && character.reference.image_url])]);
  if (view.dataset.signature === signature) return;
  view.dataset.signature = signature;
  view.replaceChildren(...shown.map(({ character, k }) => renderCastMember(character, k, busy)));
}

function renderCastMember(character, k, busy) {
  const reference = character.reference || {};
  const url = safeUrl(reference.image_url);
  const kind = reference.kind === "uploaded" ? "uploaded" : "generated";
  const li = el("li", { className: "cast-member", attrs: { "data-character": k } });
  const figure = el("figure");
  if (url) {
    const what = character.name ? `${character.name}'s reference` : "Character reference";
    figure.append(el("img", { attrs: { src: url, alt: `${what} (${kind})` } }));
  } else {
    figure.append(el("span", { className: "cast-thumb-empty", attrs: { "aria-hidden": "true" } }));
  }
  const caption = el("figcaption");
  if (character.name) {
    caption.append(el("span", { className: "cast-member-name", text: character.name }));
    let words = kind === "uploaded" ? "uploaded face" : "generated portrait";
    if (!url) words = busy ? "portrait to come" : "no reference"; // a portrait is drawn only for someone shown
    caption.append(el("span", { className: "cast-member-kind", text: words }));
  } else {
    caption.append(el("span", { className: "cast-member-kind", text: `Character reference (${kind})` }));
  }
  figure.append(caption);
  li.append(figure);
  return li;
}

export function renderProgress() {
  const board = state.board;
  const box = $("progress");
  const running = board && (board.status === "queued" || board.status === "running");
  box.hidden = !running;
  $("cancel").hidden = !running;
  if (!running) return;
  const bar = $("progress-bar");
  const p = board.progress;
  const fraction = p ? progressFraction(p) : null;
  if (fraction === null) {
    bar.removeAttribute("value"); // indeterminate
    $("progress-text").textContent = board.status === "queued" ? "Queued — waiting for the model…" : "Starting…";
    return;
  }
  // However the numbers arrive (coalesced, replayed, a retried panel), the bar never goes back.
  state.job.floor = Math.max(state.job.floor, fraction);
  bar.max = 1;
  bar.value = state.job.floor;
  const parts = [progressLabel(p)];
  if (p.steps) parts.push(`step ${Math.min(p.step || 0, p.steps)} of ${p.steps}`);
  const eta = formatEta(p.eta_s);
  if (eta) parts.push(eta);
  $("progress-text").textContent = parts.join(" · ");
}

/** The share of the job done, 0..1: the worker's own ``fraction``; else worked out from the
 * panel and step (the character reference, panel 0, counted as one more panel), or null. */
function progressFraction(p) {
  if (typeof p.fraction === "number" && Number.isFinite(p.fraction)) return Math.min(1, Math.max(0, p.fraction));
  if (!p.of) return null;
  const reference = state.job.sawReference ? 1 : 0;
  const steps = p.steps || 1;
  const within = Math.min(p.step || 0, steps) / steps;
  const done = p.panel === 0 ? within : Math.max(0, (p.panel || 1) - 1) + reference + within;
  return Math.min(1, Math.max(0, done / (p.of + reference)));
}

function progressLabel(p) {
  if (typeof p.label === "string" && p.label) return p.label;
  return p.panel === 0 ? "Character reference" : `Panel ${p.panel || 1} of ${p.of}`;
}

/** Progress events only touch the running panels' status text, not the whole board. */
export function updateRunningPanels() {
  for (const node of document.querySelectorAll("#board .panel[data-status='running'] .panel-status")) {
    node.textContent = runningText();
  }
}

export function renderBoardSoon() {
  if (state.dragFrameId !== null) {
    state.renderPending = true;
    return;
  }
  renderAll();
}
