/* Planning: the story split (or planned by an LLM) into rows to edit before drawing.
 */

import { api, ApiError, ENTRY } from "./api.js";
import { castIsNamed, readCast, validateCast } from "./cast.js";
import { $, actionButton, announce, el } from "./dom.js";
import { clearError, reportError, showError } from "./errors.js";
import { createBoard, readForm, validateForm } from "./form.js";
import { layoutCharacters, openLayoutEditor } from "./layout.js";
import { castPicker } from "./picker.js";
import { maxFrames, shotTypes } from "./presets.js";
import { state } from "./state.js";

export async function loadPlanner() {
  try {
    state.planner = await api("GET", ENTRY.planner);
  } catch (err) {
    state.planner = null; // the built-in splitter's label; the plan itself says who planned
  }
  renderPlanButton();
}

function plannerModel() {
  const p = state.planner;
  return p && p.llm && typeof p.model === "string" && p.model ? p.model : null;
}

function renderPlanButton() {
  const button = $("plan");
  const model = plannerModel();
  button.disabled = state.planning;
  button.textContent = state.planning ? "Planning…" : model ? `Plan with ${model}` : "Plan panels";
  button.title = model
    ? `Ask ${model}${state.planner.server ? ` (${state.planner.server})` : ""} for a plan to edit before drawing`
    : "Split the story into panels you can edit before drawing";
}

/** Plan the story (the premise) with the server's planner: rows to edit, nothing drawn. */
export async function planStory() {
  if (state.planning) return;
  clearError();
  const premise = $("story").value.trim();
  if (!premise) {
    showError(new ApiError("Write a story or a premise first, then plan it.", "story"));
    return;
  }
  const body = { premise };
  // A named cast is planned with: each row then says who is in it.
  const cast = readCast();
  const castProblem = validateCast(cast);
  if (castProblem) {
    showError(castProblem);
    return;
  }
  if (castIsNamed(cast)) body.characters = cast.map((c) => ({ name: c.name, traits: c.traits }));
  // As for Generate: a story written line by line has one panel per line, whatever the count.
  if (premise.split("\n").filter((line) => line.trim()).length <= 1) {
    const frames = Number.parseInt($("frames").value, 10);
    const problem = validateForm({ story: premise, frames, seed: null });
    if (problem) {
      showError(problem);
      return;
    }
    body.frames = frames;
  }
  setPlanning(true);
  try {
    const answer = await api("POST", ENTRY.plans, body);
    setPlan(answer, premise);
    $("plan-editor").scrollIntoView({ block: "start" });
    const first = document.querySelector("#plan-rows .plan-caption");
    if (first) first.focus({ preventScroll: true });
    announce(`Planned ${state.plan.rows.length} panels. Edit them, then draw the plan.`);
  } catch (err) {
    reportError(err);
  } finally {
    setPlanning(false);
  }
}

function setPlanning(on) {
  state.planning = on;
  renderPlanButton();
  $("draw-plan").disabled = on || state.submitting;
  $("plan-editor").setAttribute("aria-busy", String(on));
  const model = plannerModel();
  // An LLM's answer may take minutes (a model that loads, a CPU): say so, so nobody clicks twice.
  $("plan-status").textContent = !on ? ""
    : model ? `Asking ${model} for a plan… a local model can take a minute or more.` : "Planning…";
}

/** An answer with ``panels`` (a plan, a screenplay's scene) into the editor; ``premise``: the
 * story it was made from, to say when the story has changed since. */
export function setPlan(answer, premise) {
  state.plan = {
    source: answer && answer.source,
    notices: ((answer && answer.notices) || []).filter((n) => typeof n === "string" && n.trim()),
    premise,
    model: plannerModel(),
    rows: ((answer && answer.panels) || []).map(newPlanRow),
  };
  renderPlan();
}

/* The scene is kept blank while it is the caption (the built-in splitter's plan): blank
 * means "the caption", so an edited caption is what gets drawn. A row's cast holds the
 * form's cast rows by key (so a renamed character stays in), or null: whoever the row's
 * text names, as the server decides for a panel without a cast. */
function newPlanRow(panel = {}) {
  const caption = typeof panel.caption === "string" ? panel.caption : "";
  const scene = typeof panel.scene === "string" && panel.scene.trim() !== caption.trim() ? panel.scene : "";
  const shot = typeof panel.shot === "string" ? panel.shot : "";
  const dialogue = typeof panel.dialogue === "string" ? panel.dialogue : "";
  return { key: state.planRowKey++, caption, scene, shot, dialogue, cast: castKeys(panel.cast), layout: null };
}

/** The form's cast rows (keys) of a plan's names; null for no names or no named cast. */
function castKeys(names) {
  const cast = readCast();
  if (!Array.isArray(names) || !castIsNamed(cast)) return null;
  const byName = new Map(cast.filter((c) => c.name).map((c) => [c.name.toLowerCase(), c.key]));
  return names.map((name) => byName.get(String(name).toLowerCase())).filter(Boolean);
}

