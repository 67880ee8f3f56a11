/* The board's panels: image, caption, who is in it, scores, and their buttons.
 */

import { chooseTake, deleteTake, moveFrame, refineFrame, regenerateFrame, useSeed } from "./board.js";
import { openPanelDialog } from "./dialog.js";
import { $, actionButton, el, safeUrl } from "./dom.js";
import { attachDragHandlers } from "./drag.js";
import { editPanelLayout, renderEditForm, startEdit } from "./edit.js";
import { downloadAs, panelFileName } from "./exports.js";
import { sameMessage } from "./format.js";
import { identityWords } from "./identity.js";
import { isFinal, sortedFrames, state } from "./state.js";

export function renderBoard() {
  const boardEl = $("board");
  const board = state.board;
  $("board-empty").hidden = Boolean(board && (board.frames || []).length);
  if (!board) {
    boardEl.replaceChildren();
    return;
  }
  const s = board.settings || {};
  const width = Number(s.width) || 16;
  const height = Number(s.height) || 9;
  boardEl.style.setProperty("--panel-ratio", `${width} / ${height}`);
  boardEl.style.setProperty("--panel-min", width >= height ? "15rem" : "9.5rem");

  const focus = rememberFocus();
  const frames = sortedFrames(board);
  boardEl.replaceChildren(...frames.map((frame, i) => renderPanel(frame, i + 1, frames.length)));
  restoreFocus(focus);
}

function renderPanel(frame, position, count) {
  const n = frame.index || position;
  const editing = state.editing && state.editing.frameId === frame.id;
  const panel = el("li", {
    className: `panel panel-${frame.status}${failedAsBoard(frame) ? " not-drawn" : ""}`,
    attrs: {
      "data-index": n,
      "data-frame-id": frame.id,
      "data-status": frame.status,
      draggable: editing ? "false" : "true",
      "aria-label": `Panel ${n}`,
    },
  });
  panel.append(renderPanelImage(frame, n));
  const body = el("div", { className: "panel-body" });
  if (editing) {
    body.append(renderEditForm(frame, n));
  } else {
    body.append(el("p", { className: "panel-caption", text: frame.caption || "" }));
    if (frame.dialogue) body.append(el("p", { className: "panel-dialogue", text: frame.dialogue }));
    const cast = renderPanelCast(frame);
    if (cast) body.append(cast);
  }
  const takes = renderTakeSwitcher(frame, n);
  if (takes) body.append(takes);
  body.append(renderPanelMeta(frame));
  const shortened = renderShortenedNote(frame);
  if (shortened) body.append(shortened);
  const detail = panelErrorDetail(frame);
  if (detail) body.append(el("p", { className: "panel-error", text: detail }));
  if (!editing) body.append(renderPanelActions(frame, n, position, count));
  panel.append(body);
  attachDragHandlers(panel, frame.id);
  return panel;
}

function renderPanelImage(frame, n) {
  const box = el("div", { className: "panel-frame" });
  const url = frame.status === "done" ? safeUrl(frame.image_url) : null;
  const statusText = panelStatusText(frame);
  if (url) {
    const show = el("button", {
      className: "panel-open",
      attrs: { type: "button", "aria-label": `Show panel ${n} large, with what made it`, draggable: "false" },
    });
    show.append(el("img", {
      className: "panel-image",
      attrs: { src: url, alt: `Panel ${n}: ${frame.caption || ""}`, draggable: "false" },
    }));
    show.addEventListener("click", () => openPanelDialog(frame, n, TAKE_ACTIONS));
    box.append(show);
    box.append(el("span", { className: "panel-status visually-hidden", text: statusText }));
  } else {
    // A panel redrawn or refined keeps its image, dimmed, under its status until the new one comes.
    const previous = busyFrame(frame) ? safeUrl(frame.image_url) : null;
    if (previous) {
      box.append(el("img", {
        className: "panel-previous",
        attrs: { src: previous, alt: `Panel ${n}, being drawn again: ${frame.caption || ""}`, draggable: "false" },
      }));
    }
    const placeholder = el("div", { className: previous ? "panel-placeholder over-previous" : "panel-placeholder" });
    const preview = previewImage(frame, n);
    if (preview) placeholder.append(preview);
    if (frame.status === "running") placeholder.append(el("span", { className: "spinner", attrs: { "aria-hidden": "true" } }));
    placeholder.append(el("span", { className: "panel-status", text: statusText }));
    box.append(placeholder);
  }
  box.append(el("span", { className: "panel-number", text: n, attrs: { "aria-hidden": "true" } }));
  const layout = renderLayoutOverlay(frame, n, box);
  if (layout) box.append(...layout);
  return box;
}

