/* A screenplay in: a Fountain scene or script, pasted or uploaded, read by the server
 * (POST /api/screenplays) into scenes; the chosen scene fills the story, the cast (who speaks,
 * with the traits the form already has for them) and the plan editor, to draw as any plan.
 */

import { api, ApiError, ENTRY } from "./api.js";
import { readCast, setCast } from "./cast.js";
import { $, announce, el } from "./dom.js";
import { clearError, reportError } from "./errors.js";
import { setPlan } from "./plan.js";
import { state } from "./state.js";

// The server's field -> this form's control, so its error lands on what the user filled.
const FIELDS = { text: "screenplay-text", file: "screenplay-file" };

export function setUpScreenplay() {
  $("screenplay-read").addEventListener("click", readScreenplay);
  $("screenplay-scene").addEventListener("change", () => useScene(Number($("screenplay-scene").value)));
}

async function readScreenplay() {
  clearError();
  const file = ($("screenplay-file").files || [])[0];
  // The form's named characters: a cue of one of their names keeps its traits.
  const characters = readCast().filter((c) => c.name).map((c) => ({ name: c.name, traits: c.traits }));
  let body;
  if (file) {
    body = new FormData();
    body.append("file", file);
    body.append("characters", JSON.stringify(characters));
  } else {
    body = { text: $("screenplay-text").value, characters };
  }
  const button = $("screenplay-read");
  button.disabled = true;
  $("screenplay-status").textContent = "Reading…";
  try {
    state.screenplay = await api("POST", ENTRY.screenplays, body);
  } catch (err) {
    $("screenplay-status").textContent = "";
    const field = err instanceof ApiError ? FIELDS[err.field] || err.field : null;
    reportError(err instanceof ApiError ? new ApiError(err.message, field, err.status) : err);
    return;
  } finally {
    button.disabled = false;
  }
  renderScenes();
  useScene(0);
}

function renderScenes() {
  const scenes = state.screenplay.scenes;
  const select = $("screenplay-scene");
  select.replaceChildren(...scenes.map((scene, i) => el("option", {
    text: `${scene.number}. ${scene.heading || "(no heading)"}`, attrs: { value: i } })));
  // One scene needs no choosing; a script offers its scenes, one board each.
  select.hidden = $("screenplay-scene-label").hidden = scenes.length < 2;
}

/** Scene ``i`` into the form: its story, its cast (when anyone speaks) and its plan. */
function useScene(i) {
  const scene = state.screenplay && state.screenplay.scenes[i];
  if (!scene) return;
  clearError();
  if (scene.characters.length) setCast(scene.characters);
  $("story").value = scene.story;
  setPlan(scene, scene.story);
  const count = state.screenplay.scenes.length;
  const said = `Scene ${scene.number}${count > 1 ? ` of ${count}` : ""}: ${scene.panels.length} panels`
    + (scene.characters.length ? `, ${scene.characters.map((c) => c.name).join(", ")}` : "")
    + ". Fill in the new characters' traits, then draw the plan.";
  $("screenplay-status").textContent = said;
  announce(said);
}
