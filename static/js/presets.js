/* The speed modes, aspects and defaults the server offers (GET /api/presets).
 */

import { api, ENTRY, RETRY_MS } from "./api.js";
import { $, el } from "./dom.js";
import { showError } from "./errors.js";
import { castRows } from "./fields.js";
import { roughDuration } from "./format.js";
import { state } from "./state.js";

/** Read the presets, then ``onLoaded()``: what depends on them (the cast's limit, the plan's
 * shots) is drawn again. */
export async function loadPresets(onLoaded) {
  let data;
  try {
    data = await api("GET", ENTRY.presets);
  } catch (err) {
    showError(err);
    setTimeout(() => loadPresets(onLoaded), RETRY_MS); // the speed modes live on the server only
    return;
  }
  state.presets = data;
  renderPresetOptions(data);
  onLoaded();
}

/* The option stays short enough for the form column; the hint below it gives the cost. */
function presetLabel(p) {
  return `${p.label || p.name} — ${p.steps} step${p.steps === 1 ? "" : "s"}`;
}

/** What a mode costs, in the server's words when it has them; then its counted FLOPs and,
 * once this machine has drawn a board, the time ``panels`` would take here, with the
 * consistent look's reference rows (``look``: the characters it shares, 0 when off). */
function presetDetails(p, panels, look) {
  const parts = [];
  if (typeof p.description === "string" && p.description.trim()) {
    parts.push(p.description.trim());
  } else {
    parts.push(`${p.steps} steps`);
    if (typeof p.guidance_scale === "number") {
      parts.push(p.guidance_scale > 1 ? `CFG ${p.guidance_scale.toFixed(1)}` : "no CFG");
    }
  }
  if (typeof p.ip_adapter_scale === "number") parts.push(`IP-Adapter scale ${p.ip_adapter_scale.toFixed(2)}`);
  if (typeof p.tflops_per_panel === "number") parts.push(`${p.tflops_per_panel.toFixed(1)} TFLOP a panel`);
  if (typeof p.seconds_per_panel === "number" && Number.isInteger(panels) && panels > 0) {
    const extra = lookSeconds(p, panels, look);
    parts.push(`about ${roughDuration(p.seconds_per_panel * panels + extra)} for ${panels} panel${panels > 1 ? "s" : ""}`
      + ` on this machine${extra > 0 ? ", the consistent look included" : ""}`);
  }
  return parts.join(" · ");
}

/* The consistent look adds one reference row a step per character to every pipeline call
 * (look_passes UNet passes); the machine's measured board says how many panels share a call.
 * Every panel is counted as showing the whole cast: an estimate from above. */
function lookSeconds(p, panels, characters) {
  const measured = state.presets && state.presets.step_time;
  if (!characters || !p.look_passes || !measured) return 0;
  const calls = Math.ceil(panels / Math.max(1, measured.panels_per_call || 1));
  return calls * characters * p.look_passes * measured.seconds_per_pass;
}

/** The chosen mode's cost, for the panel count in the form (both may change, and the consistent
 * look, the identity lock and the cast: main.js). */
export function renderPresetHint() {
  const presets = (state.presets && state.presets.presets) || [];
  const chosen = presets.find((p) => p.name === $("preset").value);
  const panels = Number.parseInt($("frames").value, 10);
  const look = $("consistent-look").checked && $("identity-lock").checked ? castRows().length : 0;
  $("preset-hint").textContent = chosen ? presetDetails(chosen, panels, look) : "";
}

export function renderPresetOptions(data) {
  const preset = $("preset");
  preset.replaceChildren(...(data.presets || []).map((p) =>
    el("option", { text: presetLabel(p), attrs: { value: p.name } })));
  if (data.default_preset) preset.value = data.default_preset;

  const aspect = $("aspect");
  aspect.replaceChildren(...(data.aspects || []).map((a) =>
    el("option", { text: `${a.name} — ${a.width}×${a.height}`, attrs: { value: a.name } })));
  if (data.default_aspect) aspect.value = data.default_aspect;

  // The server's defaults fill only what the user has not touched: presets may arrive late.
  const defaults = data.defaults || {};
  if (!$("character").value && defaults.character) $("character").value = defaults.character;
  if (!$("style").value && defaults.style) $("style").value = defaults.style;
  const frames = $("frames");
  if (defaults.frames && frames.value === frames.defaultValue) frames.value = defaults.frames;
  const lock = $("identity-lock");
  if (typeof defaults.identity_lock === "boolean" && lock.checked === lock.defaultChecked) {
    lock.checked = defaults.identity_lock;
  }
  const look = $("consistent-look");
  if (typeof defaults.consistent_look === "boolean" && look.checked === look.defaultChecked) {
    look.checked = defaults.consistent_look;
  }
  if (data.max_frames) {
    $("frames").max = data.max_frames;
    $("frames-hint").textContent = `1–${data.max_frames}; ignored when the story has one line per panel.`;
  }
  renderPresetHint(); // after the panel count: the estimate reads it
}

export function maxFrames() {
  return (state.presets && state.presets.max_frames) || 8;
}

/** The shot types a plan may name, as /api/presets sends them (prompt_enhancer's list). */
export function shotTypes() {
  const shots = state.presets && state.presets.shots;
  return Array.isArray(shots) ? shots : [];
}