/** A panel with a layout: a small toggle that lays its sketch or pose over the picture. */
function renderLayoutOverlay(frame, n, box) {
  const url = frame.layout ? safeUrl(frame.layout.image) : null;
  if (!url) return null;
  const shown = state.layoutShown.has(frame.id);
  box.classList.toggle("layout-shown", shown);
  const overlay = el("img", { className: "panel-layout",
    attrs: { src: url, alt: `The ${frame.layout.kind} panel ${n} follows`, draggable: "false" } });
  overlay.hidden = !shown;
  const toggle = actionButton("layout-toggle", frame.layout.kind === "pose" ? "Pose" : "Sketch",
    `Show the ${frame.layout.kind} panel ${n} follows over it`, () => {
      if (state.layoutShown.has(frame.id)) state.layoutShown.delete(frame.id);
      else state.layoutShown.add(frame.id);
      const on = state.layoutShown.has(frame.id);
      overlay.hidden = !on;
      box.classList.toggle("layout-shown", on);
      toggle.setAttribute("aria-pressed", String(on));
    });
  toggle.setAttribute("aria-pressed", String(shown));
  return [overlay, toggle];
}

/** The panel forming: its newest live preview, while it is not drawn yet. */
function previewImage(frame, n) {
  const preview = state.previews.get(frame.id);
  if (!preview || frame.status === "done" || frame.status === "failed") return null;
  const url = safeUrl(preview.image);
  if (!url || !url.startsWith("data:")) return null;
  return el("img", {
    className: "panel-preview",
    attrs: { src: url, alt: `Panel ${n} forming: step ${preview.step} of ${preview.steps}`, draggable: "false" },
  });
}

/** Show the newest preview of panel ``frameId`` in place: a preview comes every step, too often
 * to render the board for it. */
export function showPreview(frameId) {
  const panel = document.querySelector(`#board .panel[data-frame-id="${CSS.escape(String(frameId))}"]`);
  const placeholder = panel && panel.querySelector(".panel-placeholder");
  const frame = state.board && (state.board.frames || []).find((f) => f.id === frameId);
  if (!placeholder || !frame) return;
  const image = previewImage(frame, panel.dataset.index);
  const shown = placeholder.querySelector(".panel-preview");
  if (shown && image) {
    shown.src = image.src;
    shown.alt = image.alt;
  } else if (image) {
    placeholder.prepend(image);
  } else if (shown) {
    shown.remove();
  }
}

/* What the details dialog may do with a take: the board's calls, handed down (the dialog
 * imports nothing of the board). After either, the dialog shows the panel as it now is. */
const TAKE_ACTIONS = {
  choose: (frame, take, n) => chooseTake(frame, take.id).then(() => reopenDialog(frame.id, n)),
  remove: (frame, take, n) => deleteTake(take).then(() => reopenDialog(frame.id, n)),
};

function reopenDialog(frameId, n) {
  const frame = state.board && (state.board.frames || []).find((f) => f.id === frameId);
  if (frame) openPanelDialog(frame, n, TAKE_ACTIONS);
}

/** ‹ 2/3 › under a panel with several takes: the previous or next take, shown at once. */
function renderTakeSwitcher(frame, n) {
  const takes = Array.isArray(frame.takes) ? frame.takes : [];
  if (takes.length < 2) return null;
  const at = takes.findIndex((take) => take.id === frame.take);
  const busy = busyFrame(frame);
  const switcher = el("div", { className: "take-switcher", attrs: { role: "group", "aria-label": `Takes of panel ${n}` } });
  switcher.append(
    actionButton("take-prev", "‹", `Show the previous take of panel ${n}`,
      () => chooseTake(frame, takes[at - 1].id), busy || at <= 0),
    el("span", { className: "take-count", text: `${at + 1}/${takes.length}`,
      attrs: { title: `Take ${at + 1} of ${takes.length}` } }),
    actionButton("take-next", "›", `Show the next take of panel ${n}`,
      () => chooseTake(frame, takes[at + 1].id), busy || at < 0 || at >= takes.length - 1),
  );
  return switcher;
}

/** Whether the panel waits to be drawn or is being drawn. */
function busyFrame(frame) {
  return frame.status === "queued" || frame.status === "running";
}

function panelStatusText(frame) {
  switch (frame.status) {
    case "done":
      return "done";
    case "running":
      return runningText();
    case "failed":
      return failedAsBoard(frame) ? "not drawn" : "failed";
    case "pending":
      return state.board && isFinal(state.board.status) && state.board.status !== "done" ? "not drawn" : "queued";
    default:
      return "queued";
  }
}

/* A board that failed as a whole (the model did not load, the disk is full) marks every
 * unfinished panel failed: its words belong to the board message, once, not to each panel. */
function failedAsBoard(frame) {
  const board = state.board;
  if (!board || board.status !== "failed" || !frame.error) return false;
  return sameMessage(frame.error, board.error) || /^not drawn\b/i.test(frame.error.trim());
}

/** The panel's own error, in full, under its caption; null when the board message has it. */
function panelErrorDetail(frame) {
  if (frame.status !== "failed" || !frame.error || failedAsBoard(frame)) return null;
  return frame.error;
}

/** Who is in the panel, as chips: its characters' names, or "no one". The one unnamed
 * character of a board made with a single character gets no chip, as before the cast. */