/** A plan row's cast as names for the server, or null (the row's text decides). */
function castNames(keys) {
  if (keys === null) return null;
  return readCast().filter((c) => keys.includes(c.key)).map((c) => c.name);
}

/* A character left the form's cast: plan rows drop it, and a row it alone was in goes back
 * to whoever its text names rather than silently to no one. */
export function forgetPlanCharacter(key) {
  if (!state.plan) return;
  for (const row of state.plan.rows) {
    if (row.cast === null || !row.cast.includes(key)) continue;
    row.cast = row.cast.filter((k) => k !== key);
    if (!row.cast.length) row.cast = null;
  }
}

export function discardPlan() {
  state.plan = null;
  clearError();
  renderPlan();
  $("plan").focus();
}

function planSourceText(plan) {
  if (plan.source === "llm") {
    return `Planned by ${plan.model || "the language model"}: captions in your language, scenes in English for the image.`;
  }
  if (plan.source === "screenplay") {
    return "Read from the screenplay: a panel for each action beat, with the dialogue after it; the scene heading is in each scene.";
  }
  if (plan.source === "fallback") {
    return `Planned by the built-in splitter: ${plan.model || "the language model"}'s plan was not used (see why below).`;
  }
  return "Planned by the built-in splitter: each caption is your words, and so is its scene.";
}

export function renderPlan() {
  const editor = $("plan-editor");
  const plan = state.plan;
  editor.hidden = !plan;
  if (!plan) {
    $("plan-rows").replaceChildren();
    return;
  }
  $("plan-source").textContent = planSourceText(plan);
  const notices = $("plan-notices");
  notices.replaceChildren(...plan.notices.map((text) => el("li", { text })));
  notices.hidden = plan.notices.length === 0;
  notices.classList.toggle("warn", plan.source === "fallback");
  const rows = plan.rows;
  $("plan-rows").replaceChildren(...rows.map((row, i) => renderPlanRow(row, i, rows.length)));
  $("plan-add").disabled = rows.length >= maxFrames();
  renderPlanStale();
}

export function renderPlanStale() {
  $("plan-stale").hidden = !state.plan || $("story").value.trim() === state.plan.premise;
}

function renderPlanRow(row, i, count) {
  const n = i + 1;
  const li = el("li", { className: "plan-row", attrs: { "data-key": row.key, "aria-label": `Panel ${n}` } });
  const head = el("div", { className: "plan-row-head" }, [
    el("span", { className: "plan-number", text: `Panel ${n}` }),
    el("span", { className: "plan-row-buttons" }, [
      actionButton("plan-up", "↑", `Move panel ${n} up`, () => movePlanRow(row.key, -1), i === 0),
      actionButton("plan-down", "↓", `Move panel ${n} down`, () => movePlanRow(row.key, 1), i === count - 1),
      actionButton("ghost plan-delete", "✕", `Delete panel ${n}`, () => deletePlanRow(row.key), count <= 1),
    ]),
  ]);
  const caption = planText(row, "caption", 2, { placeholder: "What happens, in your words" });
  const scene = planText(row, "scene", 2, { placeholder: "Same as the caption" });
  const dialogue = planText(row, "dialogue", 1, { placeholder: "None" });
  const shot = el("select", { className: "plan-shot", attrs: { id: `plan-shot-${row.key}` } });
  // The row's own shot stays choosable even when this page does not know it.
  const shots = shotTypes().includes(row.shot) || !row.shot ? shotTypes() : [...shotTypes(), row.shot];
  shot.append(el("option", { text: "any (by position)", attrs: { value: "" } }),
    ...shots.map((name) => el("option", { text: name, attrs: { value: name } })));
  shot.value = row.shot;
  shot.addEventListener("change", () => { row.shot = shot.value; });

  li.append(
    head,
    planLabel(caption, "Caption"),
    caption,
    planLabel(scene, "Scene", "for the image, in English; blank = the caption"),
    scene,
    planLabel(dialogue, "Dialogue", "spoken over it, shown under the caption"),
    dialogue,
    el("div", { className: "plan-shot-row" }, [planLabel(shot, "Shot"), shot]),
  );
  // One unnamed character too: a panel may show no one (an establishing shot of a place).
  const cast = readCast();
  const options = cast.map((c, j) => ({ value: c.key, label: c.name || (cast.length === 1 ? "main character" : `Character ${j + 1}`) }));
  li.append(castPicker(`plan-cast-${row.key}`, options, row.cast, (value) => { row.cast = value; }));
  li.append(renderPlanLayout(row, n));
  return li;
}

