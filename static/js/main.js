/* Storyboard Studio: the page's entry module. It wires the page's controls to the feature
 * modules and starts; a module script runs once the document is parsed.
 */

import { boardUrl } from "./api.js";
import { boardIdFromHash, cancelBoard, openBoard, resumeBoard } from "./board.js";
import { addCastRow, onAddCharacter } from "./cast.js";
import { onDialogClick } from "./dialog.js";
import { $ } from "./dom.js";
import { onFormInput } from "./errors.js";
import { onFormKeydown, onSubmit, reuseSettings } from "./form.js";
import { checkHealth } from "./health.js";
import { refreshHistory } from "./history.js";
import { addPlanRow, discardPlan, drawPlan, loadPlanner, planStory, renderPlanStale } from "./plan.js";
import { loadPresets, renderPresetHint } from "./presets.js";
import { state } from "./state.js";
import { renderAll } from "./view.js";

function bindEvents() {
  const form = $("story-form");
  form.addEventListener("submit", onSubmit);
  form.addEventListener("keydown", onFormKeydown);
  form.addEventListener("input", onFormInput); // selects, checkboxes and files send "input" too
  $("cast-add").addEventListener("click", onAddCharacter);
  $("plan").addEventListener("click", planStory);
  $("plan-add").addEventListener("click", addPlanRow);
  $("plan-discard").addEventListener("click", discardPlan);
  $("draw-plan").addEventListener("click", drawPlan);
  $("story").addEventListener("input", renderPlanStale);
  $("preset").addEventListener("change", renderPresetHint);
  $("cancel").addEventListener("click", cancelBoard);
  $("resume").addEventListener("click", resumeBoard);
  $("reuse").addEventListener("click", reuseSettings);
  $("panel-dialog").addEventListener("click", onDialogClick);
  $("seed").addEventListener("animationend", () => $("seed").classList.remove("flash"));
  window.addEventListener("hashchange", () => {
    const id = boardIdFromHash();
    if (id && id !== state.boardId) openBoard(id, boardUrl(id), { subscribe: true });
  });
}

function collapseHistoryOnPhones() {
  if (window.matchMedia("(max-width: 800px)").matches) $("history-section").open = false;
}

async function start() {
  addCastRow(); // the first character: the form as it was before the cast
  bindEvents();
  collapseHistoryOnPhones();
  renderAll();
  checkHealth();
  loadPlanner();
  await loadPresets();
  refreshHistory();
  const id = boardIdFromHash();
  if (id) openBoard(id, boardUrl(id), { subscribe: true });
}

start();
