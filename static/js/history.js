/* The history list of boards.
 */

import { api, ENTRY } from "./api.js";
import { clearBoard, openBoard, revealBoard } from "./board.js";
import { $, el, safeUrl } from "./dom.js";
import { clearError, reportError } from "./errors.js";
import { formatDate } from "./format.js";
import { state } from "./state.js";

const HISTORY_REFRESH_MS = 1500;

export async function refreshHistory() {
  let data;
  try {
    data = await api("GET", ENTRY.storyboards);
  } catch (err) {
    return; // the health banner already tells when the server is unreachable
  }
  renderHistory((data && data.storyboards) || []);
}

export function scheduleHistoryRefresh() {
  clearTimeout(state.historyTimer);
  state.historyTimer = setTimeout(refreshHistory, HISTORY_REFRESH_MS);
}

async function deleteStoryboard(item) {
  const title = item.title || "Untitled storyboard";
  if (!window.confirm(`Delete the storyboard “${title}”? This cannot be undone.`)) return;
  clearError();
  try {
    await api("DELETE", item.links.self);
    if (String(item.id) === String(state.boardId)) clearBoard();
    await refreshHistory();
  } catch (err) {
    reportError(err);
  }
}

function renderHistory(items) {
  const list = $("history");
  $("history-empty").hidden = items.length > 0;
  list.replaceChildren(...items.map(renderHistoryItem));
  renderHistorySelection();
}

function renderHistoryItem(item) {
  const li = el("li", { className: "history-item", attrs: { "data-id": item.id, "data-mode": item.mode || "" } });
  const title = item.title || "Untitled storyboard";

  const open = el("button", {
    className: "history-open",
    attrs: { type: "button", "aria-label": `Open storyboard ${title}` },
  });
  const thumbUrl = safeUrl(item.thumbnail_url);
  open.append(thumbUrl
    ? el("img", { className: "history-thumb", attrs: { src: thumbUrl, alt: "" } })
    : el("span", { className: "history-thumb empty-thumb", attrs: { "aria-hidden": "true" } }));
  const text = el("span", { className: "history-text" });
  text.append(
    el("span", { className: "history-title", text: title }),
    el("span", { className: "history-meta", text: formatDate(item.created_at) }),
    el("span", { className: "history-meta" }, [
      el("span", { className: `status-dot status-${item.status}`, text: item.status }),
      document.createTextNode(` · ${historyCount(item)}`),
    ]),
  );
  open.append(text);
  open.addEventListener("click", async () => {
    clearError();
    await openBoard(item.id, item.links.self, { subscribe: true });
    revealBoard();
  });

  const remove = el("button", {
    className: "history-delete button small ghost",
    text: "✕",
    attrs: { type: "button", "aria-label": `Delete storyboard ${title}`, title: "Delete this storyboard" },
  });
  remove.addEventListener("click", () => deleteStoryboard(item));
  li.append(open, remove);
  return li;
}

function historyCount(item) {
  const total = item.frames_total ?? 0;
  const done = item.frames_done ?? total;
  const noun = total === 1 ? "panel" : "panels";
  const count = done === total ? `${total} ${noun}` : `${done}/${total} ${noun}`;
  return item.mode ? `${count} · ${item.mode}` : count;
}

export function renderHistorySelection() {
  for (const item of document.querySelectorAll("#history .history-item")) {
    const current = state.boardId !== null && item.dataset.id === String(state.boardId);
    item.classList.toggle("current", current);
    const open = item.querySelector(".history-open");
    if (current) open.setAttribute("aria-current", "true");
    else open.removeAttribute("aria-current");
  }
}

/** Keep the open board's history entry roughly current between full refreshes. */
export function renderHistoryItemProgress() {
  if (!state.board) return;
  const item = document.querySelector(`#history .history-item[data-id="${CSS.escape(String(state.board.id))}"]`);
  if (!item) return;
  const frames = state.board.frames || [];
  const counts = item.querySelectorAll(".history-meta");
  const line = counts[counts.length - 1];
  if (!line || !line.lastChild) return;
  const done = frames.filter((f) => f.status === "done").length;
  const count = { frames_total: frames.length, frames_done: done, mode: item.dataset.mode };
  line.lastChild.textContent = ` · ${historyCount(count)}`;
}