/** The row's layout in words, and the button that sketches or poses it. */
function renderPlanLayout(row, n) {
  const words = !row.layout ? "none"
    : row.layout.kind === "pose" ? `pose of ${row.layout.poses.map((p) => p.character || "the character").join(", ")}`
      : "sketch";
  const layoutButton = actionButton("plan-layout-edit", row.layout ? "Change" : "Sketch or pose",
    `Sketch or pose the composition of panel ${n}`, () => editPlanLayout(row, n));
  layoutButton.id = `plan-layout-${row.key}`;
  return el("div", { className: "plan-layout-row" }, [
    el("span", { className: "small-label", text: "Layout" }),
    el("span", { className: "plan-layout", text: words }),
    layoutButton,
  ]);
}

/* A pose has one figure per character in the row; a row that leaves that to its text is
 * posed with the whole cast, and then shows exactly them. */
async function editPlanLayout(row, n) {
  const cast = readCast();
  const keys = row.cast === null ? cast.map((c) => c.key) : row.cast;
  const aspect = ((state.presets && state.presets.aspects) || []).find((a) => a.name === $("aspect").value) || {};
  const layout = await openLayoutEditor({
    title: `Layout of panel ${n}`,
    width: aspect.width || 16,
    height: aspect.height || 9,
    characters: layoutCharacters(cast.filter((c) => keys.includes(c.key)).map((c) => c.name)),
    layout: row.layout,
  });
  if (layout === undefined) return; // cancelled
  clearError(); // an error about this row's layout is settled by a new one
  row.layout = layout;
  if (layout && layout.kind === "pose") row.cast = keys;
  renderPlan();
  focusPlanRow(row.key, ".plan-layout-edit");
}

function planText(row, name, rows, attrs) {
  const area = el("textarea", { className: `plan-${name}`, attrs: { id: `plan-${name}-${row.key}`, rows, ...attrs } });
  area.value = row[name];
  area.addEventListener("input", () => { row[name] = area.value; });
  return area;
}

function planLabel(control, text, hint) {
  const label = el("label", { className: "small-label", text, attrs: { for: control.id } });
  if (hint) label.append(" ", el("span", { className: "optional", text: `(${hint})` }));
  return label;
}

function focusPlanRow(key, selector) {
  const row = document.querySelector(`#plan-rows .plan-row[data-key="${CSS.escape(String(key))}"]`);
  if (!row) return;
  const target = row.querySelector(`${selector}:not([disabled])`) || row.querySelector("textarea");
  if (target) target.focus();
}

/* Rows move, go and come: an error about a row by its position would now point elsewhere. */
function movePlanRow(key, delta) {
  const rows = state.plan.rows;
  const from = rows.findIndex((row) => row.key === key);
  const to = from + delta;
  if (from < 0 || to < 0 || to >= rows.length) return;
  [rows[from], rows[to]] = [rows[to], rows[from]];
  clearError();
  renderPlan();
  focusPlanRow(key, delta < 0 ? ".plan-up" : ".plan-down");
  announce(`Moved to panel ${to + 1}.`);
}

function deletePlanRow(key) {
  const rows = state.plan.rows;
  const at = rows.findIndex((row) => row.key === key);
  if (at < 0 || rows.length <= 1) return;
  rows.splice(at, 1);
  clearError();
  renderPlan();
  const next = rows[Math.min(at, rows.length - 1)];
  focusPlanRow(next.key, ".plan-delete");
  announce(`Panel ${at + 1} deleted.`);
}

export function addPlanRow() {
  if (!state.plan || state.plan.rows.length >= maxFrames()) return;
  const row = newPlanRow();
  state.plan.rows.push(row);
  clearError();
  renderPlan();
  focusPlanRow(row.key, ".plan-caption");
}

/** Draw the plan's rows as the board's panels, with the rest of the form, as Generate does. */
export async function drawPlan() {
  if (!state.plan || state.submitting || state.planning) return;
  clearError();
  const rows = state.plan.rows;
  const values = { ...readForm(), frames: rows.length };
  const problem = validateForm(values, { storyRequired: false }) || validateCast(readCast());
  if (problem) {
    showError(problem);
    return;
  }
  const blank = rows.findIndex((row) => !row.caption.trim());
  if (blank >= 0) {
    showError(new ApiError(`Panel ${blank + 1} needs a caption.`, `panels[${blank}].caption`));
    return;
  }
  values.panels = rows.map((row) => {
    const panel = { caption: row.caption.trim(), scene: row.scene.trim(), shot: row.shot };
    if (row.dialogue.trim()) panel.dialogue = row.dialogue.trim();
    const cast = castNames(row.cast); // the one unnamed character is "", so [] is still no one
    if (cast !== null) panel.cast = cast; // missing: whoever the row's text names
    if (row.layout) panel.layout = row.layout;
    return panel;
  });
  await createBoard(values, $("draw-plan"), { inPlan: true });
}
