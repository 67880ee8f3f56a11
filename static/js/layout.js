/* The layout dialog: a panel's composition sketched (js/sketch.js) or its characters posed
 * (js/pose.js), with how closely the panel should follow it. It knows nothing of boards or
 * plans: openLayoutEditor() is handed the panel's size, its characters and its layout, and
 * answers with the new layout for the caller to send.
 */

import { $, el, safeUrl } from "./dom.js";
import { POSE_LABELS, PoseEditor } from "./pose.js";
import { SketchCanvas } from "./sketch.js";

let sketch = null;
let pose = null;
let kind = "sketch";
let strengthSet = false; // until the slider is moved, the studio's default strength for the kind
let answer = null; // resolves the open dialog's promise

/** Wire the dialog's controls, once (main.js). */
export function setUpLayoutDialog() {
  sketch = new SketchCanvas($("sketch-canvas"), renderButtons);
  pose = new PoseEditor($("pose-canvas"), renderButtons);
  for (const tab of document.querySelectorAll("#layout-dialog [role=tab]")) {
    tab.addEventListener("click", () => showKind(tab.dataset.kind));
  }
  $("sketch-pen").addEventListener("click", () => chooseTool("pen"));
  $("sketch-eraser").addEventListener("click", () => chooseTool("eraser"));
  $("sketch-undo").addEventListener("click", () => sketch.undo());
  $("sketch-clear").addEventListener("click", () => sketch.clear());
  $("sketch-upload").addEventListener("change", uploadDrawing);
  $("pose-starts").replaceChildren(...Object.entries(POSE_LABELS).map(([name, label]) => {
    const button = el("button", { className: "button small pose-start", text: label,
      attrs: { type: "button", "data-pose": name } });
    button.addEventListener("click", () => pose.pose(name));
    return button;
  }));
  $("pose-figure").addEventListener("change", () => {
    pose.selected = Number($("pose-figure").value);
    pose.render();
  });
  $("pose-smaller").addEventListener("click", () => pose.resize(1 / 1.15));
  $("pose-bigger").addEventListener("click", () => pose.resize(1.15));
  $("pose-undo").addEventListener("click", () => pose.undo());
  $("pose-clear").addEventListener("click", () => pose.clear());
  $("layout-strength").addEventListener("input", () => {
    strengthSet = true;
    renderStrength();
  });
  $("layout-apply").addEventListener("click", apply);
  $("layout-remove").addEventListener("click", () => finish(null));
  $("layout-dialog").addEventListener("keydown", onKeydown);
  $("layout-dialog").addEventListener("close", () => finish(undefined));
}

/** The figures of a pose for a panel with these characters' names ("" is the one unnamed). */
export function layoutCharacters(names) {
  return names.map((name) => ({ name, label: name || "the character" }));
}

/** Edit a panel's layout in the dialog. ``width`` x ``height``: the panel's size (its aspect);
 * ``characters``: [{name, label}], who is in it (a pose has one figure each); ``layout``: its
 * layout as the studio or a plan row has it, or null. Answers the new layout ({kind, image} or
 * {kind, poses}, with ``strength`` once the slider is moved), null to remove it, or undefined
 * when the dialog is cancelled. */
export async function openLayoutEditor({ title, width, height, characters, layout = null }) {
  const dialog = $("layout-dialog");
  if (answer || dialog.open) return undefined; // one layout at a time (a second click while the sketch loads)
  const answered = new Promise((resolve) => { answer = resolve; });
  $("layout-dialog-title").textContent = title;
  $("layout-error").textContent = "";
  const image = layout && layout.kind === "sketch" ? await loadImage(layout.image) : null;
  sketch.reset(width, height, image);
  pose.reset(width, height, characters, layout && layout.kind === "pose" ? layout.poses || [] : []);
  $("pose-figure").replaceChildren(...characters.map((c, i) => el("option", { text: c.label, attrs: { value: i } })));
  const nobody = characters.length === 0;
  $("pose-nobody").hidden = !nobody;
  $("pose-canvas").hidden = nobody;
  strengthSet = Boolean(layout && typeof layout.strength === "number");
  $("layout-strength").value = strengthSet ? layout.strength : 0.5;
  renderStrength();
  $("layout-remove").hidden = !layout;
  chooseTool("pen");
  showKind(layout ? layout.kind : "sketch");
  dialog.showModal();
  return answered;
}

