/* The open board's Server-Sent Events: progress, live previews, panels, portraits and status as
 * they happen.
 */

import { reloadBoard } from "./board.js";
import { checkHealth } from "./health.js";
import { renderHistoryItemProgress, scheduleHistoryRefresh } from "./history.js";
import { showPreview } from "./panels.js";
import { boardBusy, isFinal, noteJobBoundary, state } from "./state.js";
import {
  renderAll, renderBoardSoon, renderCastView, renderProgress, renderStatus, updateRunningPanels,
} from "./view.js";

const EVENTS_RETRY_MS = 3000;

/** Listen to ``board``'s stream (its ``links.events``), unless the page already does. */
export function openEvents(board) {
  const id = String(board.id);
  if (state.events && state.events.boardId === id && state.events.source.readyState !== EventSource.CLOSED) {
    return;
  }
  closeEvents();
  if (typeof EventSource === "undefined") return;
  // A new stream replays the board's logged events (earlier jobs too), but the board the page
  // shows was read after the newest event it heard: the ids are one sequence for all boards.
  const url = new URL(board.links.events, window.location.href);
  if (state.lastEventId) url.searchParams.set("last_event_id", state.lastEventId);
  const source = new EventSource(url);
  const entry = { boardId: id, source };
  state.events = entry;
  const current = () => state.events === entry;
  const on = (kind, handle) => source.addEventListener(kind, (e) => {
    if (!current()) return;
    if (e.lastEventId) state.lastEventId = e.lastEventId;
    handle(parseEvent(e));
  });

  on("progress", onProgressEvent);
  on("preview", onPreviewEvent);
  on("frame", onFrameEvent);
  on("reference", onReferenceEvent);
  on("status", onStatusEvent);
  source.addEventListener("error", () => {
    if (!current() || source.readyState !== EventSource.CLOSED) return; // the browser reconnects itself
    state.events = null;
    clearTimeout(state.eventsRetry);
    state.eventsRetry = setTimeout(() => {
      if (state.boardId === entry.boardId) reloadBoard();
    }, EVENTS_RETRY_MS);
  });
}

export function closeEvents() {
  clearTimeout(state.eventsRetry);
  if (state.events) state.events.source.close();
  state.events = null;
  state.previews.clear();
}

function parseEvent(event) {
  try {
    return JSON.parse(event.data);
  } catch (err) {
    return null;
  }
}

export function onProgressEvent(progress) {
  if (!progress || !state.board) return;
  state.board.progress = progress;
  if (progress.panel === 0) state.job.sawReference = true; // this job draws the reference first
  if (state.board.status === "queued") state.board.status = "running";
  renderProgress();
  renderStatus();
  if (markRunning((state.board.frames || []).find((f) => f.index === progress.panel))) renderBoardSoon();
  else updateRunningPanels();
}

/** Show ``frame`` (if any) as being drawn: no event says when a panel starts but its first
 * progress (``panel``: its position) or preview. Returns whether it was waiting until now. */
function markRunning(frame) {
  if (!frame || (frame.status !== "pending" && frame.status !== "queued")) return false;
  frame.status = "running";
  return true;
}

/** A panel forming: its newest preview replaces the last one in its placeholder (never stored). */
export function onPreviewEvent(preview) {
  if (!preview || !state.board || !Number.isInteger(preview.frame_id)) return;
  state.previews.set(preview.frame_id, preview);
  // A panel forming is being drawn: its status and preview shown together.
  if (markRunning((state.board.frames || []).find((f) => f.id === preview.frame_id))) renderBoardSoon();
  else showPreview(preview.frame_id);
}

function onFrameEvent(frame) {
  if (!frame || !state.board) return;
  state.previews.delete(frame.id); // drawn (or failed): its image, or its error, replaces the preview
  const frames = state.board.frames || [];
  const position = frames.findIndex((f) => f.id === frame.id);
  if (position >= 0) frames[position] = { ...frames[position], ...frame };
  else frames.push(frame);
  state.board.frames = frames;
  renderBoardSoon();
  renderHistoryItemProgress();
  if (isFinal(state.board.status) && !boardBusy(state.board)) {
    closeEvents();
    scheduleHistoryRefresh();
  }
}

/** A portrait drawn for character ``character`` (1-based; 1 from a server before the cast). */
export function onReferenceEvent(event) {
  if (!event || !state.board) return;
  const k = Number.isInteger(event.character) && event.character > 0 ? event.character : 1;
  const reference = { kind: event.kind || null, image_url: event.image_url || null };
  const characters = state.board.characters;
  if (Array.isArray(characters) && characters[k - 1]) {
    characters[k - 1] = { ...characters[k - 1], reference };
  }
  if (k === 1) state.board.reference = { ...(state.board.reference || {}), ...reference };
  renderCastView();
}

export function onStatusEvent(data) {
  if (!data || !state.board) return;
  state.board.status = data.status;
  state.board.error = data.error || null;
  state.previews.clear(); // a new job starts, or the last ended: no panel is forming any more
  if (data.status !== "running") state.board.progress = null;
  noteJobBoundary(state.board);
  renderAll();
  scheduleHistoryRefresh();
  if (isFinal(data.status)) {
    reloadBoard(); // closes the stream when nothing is left to draw
    checkHealth(); // a failed board may mean the model failed to load
  }
}
