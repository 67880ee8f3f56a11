/* Reordering panels by drag and drop.
 */

import { saveOrder } from "./board.js";
import { $ } from "./dom.js";
import { sortedFrames, state } from "./state.js";
import { renderAll } from "./view.js";

export function attachDragHandlers(panel, frameId) {
  panel.addEventListener("dragstart", (e) => {
    if (panel.getAttribute("draggable") !== "true") return;
    state.dragFrameId = frameId;
    panel.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", String(frameId));
  });
  panel.addEventListener("dragend", () => {
    panel.classList.remove("dragging");
    clearDropMarks();
    state.dragFrameId = null;
    if (state.renderPending) {
      state.renderPending = false;
      renderAll();
    }
  });
  panel.addEventListener("dragover", (e) => {
    if (state.dragFrameId === null || state.dragFrameId === frameId) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "move";
    const before = dropBefore(panel, e);
    panel.classList.toggle("drop-before", before);
    panel.classList.toggle("drop-after", !before);
  });
  panel.addEventListener("dragleave", (e) => {
    if (!panel.contains(e.relatedTarget)) panel.classList.remove("drop-before", "drop-after");
  });
  panel.addEventListener("drop", (e) => {
    e.preventDefault();
    const dragged = state.dragFrameId !== null ? state.dragFrameId : parseDraggedId(e);
    const before = dropBefore(panel, e);
    clearDropMarks();
    state.dragFrameId = null;
    state.renderPending = false;
    if (dragged === null || dragged === frameId) return;
    const ids = sortedFrames(state.board).map((f) => f.id).filter((id) => id !== dragged);
    const target = ids.indexOf(frameId);
    if (target < 0) return;
    ids.splice(before ? target : target + 1, 0, dragged);
    saveOrder(ids);
  });
}

function parseDraggedId(e) {
  const raw = e.dataTransfer && e.dataTransfer.getData("text/plain");
  if (!raw) return null;
  const frame = (state.board.frames || []).find((f) => String(f.id) === raw);
  return frame ? frame.id : null;
}

/** In a multi-column grid the drop side is left/right, in one column it is above/below. */
function dropBefore(panel, e) {
  const rect = panel.getBoundingClientRect();
  const boardWidth = $("board").getBoundingClientRect().width;
  if (rect.width < boardWidth * 0.75) return e.clientX < rect.left + rect.width / 2;
  return e.clientY < rect.top + rect.height / 2;
}

function clearDropMarks() {
  for (const node of document.querySelectorAll("#board .drop-before, #board .drop-after")) {
    node.classList.remove("drop-before", "drop-after");
  }
}
