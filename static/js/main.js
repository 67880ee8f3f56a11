/* Storyboard Studio: the page's entry module. It wires the page's controls to the feature
 * modules and starts; a module script runs once the document is parsed.
 *
 * The form's modules (fields, errors, presets, cast, plan, form) import only downward; where a
 * lower one must make a higher one redraw (the cast the plan, the presets both), it takes a
 * callback that this module passes. The board's modules (board, events, view, panels, edit,
 * drag, history, health) import one another: a panel's buttons act on the board, and the board
 * then draws its panels again. That is safe, since no module runs code on import but this one.
 */

import { boardUrl } from "./api.js";
import { boardIdFromHash, cancelBoard, openBoard, refineBoard, resumeBoard, revealBoard } from "./board.js";
import { addCastRow, followCast, onAddCharacter, renderCast } from "./cast.js";
import { onDialogClick } from "./dialog.js";
import { $ } from "./dom.js";
import { setUpAnimatic } from "./animatic.js";
import { setUpLayoutDialog } from "./layout.js";
import { onFormInput } from "./errors.js";
import { cancelAnimatic, importStoryboarder, startAnimatic, toggleAnimatic } from "./exports.js";
import { onSubmit, reuseSettings } from "./form.js";
import { checkHealth } from "./health.js";
import { refreshHistory } from "./history.js";
import {
  addPlanRow, discardPlan, drawPlan, forgetPlanCharacter, loadPlanner, planStory, renderPlan,
  renderPlanStale,
} from "./plan.js";
import { loadPresets, renderPresetHint } from "./presets.js";
import { setUpScreenplay } from "./screenplay.js";
import { state } from "./state.js";
import { renderAll } from "./view.js";

function onFormKeydown(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    // In the plan, the shortcut draws the plan; elsewhere it generates from the story.
    if (event.target.closest && event.target.closest("#plan-editor")) drawPlan();
    else $("story-form").requestSubmit();
  }
}

function bindEvents() {
  const form = $("story-form");
  form.addEventListener("submit", onSubmit);
  form.addEventListener("keydown", onFormKeydown);
  form.addEventListener("input", onFormInput); // selects, checkboxes and files send "input" too
  // The plan editor sits in the wide board pane, outside the form: the same shortcut and
  // the same clearing of a field's error there.
  $("plan-editor").addEventListener("keydown", onFormKeydown);
  $("plan-editor").addEventListener("input", onFormInput);
  $("cast-add").addEventListener("click", onAddCharacter);
  $("plan").addEventListener("click", planStory);
  $("plan-add").addEventListener("click", addPlanRow);
  $("plan-discard").addEventListener("click", discardPlan);
  $("draw-plan").addEventListener("click", drawPlan);
  $("story").addEventListener("input", renderPlanStale);
  $("preset").addEventListener("change", renderPresetHint);
  $("frames").addEventListener("input", renderPresetHint); // the board's estimated time
  $("consistent-look").addEventListener("change", renderPresetHint); // ... which the look adds to
  $("identity-lock").addEventListener("change", renderPresetHint);
  $("cancel").addEventListener("click", cancelBoard);
  $("resume").addEventListener("click", resumeBoard);
  $("reuse").addEventListener("click", reuseSettings);
  $("refine").addEventListener("click", refineBoard);
  $("export-animatic").addEventListener("click", toggleAnimatic);
  $("animatic-start").addEventListener("click", startAnimatic);
  $("animatic-cancel").addEventListener("click", cancelAnimatic);
  $("import-storyboarder").addEventListener("change", (event) => importStoryboarder(event, async (created) => {
    await openBoard(created.id, created.links.self, { subscribe: true });
    revealBoard();
    refreshHistory();
  }));
  $("panel-dialog").addEventListener("click", onDialogClick);
  setUpLayoutDialog();
  setUpAnimatic();
  setUpScreenplay();
  $("seed").addEventListener("animationend", () => $("seed").classList.remove("flash"));
  window.addEventListener("hashchange", () => {
    const id = boardIdFromHash();
    if (id && id !== state.boardId) openBoard(id, boardUrl(id), { subscribe: true });
  });
}

function collapseHistoryOnPhones() {
  if (window.matchMedia("(max-width: 800px)").matches) $("history-section").open = false;
}

/** The plan, drawn again when what it shows changed elsewhere (the cast, the presets). */
function renderPlanIfAny() {
  if (state.plan) renderPlan();
}

async function start() {
  followCast({ changed: () => { renderPlanIfAny(); renderPresetHint(); }, removed: forgetPlanCharacter });
  addCastRow(); // the first character: the form as it was before the cast
  bindEvents();
  collapseHistoryOnPhones();
  renderAll();
  checkHealth();
  loadPlanner();
  await loadPresets(() => {
    renderCast(); // the cast's limit comes from the server too
    renderPlanIfAny(); // the shots may come from the server
  });
  refreshHistory();
  const id = boardIdFromHash();
  if (id) openBoard(id, boardUrl(id), { subscribe: true });
}

start();
