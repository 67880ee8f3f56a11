/* A panel's inline Edit: its text, scene, seed and cast, redrawn; and its Layout, sketched or
 * posed in the layout dialog, redrawn with the same seed.
 */

import { regenerateFrame } from "./board.js";
import { distinctScene } from "./dialog.js";
import { el } from "./dom.js";
import { layoutCharacters, openLayoutEditor } from "./layout.js";
import { focusPanelButton, renderBoard } from "./panels.js";
import { castPicker, sameCast } from "./picker.js";
import { boardCharacters, boardHasNames, state } from "./state.js";

export function startEdit(frame) {
  state.editing = {
    frameId: frame.id, caption: frame.caption || "", scene: distinctScene(frame), seed: frame.seed ?? "",
    cast: Array.isArray(frame.cast) ? [...frame.cast] : null,
  };
  renderBoard();
  const area = document.querySelector(`#board .panel[data-frame-id="${CSS.escape(String(frame.id))}"] .edit-caption`);
  if (area) area.focus();
}

export function renderEditForm(frame, n) {
  const draft = state.editing;
  const form = el("form", { className: "edit-form", attrs: { "aria-label": `Edit panel ${n}` } });
  const captionId = `edit-caption-${frame.id}`;
  const sceneId = `edit-scene-${frame.id}`;
  const seedId = `edit-seed-${frame.id}`;
  const caption = el("textarea", { className: "edit-caption", attrs: { id: captionId, rows: 3 } });
  caption.value = draft.caption;
  caption.addEventListener("input", () => { draft.caption = caption.value; });
  const scene = el("textarea", {
    className: "edit-scene",
    attrs: { id: sceneId, rows: 2, placeholder: "Same as the text" },
  });
  scene.value = draft.scene;
  scene.addEventListener("input", () => { draft.scene = scene.value; });
  const seed = el("input", {
    className: "edit-seed",
    attrs: { id: seedId, type: "number", min: 0, step: 1, inputmode: "numeric", placeholder: "random" },
  });
  seed.value = draft.seed;
  seed.addEventListener("input", () => { draft.seed = seed.value; });

  const save = el("button", { className: "button small primary", text: "Redraw", attrs: { type: "submit" } });
  const cancel = el("button", { className: "button small ghost", text: "Cancel", attrs: { type: "button" } });
  cancel.addEventListener("click", () => {
    state.editing = null;
    renderBoard();
    focusPanelButton(frame.id, ".edit");
  });
  form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") cancel.click();
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const seedText = String(draft.seed).trim();
    const seedValue = seedText === "" ? null : Number(seedText);
    if (seedValue !== null && (!Number.isInteger(seedValue) || seedValue < 0)) {
      seed.setAttribute("aria-invalid", "true");
      seed.focus();
      return;
    }
    const body = { seed: seedValue };
    const text = draft.caption.trim() || frame.caption || "";
    if (text !== (frame.caption || "")) body.caption = text;
    // A blank scene is the text itself (sent as such: a blank field keeps the old scene).
    const sceneText = draft.scene.trim() || text;
    if (sceneText !== (frame.scene || frame.caption || "")) body.scene = sceneText;
    if (draft.cast !== null && !sameCast(draft.cast, frame.cast)) body.cast = draft.cast; // missing: kept
    regenerateFrame(frame, body);
  });

  form.append(
    el("label", { className: "small-label", text: "Panel text", attrs: { for: captionId } }),
    caption,
    el("label", { className: "small-label", text: "Scene (for the image, in English; blank = the text)",
      attrs: { for: sceneId } }),
    scene,
    el("label", { className: "small-label", text: "Seed (blank = random)", attrs: { for: seedId } }),
    seed,
  );
  // A board of one unnamed character has no one to choose: its Edit stays as it was.
  if (boardHasNames(state.board)) {
    const options = boardCharacters(state.board).map((c) => ({ value: c.name, label: c.name }));
    form.append(castPicker(`edit-cast-${frame.id}`, options, draft.cast, (value) => { draft.cast = value; }));
  }
  form.append(el("div", { className: "edit-actions" }, [save, cancel]));
  return form;
}

/** Sketch or pose panel ``n``; a new layout (or none) redraws it with its seed, so what
 * changes is the composition. */
export async function editPanelLayout(frame, n) {
  const settings = (state.board && state.board.settings) || {};
  const names = Array.isArray(frame.cast) ? frame.cast : boardCharacters(state.board).map((c) => c.name);
  const layout = await openLayoutEditor({
    title: `Layout of panel ${n}`,
    width: Number(settings.width) || 16,
    height: Number(settings.height) || 9,
    characters: layoutCharacters(names),
    layout: frame.layout || null,
  });
  if (layout === undefined) return; // cancelled
  if (layout === null && !frame.layout) return; // nothing to remove
  await regenerateFrame(frame, { seed: frame.seed ?? null, layout });
}