/** The stored sketch (a URL from the studio, or a plan row's data URL) as the starting drawing. */
async function loadImage(url) {
  const src = safeUrl(url);
  if (!src) return null;
  const image = new Image();
  image.src = src;
  try {
    await image.decode();
    return image;
  } catch (err) {
    return null; // the sketch starts blank; the panel keeps its stored layout until one is sent
  }
}

function finish(value) {
  const resolve = answer;
  answer = null;
  if ($("layout-dialog").open) $("layout-dialog").close();
  if (resolve) resolve(value);
}

function apply() {
  let value;
  if (kind === "sketch") {
    if (sketch.isBlank()) {
      $("layout-error").textContent = "The sketch is blank: draw the composition, or cancel.";
      return;
    }
    value = { kind: "sketch", image: sketch.toDataURL() };
  } else {
    if (!pose.figures.length) {
      $("layout-error").textContent = "No one is in this panel to pose.";
      return;
    }
    value = { kind: "pose", poses: pose.poses() };
  }
  if (strengthSet) value.strength = Number($("layout-strength").value);
  finish(value);
}

function showKind(name) {
  kind = name;
  for (const tab of document.querySelectorAll("#layout-dialog [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.kind === name));
    tab.classList.toggle("primary", tab.dataset.kind === name);
  }
  $("layout-sketch").hidden = name !== "sketch";
  $("layout-pose").hidden = name !== "pose";
  $("layout-error").textContent = "";
  renderButtons();
}

function chooseTool(tool) {
  sketch.tool = tool;
  $("sketch-pen").setAttribute("aria-pressed", String(tool === "pen"));
  $("sketch-eraser").setAttribute("aria-pressed", String(tool === "eraser"));
}

function renderStrength() {
  $("layout-strength-value").textContent = strengthSet ? Number($("layout-strength").value).toFixed(2) : "default";
}

/** The buttons follow the editors: undo only with something to undo, the chosen figure shown. */
function renderButtons() {
  $("sketch-undo").disabled = !sketch.canUndo();
  $("pose-undo").disabled = !pose.canUndo();
  if (pose.figures.length) $("pose-figure").value = String(pose.selected);
  for (const id of ["pose-figure", "pose-smaller", "pose-bigger", "pose-clear"]) $(id).disabled = !pose.figures.length;
  for (const button of document.querySelectorAll("#pose-starts button")) button.disabled = !pose.figures.length;
  $("layout-error").textContent = "";
}

async function uploadDrawing() {
  const input = $("sketch-upload");
  const file = input.files && input.files[0];
  input.value = ""; // the same file may be chosen again after an undo
  if (!file) return;
  try {
    sketch.load(await createImageBitmap(file));
  } catch (err) {
    $("layout-error").textContent = `${file.name} is not a picture this browser can read: try a PNG or JPEG.`;
  }
}

/* Ctrl/Cmd+Z undoes, Delete or Backspace clears, P and E pick the pen and the eraser; not
 * while a control that takes those keys itself (the figure list, the slider) has the focus. */
function onKeydown(event) {
  const editor = kind === "sketch" ? sketch : pose;
  if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
    event.preventDefault();
    editor.undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.matches("input, select, textarea")) return;
  if (event.key === "Delete" || event.key === "Backspace") {
    event.preventDefault();
    editor.clear();
  } else if (kind === "sketch" && (event.key === "p" || event.key === "e")) {
    chooseTool(event.key === "p" ? "pen" : "eraser");
  }
}
