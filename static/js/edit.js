/* A panel's inline Edit: its text, scene, seed and cast, redrawn, and its dialogue, saved
 * (it is not drawn: a change of it alone is saved without drawing the panel again); and its
 * Layout, sketched or posed in the layout dialog, redrawn with the same seed.
 */

import { api } from "./api.js";
import { regenerateFrame, setBoard } from "./board.js";
import { distinctScene } from "./dialog.js";
import { el } from "./dom.js";
import { reportError } from "./errors.js";
import { layoutCharacters, openLayoutEditor } from "./layout.js";
import { focusPanelButton, renderBoard } from "./panels.js";
import { castPicker, sameCast } from "./picker.js";
import { boardCharacters, boardHasNames, state } from "./state.js";

export function startEdit(frame) {
  state.editing = {
    frameId: frame.id, caption: frame.caption || "", scene: distinctScene(frame), seed: frame.seed ?? "",
    cast: Array.isArray(frame.cast) ? [...frame.cast] : null, dialogue: frame.dialogue || "",
  };
  renderBoard();
  const area = document.querySelector(`#board .panel[data-frame-id="${CSS.escape(String(frame.id))}"] .edit-caption`);
  if (area) area.focus();
}

/** What the form's draft changes: ``body`` for a redraw (without its seed), whether the
 * picture changes (``redraw``) and the dialogue, when it changes (else null). */
function edits(frame, draft, seedValue) {
  const body = {};
  const text = draft.caption.trim() || frame.caption || "";
  if (text !== (frame.caption || "")) body.caption = text;
  // A blank scene is the text itself (sent as such: a blank field keeps the old scene).
  const sceneText = draft.scene.trim() || text;
  if (sceneText !== (frame.scene || frame.caption || "")) body.scene = sceneText;
  if (draft.cast !== null && !sameCast(draft.cast, frame.cast)) body.cast = draft.cast; // missing: kept
  const dialogue = draft.dialogue.trim() === (frame.dialogue || "") ? null : draft.dialogue.trim();
  // Nothing changed still redraws (a new take with the same seed), as Redraw always did.
  const redraw = Object.keys(body).length > 0 || seedValue !== (frame.seed ?? null) || dialogue === null;
  return { body, redraw, dialogue };
}

/** The panel's new dialogue, through the panel's PATCH; false (the error said) when refused. */
async function saveDialogue(frame, dialogue) {
  try {
    const board = await api("PATCH", frame.links.self, { dialogue });
    if (state.board && board.id === state.board.id) setBoard(board);
    return true;
  } catch (err) {
    reportError(err);
    return false;
  }
}

function seedOf(draft) {
  const seedText = String(draft.seed).trim();
  return seedText === "" ? null : Number(seedText);
}

export function renderEditForm(frame, n) {
  const draft = state.editing;
  const form = el("form", { className: "edit-form", attrs: { "aria-label": `Edit panel ${n}` } });
  const captionId = `edit-caption-${frame.id}`;
  const sceneId = `edit-scene-${frame.id}`;
  const seedId = `edit-seed-${frame.id}`;
  const dialogueId = `edit-dialogue-${frame.id}`;
  const save = el("button", { className: "button small primary", attrs: { type: "submit" } });
  // The button says what it will do: a change of the dialogue alone is saved, not drawn.
  const relabel = () => { save.textContent = edits(frame, draft, seedOf(draft)).redraw ? "Redraw" : "Save"; };
  const caption = el("textarea", { className: "edit-caption", attrs: { id: captionId, rows: 3 } });
  caption.value = draft.caption;
  caption.addEventListener("input", () => { draft.caption = caption.value; relabel(); });
  const scene = el("textarea", {
    className: "edit-scene",
    attrs: { id: sceneId, rows: 2, placeholder: "Same as the text" },
  });
  scene.value = draft.scene;
  scene.addEventListener("input", () => { draft.scene = scene.value; relabel(); });
  const seed = el("input", {
    className: "edit-seed",
    attrs: { id: seedId, type: "number", min: 0, step: 1, inputmode: "numeric", placeholder: "random" },
  });
  seed.value = draft.seed;
  seed.addEventListener("input", () => { draft.seed = seed.value; relabel(); });
  const dialogue = el("textarea", {
    className: "edit-dialogue",
    attrs: { id: dialogueId, rows: 2, placeholder: "None" },
  });
  dialogue.value = draft.dialogue;
  dialogue.addEventListener("input", () => { draft.dialogue = dialogue.value; relabel(); });
  relabel();

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
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const seedValue = seedOf(draft);
    if (seedValue !== null && (!Number.isInteger(seedValue) || seedValue < 0)) {
      seed.setAttribute("aria-invalid", "true");
      seed.focus();
      return;
    }
    const { body, redraw, dialogue: newDialogue } = edits(frame, draft, seedValue);
    save.disabled = true;
    if (newDialogue !== null && !(await saveDialogue(frame, newDialogue))) {
      save.disabled = false;
      return;
    }
    if (redraw) {
      regenerateFrame(frame, { seed: seedValue, ...body });
      return;
    }
    state.editing = null;
    renderBoard();
    focusPanelButton(frame.id, ".edit");
  });

  form.append(
    el("label", { className: "small-label", text: "Panel text", attrs: { for: captionId } }),
    caption,
    el("label", { className: "small-label", text: "Scene (for the image, in English; blank = the text)",
      attrs: { for: sceneId } }),
    scene,
    el("label", { className: "small-label", text: "Seed (blank = random)", attrs: { for: seedId } }),
    seed,
    el("label", { className: "small-label", text: "Dialogue (under the text; not drawn)", attrs: { for: dialogueId } }),
    dialogue,
  );
  // A board of one unnamed character has no one to choose: its Edit stays as it was.
  if (boardHasNames(state.board)) {
    const options = boardCharacters(state.board).map((c) => ({ value: c.name, label: c.name }));
    form.append(castPicker(`edit-cast-${frame.id}`, options, draft.cast, (value) => { draft.cast = value; relabel(); }));
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
