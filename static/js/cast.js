/* The form's cast editor. The form's cast is its rows, in the page: each row is one character
 * (name, traits, an optional face in a file input), so a chosen file stays where it was chosen.
 * A row's data-key never changes; its ids follow its place (the first row's are "character" and
 * "reference", as when the form had one character).
 */

import { ApiError } from "./api.js";
import { $, announce } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { castRows } from "./fields.js";
import { state } from "./state.js";

const ACCEPTED_TYPES = ["image/png", "image/jpeg", "image/webp"];

/* The plan follows the cast (its rows pick characters by key): main.js says what to call, so
 * the cast editor needs no plan. */
const followers = { changed: () => {}, removed: () => {} };

/** ``changed()``: names or rows changed; ``removed(key)``: the row with this key is gone. */
export function followCast({ changed, removed }) {
  followers.changed = changed;
  followers.removed = removed;
}

function maxCharacters() {
  return (state.presets && state.presets.max_characters) || 4;
}

/** The form's cast: [{key, name, traits, file}], in order. */
export function readCast() {
  return castRows().map((row) => ({
    key: row.dataset.key,
    name: row.querySelector(".cast-name").value.trim(),
    traits: row.querySelector(".cast-traits").value.trim(),
    file: (row.querySelector(".cast-face").files || [])[0] || null,
  }));
}

/** One character without a name is the form as it was before the cast: the old fields. */
export function castIsNamed(cast) {
  return cast.length > 1 || Boolean(cast[0] && cast[0].name);
}

/** The form's own check of the cast: several characters are told apart by name. */
export function validateCast(cast) {
  if (cast.length < 2) return null;
  const unnamed = cast.findIndex((c) => !c.name);
  if (unnamed < 0) return null;
  return new ApiError(`Character ${unnamed + 1} needs a name: a cast of several is told apart by name.`,
    `characters[${unnamed}].name`);
}

export function addCastRow({ name = "", traits = "" } = {}) {
  const row = $("cast-row-template").content.firstElementChild.cloneNode(true);
  row.dataset.key = String(state.castKey++);
  row.querySelector(".cast-name").value = name;
  row.querySelector(".cast-traits").value = traits;
  row.querySelector(".cast-name").addEventListener("input", onCastNamesChange);
  row.querySelector(".cast-face").addEventListener("change", () => onFaceChange(row));
  row.querySelector(".face-remove").addEventListener("click", () => removeFace(row));
  row.querySelector(".cast-remove").addEventListener("click", () => removeCastRow(row));
  $("cast-rows").append(row);
  renderCast();
  return row;
}

export function onAddCharacter() {
  if (castRows().length >= maxCharacters()) return;
  clearError(); // an error about a row by its place may now point elsewhere
  const row = addCastRow();
  onCastNamesChange();
  row.querySelector(".cast-name").focus();
  announce(`Character ${castRows().length} added.`);
}

function removeCastRow(row) {
  const rows = castRows();
  const at = rows.indexOf(row);
  if (at < 0 || rows.length <= 1) return;
  clearFacePreview(row);
  row.remove();
  clearError();
  followers.removed(row.dataset.key);
  renderCast();
  onCastNamesChange();
  const next = castRows()[Math.min(at, castRows().length - 1)];
  next.querySelector(".cast-name").focus();
  announce(`Character ${at + 1} removed.`);
}

/** Ids, labels and buttons by place: a cast of one looks as the form did before the cast. */
export function renderCast() {
  const rows = castRows();
  const several = rows.length > 1;
  rows.forEach((row, i) => {
    const k = i + 1;
    const id = (base) => (k === 1 ? base : `${base}-${k}`);
    const ids = { name: id("character-name"), traits: id("character"), face: id("reference") };
    const parts = [
      [".cast-name", ".cast-name-label", ids.name],
      [".cast-traits", ".cast-traits-label", ids.traits],
      [".cast-face", ".cast-face-label", ids.face],
    ];
    for (const [control, label, value] of parts) {
      row.querySelector(control).id = value;
      row.querySelector(label).htmlFor = value;
    }
    row.querySelector(".cast-traits-hint").id = id("character-hint");
    row.querySelector(".cast-traits").setAttribute("aria-describedby", id("character-hint"));
    row.querySelector(".cast-face-hint").id = id("reference-hint");
    row.querySelector(".cast-face").setAttribute("aria-describedby", id("reference-hint"));
    row.querySelector(".reuse-note").id = id("reuse-note");
    row.querySelector(".reference-preview").id = id("reference-preview");
    row.setAttribute("aria-label", several ? `Character ${k}` : "Main character");
    row.querySelector(".cast-number").textContent = `Character ${k}`;
    const name = row.querySelector(".cast-name");
    name.required = several;
    row.querySelector(".cast-name-label .optional").hidden = several;
    const remove = row.querySelector(".cast-remove");
    remove.hidden = !several;
    remove.setAttribute("aria-label", `Remove character ${k}`);
    row.querySelector(".face-remove").setAttribute("aria-label", `Remove the reference face of character ${k}`);
  });
  $("cast-editor").classList.toggle("several", several);
  $("cast-legend").textContent = several ? `Cast (${rows.length} of ${maxCharacters()})` : "Main character";
  $("cast-add").disabled = rows.length >= maxCharacters();
  $("cast-hint").textContent = `Up to ${maxCharacters()}. With several, each needs a name: a panel shows whoever its text names.`;
}

