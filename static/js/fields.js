/* Where a field is: the control that an error from the server or the form's own checks is
 * about, by the API's field name (``story``, ``characters[1].name``, ``panels[2].shot``...).
 */

import { $ } from "./dom.js";
import { state } from "./state.js";

/* API field name -> form element id (a cast's fields: castFieldElement). */
const FIELD_IDS = {
  story: "story",
  character: "character", // the first character's traits
  frames: "frames",
  preset: "preset",
  aspect: "aspect",
  style: "style",
  seed: "seed",
  identity_lock: "identity-lock",
  consistent_look: "consistent-look",
  reference: "reference", // the first character's face
  reference_image: "reference",
  premise: "story", // POST /api/plans plans the story
};

/** The element a field error is about: a form field, a plan row's (``panels[2].shot``) or a
 * character's (``characters[1].name``; ``reference_2``, the second character's face in a form). */
export function fieldElement(field) {
  if (typeof field !== "string" || !field) return null;
  // A layout's own parts (panels[1].layout.poses[0]...) are the row's layout.
  const planField = /^panels(?:\[(\d+)\](?:\.(\w+)(?=$|[.[]))?)?/.exec(field);
  if (planField) return planFieldElement(planField[1], planField[2]);
  const castField = /^characters(?:\[(\d+)\](?:\.(\w+))?)?$/.exec(field);
  if (castField) return castFieldElement(castField[1], castField[2]);
  const face = /^reference_(\d+)$/.exec(field);
  if (face) return castFieldElement(Number(face[1]) - 1, "reference_image");
  const node = $(FIELD_IDS[field] || field);
  return node && node.closest("#story-form") ? node : null;
}

/** The form's cast rows, in order: one character each. */
export function castRows() {
  return [...document.querySelectorAll("#cast-rows > .cast-row")];
}

/** The control for ``characters[index].name`` (or ``.traits``, ``.reference_image``) in an
 * error from the server; the cast's list when no row is named. */
function castFieldElement(index, name) {
  const row = index === undefined ? null : castRows()[Number(index)];
  if (!row) return $("cast-rows");
  if (name === "traits") return row.querySelector(".cast-traits");
  if (name === "reference_image") return row.querySelector(".cast-face");
  return row.querySelector(".cast-name");
}

/** The control for ``panels[index].name`` in an error from the server, or null. */
function planFieldElement(index, name) {
  if (!state.plan) return null;
  const row = index === undefined ? null : state.plan.rows[Number(index)];
  if (!row) return $("plan-rows");
  if (name === "cast" && $(`plan-cast-${row.key}-0`)) return $(`plan-cast-${row.key}-0`);
  if (name === "layout") return $(`plan-layout-${row.key}`);
  const kind = ["caption", "scene", "shot", "dialogue"].includes(name) ? name : "caption";
  return $(`plan-${kind}-${row.key}`);
}
