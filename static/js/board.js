/* The open board: opening, reloading, the address's #board=, and what its buttons do.
 */

import { api, ApiError } from "./api.js";
import { $, announce } from "./dom.js";
import { clearError, reportError, showError } from "./errors.js";
import { closeEvents, openEvents } from "./events.js";
import { checkHealth } from "./health.js";
import { scheduleHistoryRefresh } from "./history.js";
import { focusPanelButton, renderBoard } from "./panels.js";
import { boardBusy, newJob, noteJobBoundary, sortedFrames, state } from "./state.js";
import { renderAll } from "./view.js";

/** Bring the board's top (title, progress, messages) into view when it is not, e.g. after
 * Generate at the bottom of a long form or a click far down the history. */
export function revealBoard() {
  const section = $("board-section");
  const top = section.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.4) section.scrollIntoView({ block: "start" });
  // In one column the board is far from the form: keyboards and screen readers follow the eyes.
  if (window.matchMedia("(max-width: 800px)").matches) section.focus({ preventScroll: true });
}

/** Open board ``id`` from ``url``: its ``links.self`` in an answer, or boardUrl(id). */
export async function openBoard(id, url, { subscribe = true } = {}) {
  if (id === null || id === undefined || id === "") return;
  const changed = String(id) !== String(state.boardId);
  if (changed) {
    closeEvents();
    state.editing = null;
    newJob();
  }
  state.boardId = String(id);
  state.boardUrl = url;
  setHash(id);
  try {
    const board = await api("GET", url);
    if (String(state.boardId) !== String(id)) return; // another board was opened meanwhile
    setBoard(board);
    if (subscribe && boardBusy(board)) openEvents(board);
  } catch (err) {
    if (err.status === 404) {
      clearBoard();
      showError(new ApiError("That storyboard no longer exists."));
    } else {
      reportError(err);
    }
  }
}

export async function reloadBoard() {
  if (!state.boardId) return;
  const id = state.boardId;
  try {
    const board = await api("GET", state.boardUrl);
    if (String(state.boardId) !== String(id)) return;
    setBoard(board);
    if (boardBusy(board)) openEvents(board);
    else closeEvents();
  } catch (err) {
    reportError(err);
  }
}

/** Show ``board``, an answer about the open board (a panel's duration changed, say). */
export function setBoard(board) {
  state.board = board;
  noteJobBoundary(board);
  if (state.editing && !(board.frames || []).some((f) => f.id === state.editing.frameId)) {
    state.editing = null;
  }
  renderAll();
}

export function clearBoard() {
  closeEvents();
  state.board = null;
  state.boardId = null;
  state.boardUrl = null;
  state.editing = null;
  setHash(null);
  renderAll();
}

function setHash(id) {
  const wanted = id === null || id === undefined ? "" : `#board=${encodeURIComponent(id)}`;
  if (window.location.hash === wanted) return;
  if (wanted) history.replaceState(null, "", wanted);
  else history.replaceState(null, "", window.location.pathname + window.location.search);
}

export function boardIdFromHash() {
  const match = /^#board=(.+)$/.exec(window.location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

export async function cancelBoard() {
  if (!state.board) return;
  clearError();
  $("cancel").disabled = true;
  try {
    await api("POST", state.board.links.cancel);
    await reloadBoard();
    scheduleHistoryRefresh();
  } catch (err) {
    reportError(err);
  } finally {
    $("cancel").disabled = false;
  }
}

export async function resumeBoard() {
  if (!state.board) return;
  clearError();
  $("resume").disabled = true;
  try {
    await api("POST", state.board.links.resume);
    await reloadBoard();
    openEvents(state.board);
    checkHealth(); // the job may start loading the model: the banner says so, as for Generate
    scheduleHistoryRefresh();
  } catch (err) {
    reportError(err);
  } finally {
    $("resume").disabled = false;
  }
}

export async function regenerateFrame(frame, body) {
  await queueWork(frame.links.regenerate, body);
}

/** A new take of the panel from its chosen one, keeping its composition (the server's default
 * mode and strength). */
export async function refineFrame(frame) {
  await queueWork(frame.links.refine, {});
}

/** A new take of every drawn panel in the mode chosen beside the board's Refine button, at the
 * server's default strength. */
export async function refineBoard() {
  if (!state.board) return;
  const button = $("refine");
  button.disabled = true;
  try {
    await queueWork(state.board.links.refine, { preset: $("refine-preset").value });
  } finally {
    button.disabled = false;
  }
}

async function queueWork(url, body) {
  if (!state.boardId) return;
  clearError();
  const id = state.boardId;
  try {
    const board = await api("POST", url, body);
    if (state.boardId !== id) return;
    state.editing = null;
    if (board && board.frames) setBoard(board);
    else await reloadBoard();
    openEvents(state.board);
    checkHealth(); // the job may start loading the model: the banner says so, as for Generate
  } catch (err) {
    reportError(err);
  }
}

export async function saveOrder(frameIds) {
  if (!state.boardId || !state.board) return;
  clearError();
  const id = state.boardId;
  // Show the new order at once; the server's answer then replaces it. A panel's links name
  // its position (redraw panel n), so they stay with the place, not with the panel that moves.
  const byId = new Map(state.board.frames.map((f) => [f.id, f]));
  const linksAt = sortedFrames(state.board).map((f) => f.links);
  state.board.frames = frameIds.map((fid, i) => ({ ...byId.get(fid), index: i + 1, links: linksAt[i] }));
  renderBoard();
  try {
    const board = await api("PUT", state.board.links.order, { order: frameIds });
    scheduleHistoryRefresh(); // the history thumbnail is the first panel
    if (state.boardId !== id) return;
    if (board && board.frames) setBoard(board);
    else await reloadBoard();
  } catch (err) {
    reportError(err);
    reloadBoard();
  }
}

export function moveFrame(frameId, delta) {
  const ids = sortedFrames(state.board).map((f) => f.id);
  const from = ids.indexOf(frameId);
  const to = from + delta;
  if (from < 0 || to < 0 || to >= ids.length) return;
  [ids[from], ids[to]] = [ids[to], ids[from]];
  saveOrder(ids).then(() => focusPanelButton(frameId, delta < 0 ? ".move-left" : ".move-right"));
}

export function useSeed(frame) {
  const seed = $("seed");
  seed.value = frame.seed;
  seed.removeAttribute("aria-invalid");
  seed.classList.remove("flash");
  void seed.offsetWidth; // restart the highlight animation
  seed.classList.add("flash");
  announce(`Seed ${frame.seed} copied to the form.`);
}

/** Show another of a panel's takes (nothing is drawn: it is instant, and undoes a redraw). */
export async function chooseTake(frame, takeId) {
  await changeBoard(() => api("PUT", frame.links.take, { take: takeId }));
}

/** Remove one of a panel's takes (not the one it shows). */
export async function deleteTake(take) {
  await changeBoard(() => api("DELETE", take.links.delete));
}

async function changeBoard(call) {
  if (!state.boardId) return;
  clearError();
  const id = state.boardId;
  try {
    const board = await call();
    if (state.boardId !== id) return;
    if (board && board.frames) setBoard(board);
    else await reloadBoard();
  } catch (err) {
    reportError(err);
  }
}
