/* The form's error box: a message, the field it is about marked and focused, settled when
 * that field is edited.
 */

import { ApiError } from "./api.js";
import { $ } from "./dom.js";
import { fieldElement } from "./fields.js";
import { state } from "./state.js";

export function clearError() {
  for (const box of [$("error"), $("plan-error")]) {
    box.textContent = "";
    box.classList.remove("visible");
  }
  state.errorField = null;
  for (const node of document.querySelectorAll("#story-form [aria-invalid], #plan-editor [aria-invalid]")) {
    node.removeAttribute("aria-invalid");
  }
  for (const row of document.querySelectorAll("#story-form .invalid, #plan-editor .invalid")) row.classList.remove("invalid");
}

/** A message in the form's error box, or in the plan's (``inPlan``: the plan's button was
 * used), and the field it is about marked and focused. */
export function showError(err, { inPlan = false } = {}) {
  const message = err instanceof Error ? err.message : String(err);
  const field = fieldElement(err && err.field);
  const box = (field ? field.closest("#plan-editor") : inPlan && state.plan) ? $("plan-error") : $("error");
  box.textContent = message || "Something went wrong.";
  box.classList.add("visible");
  // A group of checkboxes is one field (data-field): ticking any of them settles its error.
  state.errorField = field ? field.dataset.field || field.id : null;
  if (field) {
    field.setAttribute("aria-invalid", "true");
    const row = field.closest(".plan-row, .cast-row");
    if (row) row.classList.add("invalid");
    field.focus();
  } else {
    box.scrollIntoView({ block: "nearest" });
  }
}

/** Editing a field settles its own error: a message about it must not outlive the fix. */
export function onFormInput(event) {
  const target = event.target;
  const field = target && (target.dataset.field || target.id);
  if (!field) return;
  target.removeAttribute("aria-invalid");
  if (state.errorField === field) clearError();
}

export function reportError(err, options) {
  if (!(err instanceof ApiError)) console.error(err); // keep programming errors visible to developers
  showError(err instanceof ApiError ? err : new Error("Something went wrong in the page. Please reload."), options);
}