/** Put a board's cast into the form (Reuse settings): rows are kept by place, faces cleared. */
export function setCast(characters) {
  const wanted = characters.slice(0, maxCharacters());
  if (!wanted.length) return;
  let rows = castRows();
  for (const row of rows.slice(wanted.length)) {
    clearFacePreview(row);
    row.remove();
    followers.removed(row.dataset.key);
  }
  while (castRows().length < wanted.length) addCastRow();
  rows = castRows();
  wanted.forEach((character, i) => {
    const row = rows[i];
    row.querySelector(".cast-name").value = character.name || "";
    row.querySelector(".cast-traits").value = character.traits || "";
    row.querySelector(".cast-face").value = "";
    clearFacePreview(row);
    // A file input cannot be filled from a URL: say so rather than draw a different face.
    row.querySelector(".reuse-note").hidden = !(character.reference && character.reference.kind === "uploaded");
  });
  renderCast();
  onCastNamesChange();
}

/** The plan's rows pick characters by name: they follow the names as they are typed. */
function onCastNamesChange() {
  followers.changed();
}

async function onFaceChange(row) {
  const input = row.querySelector(".cast-face");
  const file = input.files && input.files[0];
  clearFacePreview(row);
  if (!file) return;
  const refuse = (why) => {
    input.value = "";
    showError(new ApiError(`${faceFieldName(row)} (${file.name}) ${why}: choose a PNG, JPEG or WebP image.`, input.id));
  };
  if (file.type && !ACCEPTED_TYPES.includes(file.type)) {
    refuse("is not an image the studio takes");
    return;
  }
  input.removeAttribute("aria-invalid");
  row.querySelector(".reuse-note").hidden = true;
  const url = URL.createObjectURL(file);
  state.facePreviews.set(row.dataset.key, url);
  // A file that is not a picture, or a broken one, would show as a broken image: decode it
  // whole first (an <img> shows a cut-off PNG as if it were whole).
  let readable = true;
  try {
    (await createImageBitmap(file)).close();
  } catch (err) {
    readable = false;
  }
  if (state.facePreviews.get(row.dataset.key) !== url) return; // another file was chosen meanwhile
  if (!readable) {
    clearFacePreview(row);
    refuse("cannot be read as an image");
    return;
  }
  const preview = row.querySelector(".reference-preview");
  preview.querySelector("img").src = url;
  preview.querySelector(".file-name").textContent = file.name;
  preview.hidden = false;
}

/** The face field as the form names it: "The reference face", or "Character 2's reference face". */
function faceFieldName(row) {
  const rows = castRows();
  return rows.length > 1 ? `Character ${rows.indexOf(row) + 1}'s reference face` : "The reference face";
}

function clearFacePreview(row) {
  const url = state.facePreviews.get(row.dataset.key);
  if (url) URL.revokeObjectURL(url);
  state.facePreviews.delete(row.dataset.key);
  const preview = row.querySelector(".reference-preview");
  preview.querySelector("img").removeAttribute("src");
  preview.querySelector(".file-name").textContent = "";
  preview.hidden = true;
}

function removeFace(row) {
  const input = row.querySelector(".cast-face");
  input.value = "";
  row.querySelector(".reuse-note").hidden = true;
  clearFacePreview(row);
  input.removeAttribute("aria-invalid");
  if (state.errorField === input.id) clearError(); // the face the server refused is gone
  input.focus();
}