function renderPanelCast(frame) {
  if (!Array.isArray(frame.cast)) return null; // a board from before the cast
  const names = frame.cast.filter(Boolean);
  if (frame.cast.length && !names.length) return null;
  const chips = names.length
    ? names.map((name) => el("li", { className: "cast-chip", text: name }))
    : [el("li", { className: "cast-chip nobody", text: "no one" })];
  return el("ul", { className: "panel-cast", attrs: { "aria-label": "Who is in it" } }, chips);
}

function renderPanelMeta(frame) {
  const meta = el("div", { className: "panel-meta" });
  if (frame.shot) meta.append(el("span", { className: "panel-shot", text: frame.shot }));
  const hasSeed = frame.seed !== null && frame.seed !== undefined;
  meta.append(el("span", { className: "panel-seed", text: hasSeed ? `seed ${frame.seed}` : "seed —" }));
  const badge = renderIdentityBadge(frame);
  if (badge) meta.append(badge);
  return meta;
}

/** What the prompt left out to fit CLIP's 77 tokens, said in view: the picture may miss it. */
function renderShortenedNote(frame) {
  const cut = [];
  // The prompt carries the style as its comma-separated phrases; a cut one is missing from it.
  const style = String(state.board.style || "").split(",").map((p) => p.split(/\s+/).join(" ").trim()).filter(Boolean).join(", ");
  if (frame.prompt && style && !frame.prompt.includes(style)) cut.push("part of the style");
  for (const [name, words] of Object.entries(frame.traits_shortened || {})) {
    if (words) cut.push(`${name || "the character"}: “${words}”`);
  }
  if (frame.prompt_shortened) cut.push(`scene words “${frame.prompt_shortened}”`);
  if (!cut.length) return null;
  return el("p", { className: "prompt-shortened",
    text: `Prompt shortened to fit CLIP's 77 tokens, the action kept; left out ${cut.join("; ")}.` });
}

function renderIdentityBadge(frame) {
  const tries = frame.attempts > 1 ? `${frame.attempts} tries` : "";
  if (!frame.identity && !tries) return null;
  const words = frame.identity ? identityWords(frame.identity) : { kind: "neutral", text: "", title: "" };
  const text = [words.text, tries].filter(Boolean).join(" · ");
  return el("span", {
    className: `identity-badge identity-${words.kind}`,
    text,
    attrs: { title: words.title || null },
  });
}

function renderPanelActions(frame, n, position, count) {
  const busy = busyFrame(frame);
  const actions = el("div", { className: "panel-actions" });
  actions.append(
    actionButton("redraw", "Redraw", `Redraw panel ${n} with a new seed`,
      () => regenerateFrame(frame, { seed: null }), busy),
    actionButton("edit", "Edit", `Edit the text, scene, seed, cast or dialogue of panel ${n}`, () => startEdit(frame), busy),
    actionButton("layout-edit", "Layout", `Sketch or pose the composition of panel ${n}`,
      () => editPanelLayout(frame, n), busy),
    actionButton("refine", "Refine", `Refine panel ${n}: a new Quality take that keeps its composition`,
      () => refineFrame(frame), busy || frame.take === null || frame.take === undefined),
    actionButton("use-seed", "Use seed", `Copy the seed of panel ${n} into the form`,
      () => useSeed(frame), frame.seed === null || frame.seed === undefined),
  );
  const url = safeUrl(frame.image_url);
  if (url && frame.status === "done") {
    // Named by position as in the ZIP, so "1" on the page is panel-01.png everywhere.
    const link = el("a", {
      className: "button small download",
      text: "Download",
      attrs: { href: url, download: panelFileName(position), "aria-label": `Download panel ${n}` },
    });
    link.addEventListener("click", (event) => downloadAs(event, url, panelFileName(position)));
    actions.append(link);
  }
  const move = el("span", { className: "move-buttons" });
  move.append(
    actionButton("move-left", "←", `Move panel ${n} earlier`, () => moveFrame(frame.id, -1), position <= 1),
    actionButton("move-right", "→", `Move panel ${n} later`, () => moveFrame(frame.id, 1), position >= count),
  );
  actions.append(move);
  return actions;
}

const FOCUSABLE_CLASSES = [".redraw", ".edit", ".layout-edit", ".layout-toggle", ".refine", ".use-seed", ".move-left",
  ".move-right", ".download", ".take-prev", ".take-next"];

function rememberFocus() {
  const active = document.activeElement;
  const panel = active && active.closest ? active.closest("#board .panel") : null;
  if (!panel) return null;
  const selector = FOCUSABLE_CLASSES.find((cls) => active.matches(cls));
  return selector ? { frameId: panel.dataset.frameId, selector } : null;
}

function restoreFocus(focus) {
  if (focus) focusPanelButton(focus.frameId, focus.selector);
}

export function focusPanelButton(frameId, selector) {
  const panel = document.querySelector(`#board .panel[data-frame-id="${CSS.escape(String(frameId))}"]`);
  if (!panel) return;
  const target = panel.querySelector(`${selector}:not([disabled])`) || panel.querySelector("button:not([disabled])");
  if (target) target.focus();
}

export function runningText() {
  const p = state.board && state.board.progress;
  return p && p.steps ? `drawing… step ${p.step || 0}/${p.steps}` : "drawing…";
}
