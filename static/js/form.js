/* Generating: the form read, checked and sent; Reuse settings puts a board back into it.
 */

import { api, ApiError, ENTRY } from "./api.js";
import { openBoard, revealBoard } from "./board.js";
import { castIsNamed, readCast, setCast, validateCast } from "./cast.js";
import { $, announce } from "./dom.js";
import { clearError, reportError, showError } from "./errors.js";
import { checkHealth } from "./health.js";
import { refreshHistory } from "./history.js";
import { maxFrames, renderPresetHint } from "./presets.js";
import { boardCharacters, state } from "./state.js";

export function readForm() {
  const seedText = $("seed").value.trim();
  return {
    story: $("story").value.trim(),
    frames: Number.parseInt($("frames").value, 10),
    preset: $("preset").value,
    aspect: $("aspect").value,
    style: $("style").value.trim(),
    seed: seedText === "" ? null : Number(seedText),
    identity_lock: $("identity-lock").checked,
    consistent_look: $("consistent-look").checked,
  };
}

/** The form's own checks; a plan brings its panels, so its story may be blank. */
export function validateForm(values, { storyRequired = true } = {}) {
  const max = maxFrames();
  if (storyRequired && !values.story) {
    return new ApiError("Write a story first: one line per panel, or a short premise.", "story");
  }
  if (!Number.isInteger(values.frames) || values.frames < 1 || values.frames > max) {
    return new ApiError(`The panel count must be a whole number from 1 to ${max}.`, "frames");
  }
  if (values.seed !== null && (!Number.isInteger(values.seed) || values.seed < 0)) {
    return new ApiError("The seed must be a whole number of 0 or more (or blank for random).", "seed");
  }
  return null;
}

/** The board's request: one unnamed character as ``character`` (its face ``reference``),
 * a cast as ``characters`` (faces ``reference_1``...); JSON, or a form when a face is chosen. */
function buildRequestBody(values, cast) {
  const body = { ...values };
  const faces = [];
  if (castIsNamed(cast)) {
    body.characters = cast.map((c) => ({ name: c.name, traits: c.traits }));
    cast.forEach((c, i) => { if (c.file) faces.push([`reference_${i + 1}`, c.file]); });
  } else {
    body.character = cast[0] ? cast[0].traits : "";
    if (cast[0] && cast[0].file) faces.push(["reference", cast[0].file]);
  }
  if (!faces.length) return body;
  const form = new FormData();
  for (const [name, value] of Object.entries(body)) {
    if (value === null) continue;
    if (typeof value === "object") form.append(name, JSON.stringify(value)); // the cast, a plan's panels
    else form.append(name, typeof value === "boolean" ? String(value) : value);
  }
  for (const [name, file] of faces) form.append(name, file, file.name);
  return form;
}

export async function onSubmit(event) {
  event.preventDefault();
  if (state.submitting) return;
  clearError();
  const values = readForm();
  const problem = validateForm(values) || validateCast(readCast());
  if (problem) {
    showError(problem);
    return;
  }
  await createBoard(values, $("generate"));
}

/** POST the board (Generate, or Draw this plan from ``button``), then open it. */
export async function createBoard(values, button, { inPlan = false } = {}) {
  state.submitting = true;
  const label = button.textContent;
  $("generate").disabled = true; // one board per click, whichever button
  $("draw-plan").disabled = true;
  button.textContent = "Starting…";
  try {
    const created = await api("POST", ENTRY.storyboards, buildRequestBody(values, readCast()));
    if (created && Array.isArray(created.notices)) state.createdNotices[String(created.id)] = created.notices;
    await openBoard(created.id, created.links.self, { subscribe: true });
    revealBoard();
    refreshHistory();
    checkHealth(); // the first job may start loading the model
  } catch (err) {
    reportError(err, { inPlan });
    if (err.status === 0 || err.status >= 500) checkHealth(); // e.g. a full disk: the banner says so too
  } finally {
    state.submitting = false;
    button.textContent = label;
    $("generate").disabled = false;
    $("draw-plan").disabled = state.planning;
  }
}

/** Put an opened board's inputs back into the form, to draw a variation of it. */
export function reuseSettings() {
  const board = state.board;
  if (!board) return;
  const s = board.settings || {};
  clearError();
  $("story").value = board.story || "";
  setCast(boardCharacters(board)); // names and traits; an uploaded face is to be chosen again
  $("style").value = board.style || "";
  if ((board.frames || []).length) $("frames").value = board.frames.length;
  setSelect($("preset"), s.preset);
  setSelect($("aspect"), s.aspect);
  $("seed").value = s.seed ?? "";
  if (typeof s.identity_lock === "boolean") $("identity-lock").checked = s.identity_lock;
  if (typeof s.consistent_look === "boolean") $("consistent-look").checked = s.consistent_look;
  renderPresetHint(); // the mode, the panels, the cast and the look: what the estimate reads
  $("story").focus();
  announce("The board's settings are in the form.");
}

function setSelect(select, value) {
  if (value && [...select.options].some((option) => option.value === value)) select.value = value;
}
