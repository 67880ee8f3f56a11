/* Storyboard Studio — the page's script. Vanilla ES2020, no dependencies.
 *
 * Every piece of user or server text goes into the page through textContent or
 * element attributes, never through innerHTML.
 */
"use strict";

const FINAL_STATUSES = ["done", "failed", "canceled", "interrupted"];
const HEALTH_POLL_MS = 2000; // while something is under way or wrong
const HEALTH_IDLE_MS = 30000; // otherwise: a worker that stops while the page is idle still shows
const HEALTH_RETRY_MS = 5000;
const EVENTS_RETRY_MS = 3000;
const HISTORY_REFRESH_MS = 1500;
const ACCEPTED_TYPES = ["image/png", "image/jpeg", "image/webp"];
const NETWORK_ERROR = "Cannot reach the studio server";
const WORKER_STOPPED = "The studio's worker has stopped; restart the studio.";
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
  reference: "reference", // the first character's face
  reference_image: "reference",
  premise: "story", // POST /api/plans plans the story
};

const state = {
  presets: null,
  health: null,
  planner: null, // GET /api/planner: {llm, model, server}
  plan: null, // {source, notices, premise, model, rows: [{key, caption, scene, shot, cast}]}
  planning: false,
  planRowKey: 1, // a plan row's key: stable while rows move, so ids and focus follow the row
  board: null,
  boardId: null,
  events: null,
  eventsRetry: null,
  healthTimer: null,
  historyTimer: null,
  castKey: 1, // a cast row's key: stable while rows come and go, so a plan row's cast follows its characters
  facePreviews: new Map(), // cast row key -> object URL of its chosen face
  editing: null, // {frameId, caption, scene, seed, cast}
  dragFrameId: null,
  renderPending: false,
  submitting: false,
  errorField: null, // the form field the visible error message is about
  // One drawing job's progress: the bar never goes back within a job.
  job: { floor: 0, sawReference: false },
  createdNotices: {}, // board id -> notices from the 202 answer, for a board JSON without them
  lastEventId: "", // the newest event id heard from the server, on any board's stream
};

const $ = (id) => document.getElementById(id);

/* ------------------------------------------------------------------ helpers */

class ApiError extends Error {
  constructor(message, field, status) {
    super(message);
    this.field = field || null;
    this.status = status || 0;
  }
}

function defaultErrorMessage(status) {
  if (status === 404) return "That storyboard no longer exists.";
  if (status === 413) return "The reference image is too large.";
  if (status === 429) return "The studio is busy — too many storyboards are queued. Try again shortly.";
  if (status === 507) return "The disk is full: nothing was stored. Free some space and try again.";
  if (status >= 500) return `The studio server hit an error (HTTP ${status}).`;
  return `The request failed (HTTP ${status}).`;
}

/** One place for every API call: JSON or FormData in, parsed JSON out, ApiError on failure. */
async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new ApiError(NETWORK_ERROR, null, 0);
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text().catch(() => "");
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (err) {
        data = null;
      }
    }
  }
  if (!response.ok) {
    const message = data && typeof data.error === "string" && data.error
      ? data.error
      : defaultErrorMessage(response.status);
    const field = data && typeof data.field === "string" ? data.field : null;
    throw new ApiError(message, field, response.status);
  }
  return data;
}

function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
  if (options.attrs) {
    for (const [name, value] of Object.entries(options.attrs)) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Only same-origin paths, http(s) and image data URLs may become src/href. */
function safeUrl(url) {
  if (typeof url !== "string" || !url) return null;
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  if (/^https?:\/\//i.test(url)) return url;
  if (/^data:image\/(png|jpeg|webp|gif);/i.test(url)) return url;
  return null;
}

function storyboardUrl(id, suffix = "") {
  return `/api/storyboards/${encodeURIComponent(id)}${suffix}`;
}

function formatDate(value) {
  if (value === null || value === undefined || value === "") return "";
  let date;
  if (typeof value === "number") date = new Date(value < 1e12 ? value * 1000 : value);
  else date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function formatEta(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  return `about ${Math.max(1, Math.round(seconds))} s left`;
}

function isFinal(status) {
  return FINAL_STATUSES.includes(status);
}

function boardBusy(board) {
  if (!board) return false;
  if (board.status === "queued" || board.status === "running") return true;
  return (board.frames || []).some((f) => f.status === "queued" || f.status === "running");
}

function sortedFrames(board) {
  return [...((board && board.frames) || [])].sort((a, b) => (a.index || 0) - (b.index || 0));
}

/** Screen-reader-only notice for small confirmations (the visible status line stays as is). */
function announce(message) {
  $("announcer").textContent = message;
}

function setBoardMessage(message) {
  $("board-message").textContent = message;
}

/* ------------------------------------------------------------------- errors */

function clearError() {
  for (const box of [$("error"), $("plan-error")]) {
    box.textContent = "";
    box.classList.remove("visible");
  }
  state.errorField = null;
  for (const node of document.querySelectorAll("#story-form [aria-invalid]")) {
    node.removeAttribute("aria-invalid");
  }
  for (const row of document.querySelectorAll("#story-form .invalid")) row.classList.remove("invalid");
}

/** The element a field error is about: a form field, a plan row's (``panels[2].shot``) or a
 * character's (``characters[1].name``; ``reference_2``, the second character's face in a form). */
function fieldElement(field) {
  if (typeof field !== "string" || !field) return null;
  const planField = /^panels(?:\[(\d+)\](?:\.(\w+))?)?$/.exec(field);
  if (planField) return planFieldElement(planField[1], planField[2]);
  const castField = /^characters(?:\[(\d+)\](?:\.(\w+))?)?$/.exec(field);
  if (castField) return castFieldElement(castField[1], castField[2]);
  const face = /^reference_(\d+)$/.exec(field);
  if (face) return castFieldElement(Number(face[1]) - 1, "reference_image");
  const node = $(FIELD_IDS[field] || field);
  return node && node.closest("#story-form") ? node : null;
}

/** A message in the form's error box, or in the plan's (``inPlan``: the plan's button was
 * used), and the field it is about marked and focused. */
function showError(err, { inPlan = false } = {}) {
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
function onFormInput(event) {
  const target = event.target;
  const field = target && (target.dataset.field || target.id);
  if (!field) return;
  target.removeAttribute("aria-invalid");
  if (state.errorField === field) clearError();
}

function reportError(err, options) {
  if (!(err instanceof ApiError)) console.error(err); // keep programming errors visible to developers
  showError(err instanceof ApiError ? err : new Error("Something went wrong in the page. Please reload."), options);
}

/** The same message in two places: one may be cut short, or wrapped in more words. */
function sameMessage(a, b) {
  if (typeof a !== "string" || typeof b !== "string") return false;
  const x = a.trim();
  const y = b.trim();
  return Boolean(x && y) && (x.includes(y) || y.includes(x));
}

/* ------------------------------------------------------------------- health */

async function checkHealth() {
  clearTimeout(state.healthTimer);
  let health;
  try {
    health = await api("GET", "/api/health");
  } catch (err) {
    renderBanner(err.message || NETWORK_ERROR, "error");
    clearTimeout(state.healthTimer);
    state.healthTimer = setTimeout(checkHealth, HEALTH_RETRY_MS);
    return;
  }
  state.health = health || {};
  const banner = healthBanner(state.health);
  if (banner.lines.length) renderBanner(banner.lines.join("\n"), banner.kind);
  else hideBanner();
  // Watch closely while something is wrong or under way (a queued board starts the model
  // loading any moment, a full disk stops a drawing board), so the banner comes and goes
  // with the trouble; otherwise now and then, so a worker that stops is seen.
  const watch = workerTrouble(state.health) || ["loading", "warming_up"].includes(state.health.model)
    || boardBusy(state.board);
  clearTimeout(state.healthTimer); // two checks at once (a timer, a submit) leave one timer
  state.healthTimer = setTimeout(checkHealth, watch ? HEALTH_POLL_MS : HEALTH_IDLE_MS);
  renderStatus(); // a board error that the banner shows is not repeated on the board
}

/** Whether the worker cannot go on: stopped, or failing (e.g. the disk is full). */
function workerTrouble(health) {
  return Boolean(health && health.status && health.status !== "ok");
}

/** The banner's lines: the worker's trouble first (nothing gets drawn until it is solved),
 * then the model's state. ``kind`` is error when any line is one. */
function healthBanner(health) {
  const lines = [];
  let kind = "info";
  if (workerTrouble(health)) {
    kind = "error";
    const problem = typeof health.problem === "string" && health.problem.trim() ? health.problem.trim() : null;
    if (health.status === "worker_stopped") {
      if (problem && !sameMessage(problem, WORKER_STOPPED)) lines.push(problem);
      lines.push(WORKER_STOPPED);
    } else {
      lines.push(problem || "The studio's worker cannot go on; the details are in the server log.");
    }
  }
  if (health.model === "loading") {
    lines.push(health.loading_message || "Loading the model…");
  } else if (health.model === "warming_up") {
    lines.push(warmUpMessage(health.warm_up));
  } else if (health.model === "error") {
    kind = "error";
    lines.push(`The model could not be loaded: ${health.error || "unknown error"}`);
  }
  return { lines, kind };
}

/** What the banner says while a compiled model warms up (between boards, which are drawn
 * meanwhile, without compile): how far, and how long is left. */
function warmUpMessage(progress) {
  let text = "Warming up the compiled model for this GPU";
  if (progress && Number.isInteger(progress.of) && progress.of > 0) {
    text += `: ${progress.done} of ${progress.of} panel shapes ready`;
    if (Number.isInteger(progress.eta_s)) text += `, about ${roughDuration(progress.eta_s)} left`;
  }
  return `${text}. Boards are drawn meanwhile, more slowly until then; later starts reuse the compiled kernels.`;
}

/** 45 -> "45 s", 200 -> "4 min" (rounded up: an ETA that runs out early is worse). */
function roughDuration(seconds) {
  return seconds < 60 ? `${Math.max(1, Math.round(seconds))} s` : `${Math.ceil(seconds / 60)} min`;
}

function renderBanner(text, kind) {
  const banner = $("health-banner");
  banner.textContent = text;
  banner.className = `banner ${kind}`;
  banner.hidden = false;
}

function hideBanner() {
  const banner = $("health-banner");
  banner.hidden = true;
  banner.textContent = "";
}

/** The model error the banner shows now, or null. */
function bannerError() {
  return state.health && state.health.model === "error" ? state.health.error || null : null;
}

/** The worker's problem the banner shows now, or null. */
function bannerProblem() {
  return workerTrouble(state.health) ? state.health.problem || null : null;
}

/* ------------------------------------------------------------------ presets */

async function loadPresets() {
  let data;
  try {
    data = await api("GET", "/api/presets");
  } catch (err) {
    showError(err);
    setTimeout(loadPresets, HEALTH_RETRY_MS); // the speed modes live on the server only
    return;
  }
  state.presets = data;
  renderPresetOptions(data);
  if (state.plan) renderPlan(); // the shots may come from the server
}

/* The option stays short enough for the form column; the hint below it gives the cost. */
function presetLabel(p) {
  return `${p.label || p.name} — ${p.steps} steps`;
}

/** What a mode costs, in the server's words when it has them. */
function presetDetails(p) {
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
  return parts.join(" · ");
}

function renderPresetHint() {
  const presets = (state.presets && state.presets.presets) || [];
  const chosen = presets.find((p) => p.name === $("preset").value);
  $("preset-hint").textContent = chosen ? presetDetails(chosen) : "";
}

function renderPresetOptions(data) {
  const preset = $("preset");
  preset.replaceChildren(...(data.presets || []).map((p) =>
    el("option", { text: presetLabel(p), attrs: { value: p.name } })));
  if (data.default_preset) preset.value = data.default_preset;
  renderPresetHint();

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
  if (data.max_frames) {
    $("frames").max = data.max_frames;
    $("frames-hint").textContent = `1–${data.max_frames}; ignored when the story has one line per panel.`;
  }
  renderCast(); // the cast's limit comes from the server too
}

/* -------------------------------------------------------------- cast editor */

/* The form's cast is its rows, in the page: each row is one character (name, traits, an
 * optional face in a file input), so a chosen file stays where it was chosen. A row's
 * data-key never changes; its ids follow its place (the first row's are "character" and
 * "reference", as when the form had one character). */

function maxCharacters() {
  return (state.presets && state.presets.max_characters) || 4;
}

function castRows() {
  return [...document.querySelectorAll("#cast-rows > .cast-row")];
}

/** The form's cast: [{key, name, traits, file}], in order. */
function readCast() {
  return castRows().map((row) => ({
    key: row.dataset.key,
    name: row.querySelector(".cast-name").value.trim(),
    traits: row.querySelector(".cast-traits").value.trim(),
    file: (row.querySelector(".cast-face").files || [])[0] || null,
  }));
}

/** One character without a name is the form as it was before the cast: the old fields. */
function castIsNamed(cast) {
  return cast.length > 1 || Boolean(cast[0] && cast[0].name);
}

/** The form's own check of the cast: several characters are told apart by name. */
function validateCast(cast) {
  if (cast.length < 2) return null;
  const unnamed = cast.findIndex((c) => !c.name);
  if (unnamed < 0) return null;
  return new ApiError(`Character ${unnamed + 1} needs a name: a cast of several is told apart by name.`,
    `characters[${unnamed}].name`);
}

function addCastRow({ name = "", traits = "" } = {}) {
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

function onAddCharacter() {
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
  forgetPlanCharacter(row.dataset.key);
  renderCast();
  onCastNamesChange();
  const next = castRows()[Math.min(at, castRows().length - 1)];
  next.querySelector(".cast-name").focus();
  announce(`Character ${at + 1} removed.`);
}

/** Ids, labels and buttons by place: a cast of one looks as the form did before the cast. */
function renderCast() {
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
function setCast(characters) {
  const wanted = characters.slice(0, maxCharacters());
  if (!wanted.length) return;
  let rows = castRows();
  for (const row of rows.slice(wanted.length)) {
    clearFacePreview(row);
    row.remove();
    forgetPlanCharacter(row.dataset.key);
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
  if (state.plan) renderPlan();
}

function onFaceChange(row) {
  const input = row.querySelector(".cast-face");
  const file = input.files && input.files[0];
  clearFacePreview(row);
  if (!file) return;
  if (file.type && !ACCEPTED_TYPES.includes(file.type)) {
    input.value = "";
    showError(new ApiError("The reference must be a PNG, JPEG or WebP image.", input.id));
    return;
  }
  input.removeAttribute("aria-invalid");
  row.querySelector(".reuse-note").hidden = true;
  const url = URL.createObjectURL(file);
  state.facePreviews.set(row.dataset.key, url);
  const preview = row.querySelector(".reference-preview");
  preview.querySelector("img").src = url;
  preview.querySelector(".file-name").textContent = file.name;
  preview.hidden = false;
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

/** The control for ``characters[index].name`` (or ``.traits``, ``.reference_image``) in an
 * error from the server; the cast's list when no row is named. */
function castFieldElement(index, name) {
  const row = index === undefined ? null : castRows()[Number(index)];
  if (!row) return $("cast-rows");
  if (name === "traits") return row.querySelector(".cast-traits");
  if (name === "reference_image") return row.querySelector(".cast-face");
  return row.querySelector(".cast-name");
}

/* ------------------------------------------------------------ who is in it */

/** Checkboxes for who is in a panel: one per character, and "no one". ``selected``: the
 * chosen values, [] for no one, or null for none chosen (a plan row: whoever its text
 * names). "No one" and the names exclude each other; unticking the last name ticks "no one".
 * Every checkbox carries the group's id as data-field: an error about the group is settled
 * by ticking any of them. */
function castPicker(id, options, selected, onChange) {
  const box = el("fieldset", { className: "cast-picker", attrs: { id } });
  box.append(el("legend", { className: "small-label", text: "Who is in it" }));
  const choice = (suffix, label, checked) => {
    const input = el("input", { attrs: { type: "checkbox", id: `${id}-${suffix}`, "data-field": id } });
    input.checked = checked;
    box.append(el("label", { className: "cast-choice", attrs: { for: input.id } }, [input, document.createTextNode(label)]));
    return input;
  };
  const chosen = new Set(selected || []);
  const names = options.map((option, j) => ({ value: option.value, input: choice(String(j), option.label, chosen.has(option.value)) }));
  const nobody = choice("none", "no one", Array.isArray(selected) && selected.length === 0);
  nobody.classList.add("cast-nobody");
  const hint = el("span", { className: "hint cast-picker-hint", text: "none ticked: whoever its text names" });
  box.append(hint);
  const value = () => {
    if (nobody.checked) return [];
    const ticked = names.filter((n) => n.input.checked).map((n) => n.value);
    return ticked.length ? ticked : null;
  };
  const sync = () => { hint.hidden = value() !== null; };
  for (const n of names) {
    n.input.addEventListener("change", () => {
      if (n.input.checked) nobody.checked = false;
      else if (!names.some((other) => other.input.checked)) nobody.checked = true;
      sync();
      onChange(value());
    });
  }
  nobody.addEventListener("change", () => {
    if (nobody.checked) for (const n of names) n.input.checked = false;
    else if (!names.some((n) => n.input.checked)) nobody.checked = true; // choose someone instead
    sync();
    onChange(value());
  });
  sync();
  return box;
}

/** The same cast, whatever the case and order of its names. */
function sameCast(a, b) {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  const fold = (names) => names.map((n) => String(n).toLowerCase()).sort().join("\n");
  return fold(a) === fold(b);
}

/** A board's cast, also for a board JSON from before the cast (one character). */
function boardCharacters(board) {
  if (!board) return [];
  if (Array.isArray(board.characters) && board.characters.length) return board.characters;
  return [{ name: "", traits: board.character || "", reference: board.reference || null }];
}

/** Whether a board's characters have names (a cast), or it is the one unnamed character. */
function boardHasNames(board) {
  return boardCharacters(board).some((c) => c.name);
}

/* --------------------------------------------------------------- generating */

function readForm() {
  const seedText = $("seed").value.trim();
  return {
    story: $("story").value.trim(),
    frames: Number.parseInt($("frames").value, 10),
    preset: $("preset").value,
    aspect: $("aspect").value,
    style: $("style").value.trim(),
    seed: seedText === "" ? null : Number(seedText),
    identity_lock: $("identity-lock").checked,
  };
}

function maxFrames() {
  return (state.presets && state.presets.max_frames) || 8;
}

/** The form's own checks; a plan brings its panels, so its story may be blank. */
function validateForm(values, { storyRequired = true } = {}) {
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

async function onSubmit(event) {
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
async function createBoard(values, button, { inPlan = false } = {}) {
  state.submitting = true;
  const label = button.textContent;
  $("generate").disabled = true; // one board per click, whichever button
  $("draw-plan").disabled = true;
  button.textContent = "Starting…";
  try {
    const created = await api("POST", "/api/storyboards", buildRequestBody(values, readCast()));
    if (created && Array.isArray(created.notices)) state.createdNotices[String(created.id)] = created.notices;
    await openBoard(created.id, { subscribe: true });
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

function onFormKeydown(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    // In the plan, the shortcut draws the plan; elsewhere it generates from the story.
    if (event.target.closest && event.target.closest("#plan-editor")) drawPlan();
    else $("story-form").requestSubmit();
  }
}

/* ----------------------------------------------------------------- planning */

async function loadPlanner() {
  try {
    state.planner = await api("GET", "/api/planner");
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

/** The shot types a plan may name, as /api/presets sends them (prompt_enhancer's list). */
function shotTypes() {
  const shots = state.presets && state.presets.shots;
  return Array.isArray(shots) ? shots : [];
}

/** Plan the story (the premise) with the server's planner: rows to edit, nothing drawn. */
async function planStory() {
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
    const answer = await api("POST", "/api/plans", body);
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

function setPlan(answer, premise) {
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
  return { key: state.planRowKey++, caption, scene, shot, cast: castKeys(panel.cast) };
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
function forgetPlanCharacter(key) {
  if (!state.plan) return;
  for (const row of state.plan.rows) {
    if (row.cast === null || !row.cast.includes(key)) continue;
    row.cast = row.cast.filter((k) => k !== key);
    if (!row.cast.length) row.cast = null;
  }
}

function discardPlan() {
  state.plan = null;
  clearError();
  renderPlan();
  $("plan").focus();
}

function planSourceText(plan) {
  if (plan.source === "llm") {
    return `Planned by ${plan.model || "the language model"}: captions in your language, scenes in English for the image.`;
  }
  if (plan.source === "fallback") {
    return `Planned by the built-in splitter: ${plan.model || "the language model"}'s plan was not used (see why below).`;
  }
  return "Planned by the built-in splitter: each caption is your words, and so is its scene.";
}

function renderPlan() {
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

function renderPlanStale() {
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
    el("div", { className: "plan-shot-row" }, [planLabel(shot, "Shot"), shot]),
  );
  // One unnamed character is in every panel: nothing to choose.
  const cast = readCast();
  if (castIsNamed(cast)) {
    const options = cast.map((c, j) => ({ value: c.key, label: c.name || `Character ${j + 1}` }));
    li.append(castPicker(`plan-cast-${row.key}`, options, row.cast, (value) => { row.cast = value; }));
  }
  return li;
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

/** The control for ``panels[index].name`` in an error from the server, or null. */
function planFieldElement(index, name) {
  if (!state.plan) return null;
  const row = index === undefined ? null : state.plan.rows[Number(index)];
  if (!row) return $("plan-rows");
  if (name === "cast" && $(`plan-cast-${row.key}-0`)) return $(`plan-cast-${row.key}-0`);
  const kind = ["caption", "scene", "shot"].includes(name) ? name : "caption";
  return $(`plan-${kind}-${row.key}`);
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

function addPlanRow() {
  if (!state.plan || state.plan.rows.length >= maxFrames()) return;
  const row = newPlanRow();
  state.plan.rows.push(row);
  clearError();
  renderPlan();
  focusPlanRow(row.key, ".plan-caption");
}

/** Draw the plan's rows as the board's panels, with the rest of the form, as Generate does. */
async function drawPlan() {
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
  const named = castIsNamed(readCast());
  values.panels = rows.map((row) => {
    const panel = { caption: row.caption.trim(), scene: row.scene.trim(), shot: row.shot };
    const cast = named ? castNames(row.cast) : null;
    if (cast !== null) panel.cast = cast; // missing: whoever the row's text names
    return panel;
  });
  await createBoard(values, $("draw-plan"), { inPlan: true });
}

/* ------------------------------------------------------------------- boards */

/** Bring the board's top (title, progress, messages) into view when it is not, e.g. after
 * Generate at the bottom of a long form or a click far down the history. */
function revealBoard() {
  const section = $("board-section");
  const top = section.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.4) section.scrollIntoView({ block: "start" });
  // In one column the board is far from the form: keyboards and screen readers follow the eyes.
  if (window.matchMedia("(max-width: 800px)").matches) section.focus({ preventScroll: true });
}

async function openBoard(id, { subscribe = true } = {}) {
  if (id === null || id === undefined || id === "") return;
  const changed = String(id) !== String(state.boardId);
  if (changed) {
    closeEvents();
    state.editing = null;
    newJob();
  }
  state.boardId = String(id);
  setHash(id);
  try {
    const board = await api("GET", storyboardUrl(id));
    if (String(state.boardId) !== String(id)) return; // another board was opened meanwhile
    setBoard(board);
    if (subscribe && boardBusy(board)) openEvents(id);
  } catch (err) {
    if (err.status === 404) {
      clearBoard();
      showError(new ApiError("That storyboard no longer exists."));
    } else {
      reportError(err);
    }
  }
}

async function reloadBoard() {
  if (!state.boardId) return;
  const id = state.boardId;
  try {
    const board = await api("GET", storyboardUrl(id));
    if (String(state.boardId) !== String(id)) return;
    setBoard(board);
    if (boardBusy(board)) openEvents(id);
    else closeEvents();
  } catch (err) {
    reportError(err);
  }
}

function setBoard(board) {
  state.board = board;
  noteJobBoundary(board);
  if (state.editing && !(board.frames || []).some((f) => f.id === state.editing.frameId)) {
    state.editing = null;
  }
  renderAll();
}

function clearBoard() {
  closeEvents();
  state.board = null;
  state.boardId = null;
  state.editing = null;
  setHash(null);
  renderAll();
}

function setHash(id) {
  const wanted = id === null || id === undefined ? "" : `#board=${encodeURIComponent(id)}`;
  if (window.location.hash === wanted) return;
  if (wanted) history.replaceState(null, "", wanted);
  else history.replaceState(null, "", window.location.pathname + window.location.search);
}

function boardIdFromHash() {
  const match = /^#board=(.+)$/.exec(window.location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

/* ------------------------------------------------------------------- events */

function openEvents(id) {
  if (state.events && state.events.boardId === String(id) && state.events.source.readyState !== EventSource.CLOSED) {
    return;
  }
  closeEvents();
  if (typeof EventSource === "undefined") return;
  // A new stream replays the board's logged events (earlier jobs too), but the board the page
  // shows was read after the newest event it heard: the ids are one sequence for all boards.
  const after = state.lastEventId ? `?last_event_id=${encodeURIComponent(state.lastEventId)}` : "";
  const source = new EventSource(storyboardUrl(id, `/events${after}`));
  const entry = { boardId: String(id), source };
  state.events = entry;
  const current = () => state.events === entry;
  const on = (kind, handle) => source.addEventListener(kind, (e) => {
    if (!current()) return;
    if (e.lastEventId) state.lastEventId = e.lastEventId;
    handle(parseEvent(e));
  });

  on("progress", onProgressEvent);
  on("frame", onFrameEvent);
  on("reference", onReferenceEvent);
  on("status", onStatusEvent);
  source.addEventListener("error", () => {
    if (!current() || source.readyState !== EventSource.CLOSED) return; // the browser reconnects itself
    state.events = null;
    clearTimeout(state.eventsRetry);
    state.eventsRetry = setTimeout(() => {
      if (state.boardId === entry.boardId) reloadBoard();
    }, EVENTS_RETRY_MS);
  });
}

function closeEvents() {
  clearTimeout(state.eventsRetry);
  if (state.events) state.events.source.close();
  state.events = null;
}

function parseEvent(event) {
  try {
    return JSON.parse(event.data);
  } catch (err) {
    return null;
  }
}

function onProgressEvent(progress) {
  if (!progress || !state.board) return;
  state.board.progress = progress;
  if (progress.panel === 0) state.job.sawReference = true; // this job draws the reference first
  if (state.board.status === "queued") state.board.status = "running";
  renderProgress();
  renderStatus();
  updateRunningPanels();
}

function onFrameEvent(frame) {
  if (!frame || !state.board) return;
  const frames = state.board.frames || [];
  const position = frames.findIndex((f) => f.id === frame.id);
  if (position >= 0) frames[position] = { ...frames[position], ...frame };
  else frames.push(frame);
  state.board.frames = frames;
  renderBoardSoon();
  renderHistoryItemProgress();
  if (isFinal(state.board.status) && !boardBusy(state.board)) {
    closeEvents();
    scheduleHistoryRefresh();
  }
}

/** A portrait drawn for character ``character`` (1-based; 1 from a server before the cast). */
function onReferenceEvent(event) {
  if (!event || !state.board) return;
  const k = Number.isInteger(event.character) && event.character > 0 ? event.character : 1;
  const reference = { kind: event.kind || null, image_url: event.image_url || null };
  const characters = state.board.characters;
  if (Array.isArray(characters) && characters[k - 1]) {
    characters[k - 1] = { ...characters[k - 1], reference };
  }
  if (k === 1) state.board.reference = { ...(state.board.reference || {}), ...reference };
  renderCastView();
}

function onStatusEvent(data) {
  if (!data || !state.board) return;
  state.board.status = data.status;
  state.board.error = data.error || null;
  if (data.status !== "running") state.board.progress = null;
  noteJobBoundary(state.board);
  renderAll();
  scheduleHistoryRefresh();
  if (isFinal(data.status)) {
    reloadBoard(); // closes the stream when nothing is left to draw
    checkHealth(); // a failed board may mean the model failed to load
  }
}

/** A fresh job's bar starts from zero; within a job it only moves forward. */
function newJob() {
  state.job = { floor: 0, sawReference: false };
}

/* Jobs run one after another, and between two jobs of a board the worker reports a status
 * other than "running" (done, failed, ..., or queued behind the next job). A new stream
 * replays the board's recent events, so a "running" event alone is no boundary: it may be
 * the start of the job whose progress the page already shows. */
function noteJobBoundary(board) {
  if (board && board.status !== "running") newJob();
}

/* ---------------------------------------------------------- board actions */

async function cancelBoard() {
  if (!state.boardId) return;
  clearError();
  $("cancel").disabled = true;
  try {
    await api("POST", storyboardUrl(state.boardId, "/cancel"));
    await reloadBoard();
    scheduleHistoryRefresh();
  } catch (err) {
    reportError(err);
  } finally {
    $("cancel").disabled = false;
  }
}

async function resumeBoard() {
  if (!state.boardId) return;
  clearError();
  $("resume").disabled = true;
  try {
    await api("POST", storyboardUrl(state.boardId, "/resume"));
    await reloadBoard();
    openEvents(state.boardId);
    scheduleHistoryRefresh();
  } catch (err) {
    reportError(err);
  } finally {
    $("resume").disabled = false;
  }
}

async function regenerateFrame(displayIndex, body) {
  if (!state.boardId) return;
  clearError();
  const id = state.boardId;
  try {
    const board = await api("POST", storyboardUrl(id, `/frames/${displayIndex}/regenerate`), body);
    if (state.boardId !== id) return;
    state.editing = null;
    if (board && board.frames) setBoard(board);
    else await reloadBoard();
    openEvents(id);
  } catch (err) {
    reportError(err);
  }
}

async function saveOrder(frameIds) {
  if (!state.boardId || !state.board) return;
  clearError();
  const id = state.boardId;
  // Show the new order at once; the server's answer then replaces it.
  const byId = new Map(state.board.frames.map((f) => [f.id, f]));
  state.board.frames = frameIds.map((fid, i) => ({ ...byId.get(fid), index: i + 1 }));
  renderBoard();
  try {
    const board = await api("PUT", storyboardUrl(id, "/order"), { order: frameIds });
    scheduleHistoryRefresh(); // the history thumbnail is the first panel
    if (state.boardId !== id) return;
    if (board && board.frames) setBoard(board);
    else await reloadBoard();
  } catch (err) {
    reportError(err);
    reloadBoard();
  }
}

function moveFrame(frameId, delta) {
  const ids = sortedFrames(state.board).map((f) => f.id);
  const from = ids.indexOf(frameId);
  const to = from + delta;
  if (from < 0 || to < 0 || to >= ids.length) return;
  [ids[from], ids[to]] = [ids[to], ids[from]];
  saveOrder(ids).then(() => focusPanelButton(frameId, delta < 0 ? ".move-left" : ".move-right"));
}

function useSeed(frame) {
  const seed = $("seed");
  seed.value = frame.seed;
  seed.removeAttribute("aria-invalid");
  seed.classList.remove("flash");
  void seed.offsetWidth; // restart the highlight animation
  seed.classList.add("flash");
  announce(`Seed ${frame.seed} copied to the form.`);
}

/* ----------------------------------------------------------------- history */

async function refreshHistory() {
  let data;
  try {
    data = await api("GET", "/api/storyboards");
  } catch (err) {
    return; // the health banner already tells when the server is unreachable
  }
  renderHistory((data && data.storyboards) || []);
}

function scheduleHistoryRefresh() {
  clearTimeout(state.historyTimer);
  state.historyTimer = setTimeout(refreshHistory, HISTORY_REFRESH_MS);
}

async function deleteStoryboard(item) {
  const title = item.title || "Untitled storyboard";
  if (!window.confirm(`Delete the storyboard “${title}”? This cannot be undone.`)) return;
  clearError();
  try {
    await api("DELETE", storyboardUrl(item.id));
    if (String(item.id) === String(state.boardId)) clearBoard();
    await refreshHistory();
  } catch (err) {
    reportError(err);
  }
}

/* --------------------------------------------------------------- rendering */

function renderAll() {
  renderHeader();
  renderStatus();
  renderNotices();
  renderCastView();
  renderProgress();
  renderBoard();
  renderHistorySelection();
}

function renderHeader() {
  const board = state.board;
  $("board-title").textContent = board ? board.title || "Untitled storyboard" : "No storyboard open";
  $("board-meta").textContent = board ? boardMetaText(board) : "";
  $("reuse").hidden = !board;
  const exportsBox = $("exports");
  const links = board && board.export;
  exportsBox.hidden = !links;
  if (links) {
    setLink($("export-pdf"), links.pdf, `storyboard-${board.id}.pdf`);
    setLink($("export-zip"), links.zip, `storyboard-${board.id}.zip`);
  }
}

function setLink(anchor, url, fileName) {
  const safe = safeUrl(url);
  if (safe) anchor.href = safe;
  else anchor.removeAttribute("href");
  anchor.setAttribute("download", fileName);
}

function boardMetaText(board) {
  const s = board.settings || {};
  const parts = [];
  const preset = state.presets && (state.presets.presets || []).find((p) => p.name === s.preset);
  if (s.preset) parts.push(preset ? preset.label : s.preset);
  if (s.steps) parts.push(`${s.steps} steps`);
  if (s.aspect) parts.push(s.width && s.height ? `${s.aspect} (${s.width}×${s.height})` : s.aspect);
  if (s.seed !== null && s.seed !== undefined) parts.push(`seed ${s.seed}`);
  if (typeof s.identity_lock === "boolean") parts.push(s.identity_lock ? "identity lock on" : "identity lock off");
  const date = formatDate(board.created_at);
  if (date) parts.push(date);
  return parts.join(" · ");
}

function renderStatus() {
  const board = state.board;
  const pill = $("board-status");
  const resume = $("resume");
  if (!board) {
    pill.hidden = true;
    pill.textContent = "";
    resume.hidden = true;
    setBoardMessage("");
    return;
  }
  pill.hidden = false;
  pill.textContent = board.status;
  pill.className = `status-pill status-${board.status}`;
  resume.hidden = !canResume(board);
  setBoardMessage(statusMessage(board));
}

/** What POST .../resume accepts: a board that stopped with panels left to draw. */
function canResume(board) {
  return ["failed", "canceled", "interrupted"].includes(board.status) && !boardBusy(board)
    && (board.frames || []).some((f) => f.status !== "done");
}

function statusMessage(board) {
  const frames = board.frames || [];
  const done = frames.filter((f) => f.status === "done").length;
  switch (board.status) {
    case "queued":
      return "Waiting in the queue…";
    case "running":
      return "";
    case "done":
      return boardBusy(board)
        ? "Redrawing…"
        : `Finished — ${done} of ${frames.length} panel${frames.length === 1 ? "" : "s"} drawn.`;
    case "failed":
      // The banner already says it in full when the model could not be loaded.
      if (sameMessage(board.error, bannerError())) {
        return "Failed: the model could not be loaded (see the message at the top).";
      }
      if (sameMessage(board.error, bannerProblem())) return "Failed: see the message at the top.";
      return `Failed: ${board.error || "unknown error"}`;
    case "canceled":
      return `Canceled after ${done} of ${frames.length} panels. Resume to draw the rest.`;
    case "interrupted":
      return `Interrupted — the studio stopped while drawing (${done} of ${frames.length} panels done). Resume to finish.`;
    default:
      return "";
  }
}

/** Things to know about this board's input (e.g. a story the text encoders cannot read well). */
function renderNotices() {
  const box = $("board-notices");
  const board = state.board;
  let notices = board && board.notices;
  if (board && !Array.isArray(notices)) notices = state.createdNotices[String(board.id)];
  const texts = (Array.isArray(notices) ? notices : []).filter((n) => typeof n === "string" && n.trim());
  box.replaceChildren(...texts.map((text) => el("li", { text })));
  box.hidden = texts.length === 0;
}

/** The board's cast beside its progress: each character's reference face (uploaded, or
 * the portrait drawn from its traits) or what is still to come. One unnamed character
 * shows only its reference, as before the cast. */
function renderCastView() {
  const view = $("cast-view");
  const board = state.board;
  const named = boardHasNames(board);
  const shown = boardCharacters(board).map((character, i) => ({ character, k: i + 1 }))
    .filter(({ character }) => named || safeUrl(character.reference && character.reference.image_url));
  view.hidden = shown.length === 0;
  view.classList.toggle("several", shown.length > 1);
  const busy = boardBusy(board);
  // Rebuilt only when something shown changes: a new <img> per frame event would flicker.
  const signature = JSON.stringify([busy, shown.map(({ character }) => [character.name,
    character.reference && character.reference.kind, character.reference && character.reference.image_url])]);
  if (view.dataset.signature === signature) return;
  view.dataset.signature = signature;
  view.replaceChildren(...shown.map(({ character, k }) => renderCastMember(character, k, busy)));
}

function renderCastMember(character, k, busy) {
  const reference = character.reference || {};
  const url = safeUrl(reference.image_url);
  const kind = reference.kind === "uploaded" ? "uploaded" : "generated";
  const li = el("li", { className: "cast-member", attrs: { "data-character": k } });
  const figure = el("figure");
  if (url) {
    const what = character.name ? `${character.name}'s reference` : "Character reference";
    figure.append(el("img", { attrs: { src: url, alt: `${what} (${kind})` } }));
  } else {
    figure.append(el("span", { className: "cast-thumb-empty", attrs: { "aria-hidden": "true" } }));
  }
  const caption = el("figcaption");
  if (character.name) {
    caption.append(el("span", { className: "cast-member-name", text: character.name }));
    let words = kind === "uploaded" ? "uploaded face" : "generated portrait";
    if (!url) words = busy ? "portrait to come" : "no reference"; // a portrait is drawn only for someone shown
    caption.append(el("span", { className: "cast-member-kind", text: words }));
  } else {
    caption.append(el("span", { className: "cast-member-kind", text: `Character reference (${kind})` }));
  }
  figure.append(caption);
  li.append(figure);
  return li;
}

function renderProgress() {
  const board = state.board;
  const box = $("progress");
  const running = board && (board.status === "queued" || board.status === "running");
  box.hidden = !running;
  $("cancel").hidden = !running;
  if (!running) return;
  const bar = $("progress-bar");
  const p = board.progress;
  const fraction = p ? progressFraction(p) : null;
  if (fraction === null) {
    bar.removeAttribute("value"); // indeterminate
    $("progress-text").textContent = board.status === "queued" ? "Queued — waiting for the model…" : "Starting…";
    return;
  }
  // However the numbers arrive (coalesced, replayed, a retried panel), the bar never goes back.
  state.job.floor = Math.max(state.job.floor, fraction);
  bar.max = 1;
  bar.value = state.job.floor;
  const parts = [progressLabel(p)];
  if (p.steps) parts.push(`step ${Math.min(p.step || 0, p.steps)} of ${p.steps}`);
  const eta = formatEta(p.eta_s);
  if (eta) parts.push(eta);
  $("progress-text").textContent = parts.join(" · ");
}

/** The share of the job done, 0..1: the worker's own ``fraction``; else worked out from the
 * panel and step (the character reference, panel 0, counted as one more panel), or null. */
function progressFraction(p) {
  if (typeof p.fraction === "number" && Number.isFinite(p.fraction)) return Math.min(1, Math.max(0, p.fraction));
  if (!p.of) return null;
  const reference = state.job.sawReference ? 1 : 0;
  const steps = p.steps || 1;
  const within = Math.min(p.step || 0, steps) / steps;
  const done = p.panel === 0 ? within : Math.max(0, (p.panel || 1) - 1) + reference + within;
  return Math.min(1, Math.max(0, done / (p.of + reference)));
}

function progressLabel(p) {
  if (typeof p.label === "string" && p.label) return p.label;
  return p.panel === 0 ? "Character reference" : `Panel ${p.panel || 1} of ${p.of}`;
}

/** Progress events only touch the running panels' status text, not the whole board. */
function updateRunningPanels() {
  for (const node of document.querySelectorAll("#board .panel[data-status='running'] .panel-status")) {
    node.textContent = runningText();
  }
}

function runningText() {
  const p = state.board && state.board.progress;
  return p && p.steps ? `drawing… step ${p.step || 0}/${p.steps}` : "drawing…";
}

function renderBoardSoon() {
  if (state.dragFrameId !== null) {
    state.renderPending = true;
    return;
  }
  renderAll();
}

function renderBoard() {
  const boardEl = $("board");
  const board = state.board;
  $("board-empty").hidden = Boolean(board && (board.frames || []).length);
  if (!board) {
    boardEl.replaceChildren();
    return;
  }
  const s = board.settings || {};
  const width = Number(s.width) || 16;
  const height = Number(s.height) || 9;
  boardEl.style.setProperty("--panel-ratio", `${width} / ${height}`);
  boardEl.style.setProperty("--panel-min", width >= height ? "15rem" : "9.5rem");

  const focus = rememberFocus();
  const frames = sortedFrames(board);
  boardEl.replaceChildren(...frames.map((frame, i) => renderPanel(frame, i + 1, frames.length)));
  restoreFocus(focus);
}

function renderPanel(frame, position, count) {
  const n = frame.index || position;
  const editing = state.editing && state.editing.frameId === frame.id;
  const panel = el("li", {
    className: `panel panel-${frame.status}${failedAsBoard(frame) ? " not-drawn" : ""}`,
    attrs: {
      "data-index": n,
      "data-frame-id": frame.id,
      "data-status": frame.status,
      draggable: editing ? "false" : "true",
      "aria-label": `Panel ${n}`,
    },
  });
  panel.append(renderPanelImage(frame, n));
  const body = el("div", { className: "panel-body" });
  if (editing) {
    body.append(renderEditForm(frame, n));
  } else {
    body.append(el("p", { className: "panel-caption", text: frame.caption || "" }));
    const cast = renderPanelCast(frame);
    if (cast) body.append(cast);
  }
  body.append(renderPanelMeta(frame));
  const detail = panelErrorDetail(frame);
  if (detail) body.append(el("p", { className: "panel-error", text: detail }));
  if (!editing) body.append(renderPanelActions(frame, n, position, count));
  panel.append(body);
  attachDragHandlers(panel, frame.id);
  return panel;
}

function renderPanelImage(frame, n) {
  const box = el("div", { className: "panel-frame" });
  const url = frame.status === "done" ? safeUrl(frame.image_url) : null;
  const statusText = panelStatusText(frame);
  if (url) {
    const show = el("button", {
      className: "panel-open",
      attrs: { type: "button", "aria-label": `Show panel ${n} large, with what made it`, draggable: "false" },
    });
    show.append(el("img", {
      className: "panel-image",
      attrs: { src: url, alt: `Panel ${n}: ${frame.caption || ""}`, draggable: "false" },
    }));
    show.addEventListener("click", () => openPanelDialog(frame, n));
    box.append(show);
    box.append(el("span", { className: "panel-status visually-hidden", text: statusText }));
  } else {
    const placeholder = el("div", { className: "panel-placeholder" });
    if (frame.status === "running") placeholder.append(el("span", { className: "spinner", attrs: { "aria-hidden": "true" } }));
    placeholder.append(el("span", { className: "panel-status", text: statusText }));
    box.append(placeholder);
  }
  box.append(el("span", { className: "panel-number", text: n, attrs: { "aria-hidden": "true" } }));
  return box;
}

function panelStatusText(frame) {
  switch (frame.status) {
    case "done":
      return "done";
    case "running":
      return runningText();
    case "failed":
      return failedAsBoard(frame) ? "not drawn" : "failed";
    case "pending":
      return state.board && isFinal(state.board.status) && state.board.status !== "done" ? "not drawn" : "queued";
    default:
      return "queued";
  }
}

/* A board that failed as a whole (the model did not load, the disk is full) marks every
 * unfinished panel failed: its words belong to the board message, once, not to each panel. */
function failedAsBoard(frame) {
  const board = state.board;
  if (!board || board.status !== "failed" || !frame.error) return false;
  return sameMessage(frame.error, board.error) || /^not drawn\b/i.test(frame.error.trim());
}

/** The panel's own error, in full, under its caption; null when the board message has it. */
function panelErrorDetail(frame) {
  if (frame.status !== "failed" || !frame.error || failedAsBoard(frame)) return null;
  return frame.error;
}

/** Who is in the panel, as chips: its characters' names, or "no one". The one unnamed
 * character of a board made with a single character gets no chip, as before the cast. */
function renderPanelCast(frame) {
  if (!Array.isArray(frame.cast)) return null; // a board from before the cast
  const names = frame.cast.filter(Boolean);
  if (frame.cast.length && !names.length) return null;
  const chips = names.length
    ? names.map((name) => el("li", { className: "cast-chip", text: name }))
    : [el("li", { className: "cast-chip nobody", text: "no one" })];
  return el("ul", { className: "panel-cast", attrs: { "aria-label": "Who is in it" } }, chips);
}

/** Who is in a panel, in words (the panel details); null where the chips show nothing. */
function castText(frame) {
  if (!Array.isArray(frame.cast)) return null;
  if (!frame.cast.length) return "no one";
  const names = frame.cast.filter(Boolean);
  return names.length ? names.join(", ") : null;
}

function renderPanelMeta(frame) {
  const meta = el("div", { className: "panel-meta" });
  if (frame.shot) meta.append(el("span", { className: "panel-shot", text: frame.shot }));
  const hasSeed = frame.seed !== null && frame.seed !== undefined;
  meta.append(el("span", { className: "panel-seed", text: hasSeed ? `seed ${frame.seed}` : "seed —" }));
  const badge = renderIdentityBadge(frame);
  if (badge) meta.append(badge);
  if (frame.prompt_shortened) {
    meta.append(el("span", {
      className: "prompt-shortened",
      text: "prompt shortened",
      attrs: { title: `To fit CLIP's 77 tokens the prompt left out: “${frame.prompt_shortened}”. The caption keeps them.` },
    }));
  }
  return meta;
}

/** A face score in words: {text, kind, title}; kind is match, drift or neutral. */
function identityWords(identity) {
  const distance = typeof identity.distance === "number" ? identity.distance.toFixed(2) : "";
  let words;
  if (identity.status === "match") {
    words = { kind: "match", text: distance ? `face ${distance}` : "face ok",
      title: "The face matches the character reference (lower distance = closer)." };
  } else if (identity.status === "drift") {
    words = { kind: "drift", text: distance ? `drift ${distance}` : "drift",
      title: "The face drifted from the character reference." };
  } else if (identity.status === "no_reference_face") {
    words = { kind: "neutral", text: "no reference face",
      title: "No face was found in the character reference, so this panel could not be checked." };
  } else {
    words = { kind: "neutral", text: "no face", title: "No face was found in this panel." };
  }
  if (typeof identity.clip_similarity === "number") {
    words.title += ` CLIP similarity ${identity.clip_similarity.toFixed(2)}.`;
  }
  const faces = characterScores(identity);
  if (faces.length) words.title += ` ${faces.map(characterScoreText).join("; ")}.`;
  return words;
}

/** The panel's per-character scores (absent on boards from before the cast). */
function characterScores(identity) {
  return identity && Array.isArray(identity.characters) ? identity.characters.filter(Boolean) : [];
}

const CHARACTER_STATUS_WORDS = {
  match: "match",
  drift: "drift",
  missing: "missing (no face found for them)",
  no_reference_face: "no reference face",
};

/** One character's score: "Mara: match, distance 0.31, face 1 from the left, CLIP 0.84". */
function characterScoreText(score) {
  const parts = [CHARACTER_STATUS_WORDS[score.status] || String(score.status || "not scored")];
  const distance = formatNumber(score.distance, 2);
  if (distance) parts.push(`distance ${distance}`);
  if (Number.isInteger(score.face)) parts.push(`face ${score.face + 1} from the left`);
  const clip = formatNumber(score.clip_similarity, 2);
  if (clip) parts.push(`CLIP ${clip}`);
  return `${score.name || "the character"}: ${parts.join(", ")}`;
}

function renderIdentityBadge(frame) {
  const tries = frame.attempts > 1 ? `${frame.attempts} tries` : "";
  if (!frame.identity && !tries) return null;
  const words = frame.identity ? identityWords(frame.identity) : { kind: "neutral", text: "", title: "" };
  const text = [words.text, tries].filter(Boolean).join(" · ");
  return el("span", {
    className: `identity-badge identity-${words.kind}`,
    text,
    attrs: { title: words.title || null },
  });
}

function actionButton(className, label, ariaLabel, onClick, disabled = false) {
  const button = el("button", {
    className: `button small ${className}`,
    text: label,
    attrs: { type: "button", "aria-label": ariaLabel, title: ariaLabel },
  });
  button.disabled = disabled;
  button.addEventListener("click", onClick);
  return button;
}

function panelFileName(position) {
  return `panel-${String(position).padStart(2, "0")}.png`;
}

/* The image answers with its stored name in Content-Disposition (frame-4-v1.png), and browsers
 * prefer that to the link's download attribute; a blob has no such header, so its name holds. */
async function downloadAs(event, url, fileName) {
  event.preventDefault();
  let blob;
  try {
    const response = await fetch(url);
    if (!response.ok) throw new ApiError(defaultErrorMessage(response.status), null, response.status);
    blob = await response.blob();
  } catch (err) {
    reportError(err instanceof ApiError ? err : new ApiError(NETWORK_ERROR));
    return;
  }
  const blobUrl = URL.createObjectURL(blob);
  const link = el("a", { attrs: { href: blobUrl, download: fileName } });
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the blob by now; a minute's grace covers slow disks.
  setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000);
}

function renderPanelActions(frame, n, position, count) {
  const busy = frame.status === "queued" || frame.status === "running";
  const actions = el("div", { className: "panel-actions" });
  actions.append(
    actionButton("redraw", "Redraw", `Redraw panel ${n} with a new seed`,
      () => regenerateFrame(n, { seed: null }), busy),
    actionButton("edit", "Edit", `Edit the text, scene, seed or cast of panel ${n}`, () => startEdit(frame), busy),
    actionButton("use-seed", "Use seed", `Copy the seed of panel ${n} into the form`,
      () => useSeed(frame), frame.seed === null || frame.seed === undefined),
  );
  const url = safeUrl(frame.image_url);
  if (url && frame.status === "done") {
    // Named by position as in the ZIP, so "1" on the page is panel-01.png everywhere.
    const link = el("a", {
      className: "button small download",
      text: "Download",
      attrs: { href: url, download: panelFileName(position), "aria-label": `Download panel ${n}` },
    });
    link.addEventListener("click", (event) => downloadAs(event, url, panelFileName(position)));
    actions.append(link);
  }
  const move = el("span", { className: "move-buttons" });
  move.append(
    actionButton("move-left", "←", `Move panel ${n} earlier`, () => moveFrame(frame.id, -1), position <= 1),
    actionButton("move-right", "→", `Move panel ${n} later`, () => moveFrame(frame.id, 1), position >= count),
  );
  actions.append(move);
  return actions;
}

/* ----------------------------------------------------------- panel details */

function formatNumber(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : null;
}

/** Everything that made a panel, from the panel and the board's settings. */
function panelDetails(frame, settings) {
  const s = settings || {};
  let identityText = "not scored";
  if (frame.identity) {
    identityText = identityWords(frame.identity).text;
    const clip = formatNumber(frame.identity.clip_similarity, 2);
    if (clip) identityText += ` (CLIP similarity ${clip})`;
  }
  const ip = s.identity_lock === false ? "identity lock off" : formatNumber(s.ip_adapter_scale, 2);
  const seconds = formatNumber(frame.seconds, 1);
  const scene = distinctScene(frame);
  const cast = castText(frame);
  // By name: the one unnamed character's score is the panel's own, said once.
  const faces = characterScores(frame.identity).some((score) => score.name) ? characterScores(frame.identity) : [];
  const traitsCut = Object.entries(frame.traits_shortened || {}).filter(([, words]) => words);
  return [
    ...(scene ? [["Scene", scene]] : []),
    ...(cast ? [["Who is in it", cast]] : []),
    ["Prompt", frame.prompt || "—"],
    ["Negative prompt", frame.negative_prompt || "—"],
    ["Scene words cut", frame.prompt_shortened
      ? `${frame.prompt_shortened} (left out to fit CLIP's 77 tokens; the caption keeps them)` : "none"],
    ...(traitsCut.length ? [["Traits cut", el("ul", { className: "detail-list traits-cut" },
      traitsCut.map(([name, words]) => el("li", { text: `${name || "the character"}: ${words}` })))]] : []),
    ["Shot", frame.shot || "—"],
    ["Seed", frame.seed ?? "—"],
    ["Steps", s.steps ?? "—"],
    ["CFG", formatNumber(s.guidance_scale, 1) ?? "—"],
    ["IP-Adapter scale", ip ?? "—"],
    ["Identity", identityText],
    ...(faces.length ? [["Faces", el("ul", { className: "detail-list identity-characters" },
      faces.map((score) => el("li", { text: characterScoreText(score) })))]] : []),
    ["Attempts", frame.attempts ?? "—"],
    ["Time", seconds ? `${seconds} s` : "—"],
  ];
}

/** The panel's scene when it is not simply its caption (an edited plan's English scene), else "". */
function distinctScene(frame) {
  const scene = typeof frame.scene === "string" ? frame.scene.trim() : "";
  return scene && scene !== (frame.caption || "").trim() ? scene : "";
}

function openPanelDialog(frame, n) {
  const dialog = $("panel-dialog");
  const url = safeUrl(frame.image_url);
  const image = $("panel-dialog-image");
  if (url) image.src = url;
  else image.removeAttribute("src");
  image.alt = `Panel ${n}: ${frame.caption || ""}`;
  image.hidden = !url;
  $("panel-dialog-title").textContent = `Panel ${n}`;
  $("panel-dialog-caption").textContent = frame.caption || "";
  $("panel-dialog-details").replaceChildren(...panelDetails(frame, state.board && state.board.settings)
    .flatMap(([term, value]) => [el("dt", { text: term }),
      value instanceof Node ? el("dd", {}, [value]) : el("dd", { text: value })]));
  if (!dialog.open) dialog.showModal(); // modal: Esc closes it and focus returns to the panel
}

function onDialogClick(event) {
  // A click on the backdrop lands on the dialog element itself, outside its content box.
  if (event.target === $("panel-dialog")) $("panel-dialog").close();
}

/* ---------------------------------------------------------- reuse settings */

/** Put an opened board's inputs back into the form, to draw a variation of it. */
function reuseSettings() {
  const board = state.board;
  if (!board) return;
  const s = board.settings || {};
  clearError();
  $("story").value = board.story || "";
  setCast(boardCharacters(board)); // names and traits; an uploaded face is to be chosen again
  $("style").value = board.style || "";
  if ((board.frames || []).length) $("frames").value = board.frames.length;
  setSelect($("preset"), s.preset);
  renderPresetHint();
  setSelect($("aspect"), s.aspect);
  $("seed").value = s.seed ?? "";
  if (typeof s.identity_lock === "boolean") $("identity-lock").checked = s.identity_lock;
  $("story").focus();
  announce("The board's settings are in the form.");
}

function setSelect(select, value) {
  if (value && [...select.options].some((option) => option.value === value)) select.value = value;
}

/* ------------------------------------------------------------- inline edit */

function startEdit(frame) {
  state.editing = {
    frameId: frame.id, caption: frame.caption || "", scene: distinctScene(frame), seed: frame.seed ?? "",
    cast: Array.isArray(frame.cast) ? [...frame.cast] : null,
  };
  renderBoard();
  const area = document.querySelector(`#board .panel[data-frame-id="${CSS.escape(String(frame.id))}"] .edit-caption`);
  if (area) area.focus();
}

function renderEditForm(frame, n) {
  const draft = state.editing;
  const form = el("form", { className: "edit-form", attrs: { "aria-label": `Edit panel ${n}` } });
  const captionId = `edit-caption-${frame.id}`;
  const sceneId = `edit-scene-${frame.id}`;
  const seedId = `edit-seed-${frame.id}`;
  const caption = el("textarea", { className: "edit-caption", attrs: { id: captionId, rows: 3 } });
  caption.value = draft.caption;
  caption.addEventListener("input", () => { draft.caption = caption.value; });
  const scene = el("textarea", {
    className: "edit-scene",
    attrs: { id: sceneId, rows: 2, placeholder: "Same as the text" },
  });
  scene.value = draft.scene;
  scene.addEventListener("input", () => { draft.scene = scene.value; });
  const seed = el("input", {
    className: "edit-seed",
    attrs: { id: seedId, type: "number", min: 0, step: 1, inputmode: "numeric", placeholder: "random" },
  });
  seed.value = draft.seed;
  seed.addEventListener("input", () => { draft.seed = seed.value; });

  const save = el("button", { className: "button small primary", text: "Redraw", attrs: { type: "submit" } });
  const cancel = el("button", { className: "button small ghost", text: "Cancel", attrs: { type: "button" } });
  cancel.addEventListener("click", () => {
    state.editing = null;
    renderBoard();
    focusPanelButton(frame.id, ".edit");
  });
  form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") cancel.click();
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const seedText = String(draft.seed).trim();
    const seedValue = seedText === "" ? null : Number(seedText);
    if (seedValue !== null && (!Number.isInteger(seedValue) || seedValue < 0)) {
      seed.setAttribute("aria-invalid", "true");
      seed.focus();
      return;
    }
    const body = { seed: seedValue };
    const text = draft.caption.trim() || frame.caption || "";
    if (text !== (frame.caption || "")) body.caption = text;
    // A blank scene is the text itself (sent as such: a blank field keeps the old scene).
    const sceneText = draft.scene.trim() || text;
    if (sceneText !== (frame.scene || frame.caption || "")) body.scene = sceneText;
    if (draft.cast !== null && !sameCast(draft.cast, frame.cast)) body.cast = draft.cast; // missing: kept
    regenerateFrame(n, body);
  });

  form.append(
    el("label", { className: "small-label", text: "Panel text", attrs: { for: captionId } }),
    caption,
    el("label", { className: "small-label", text: "Scene (for the image, in English; blank = the text)",
      attrs: { for: sceneId } }),
    scene,
    el("label", { className: "small-label", text: "Seed (blank = random)", attrs: { for: seedId } }),
    seed,
  );
  // A board of one unnamed character has no one to choose: its Edit stays as it was.
  if (boardHasNames(state.board)) {
    const options = boardCharacters(state.board).map((c) => ({ value: c.name, label: c.name }));
    form.append(castPicker(`edit-cast-${frame.id}`, options, draft.cast, (value) => { draft.cast = value; }));
  }
  form.append(el("div", { className: "edit-actions" }, [save, cancel]));
  return form;
}

/* ------------------------------------------------------------ drag & drop */

function attachDragHandlers(panel, frameId) {
  panel.addEventListener("dragstart", (e) => {
    if (panel.getAttribute("draggable") !== "true") return;
    state.dragFrameId = frameId;
    panel.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", String(frameId));
  });
  panel.addEventListener("dragend", () => {
    panel.classList.remove("dragging");
    clearDropMarks();
    state.dragFrameId = null;
    if (state.renderPending) {
      state.renderPending = false;
      renderAll();
    }
  });
  panel.addEventListener("dragover", (e) => {
    if (state.dragFrameId === null || state.dragFrameId === frameId) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "move";
    const before = dropBefore(panel, e);
    panel.classList.toggle("drop-before", before);
    panel.classList.toggle("drop-after", !before);
  });
  panel.addEventListener("dragleave", (e) => {
    if (!panel.contains(e.relatedTarget)) panel.classList.remove("drop-before", "drop-after");
  });
  panel.addEventListener("drop", (e) => {
    e.preventDefault();
    const dragged = state.dragFrameId !== null ? state.dragFrameId : parseDraggedId(e);
    const before = dropBefore(panel, e);
    clearDropMarks();
    state.dragFrameId = null;
    state.renderPending = false;
    if (dragged === null || dragged === frameId) return;
    const ids = sortedFrames(state.board).map((f) => f.id).filter((id) => id !== dragged);
    const target = ids.indexOf(frameId);
    if (target < 0) return;
    ids.splice(before ? target : target + 1, 0, dragged);
    saveOrder(ids);
  });
}

function parseDraggedId(e) {
  const raw = e.dataTransfer && e.dataTransfer.getData("text/plain");
  if (!raw) return null;
  const frame = (state.board.frames || []).find((f) => String(f.id) === raw);
  return frame ? frame.id : null;
}

/** In a multi-column grid the drop side is left/right, in one column it is above/below. */
function dropBefore(panel, e) {
  const rect = panel.getBoundingClientRect();
  const boardWidth = $("board").getBoundingClientRect().width;
  if (rect.width < boardWidth * 0.75) return e.clientX < rect.left + rect.width / 2;
  return e.clientY < rect.top + rect.height / 2;
}

function clearDropMarks() {
  for (const node of document.querySelectorAll("#board .drop-before, #board .drop-after")) {
    node.classList.remove("drop-before", "drop-after");
  }
}

/* ------------------------------------------------------------------ focus */

const FOCUSABLE_CLASSES = [".redraw", ".edit", ".use-seed", ".move-left", ".move-right", ".download"];

function rememberFocus() {
  const active = document.activeElement;
  const panel = active && active.closest ? active.closest("#board .panel") : null;
  if (!panel) return null;
  const selector = FOCUSABLE_CLASSES.find((cls) => active.matches(cls));
  return selector ? { frameId: panel.dataset.frameId, selector } : null;
}

function restoreFocus(focus) {
  if (focus) focusPanelButton(focus.frameId, focus.selector);
}

function focusPanelButton(frameId, selector) {
  const panel = document.querySelector(`#board .panel[data-frame-id="${CSS.escape(String(frameId))}"]`);
  if (!panel) return;
  const target = panel.querySelector(`${selector}:not([disabled])`) || panel.querySelector("button:not([disabled])");
  if (target) target.focus();
}

/* ---------------------------------------------------------------- history */

function renderHistory(items) {
  const list = $("history");
  $("history-empty").hidden = items.length > 0;
  list.replaceChildren(...items.map(renderHistoryItem));
  renderHistorySelection();
}

function renderHistoryItem(item) {
  const li = el("li", { className: "history-item", attrs: { "data-id": item.id } });
  const title = item.title || "Untitled storyboard";

  const open = el("button", {
    className: "history-open",
    attrs: { type: "button", "aria-label": `Open storyboard ${title}` },
  });
  const thumbUrl = safeUrl(item.thumbnail_url);
  open.append(thumbUrl
    ? el("img", { className: "history-thumb", attrs: { src: thumbUrl, alt: "" } })
    : el("span", { className: "history-thumb empty-thumb", attrs: { "aria-hidden": "true" } }));
  const text = el("span", { className: "history-text" });
  text.append(
    el("span", { className: "history-title", text: title }),
    el("span", { className: "history-meta", text: formatDate(item.created_at) }),
    el("span", { className: "history-meta" }, [
      el("span", { className: `status-dot status-${item.status}`, text: item.status }),
      document.createTextNode(` · ${historyCount(item)}`),
    ]),
  );
  open.append(text);
  open.addEventListener("click", async () => {
    clearError();
    await openBoard(item.id, { subscribe: true });
    revealBoard();
  });

  const remove = el("button", {
    className: "history-delete button small ghost",
    text: "✕",
    attrs: { type: "button", "aria-label": `Delete storyboard ${title}`, title: "Delete this storyboard" },
  });
  remove.addEventListener("click", () => deleteStoryboard(item));
  li.append(open, remove);
  return li;
}

function historyCount(item) {
  const total = item.frames_total ?? 0;
  const done = item.frames_done ?? total;
  const noun = total === 1 ? "panel" : "panels";
  return done === total ? `${total} ${noun}` : `${done}/${total} ${noun}`;
}

function renderHistorySelection() {
  for (const item of document.querySelectorAll("#history .history-item")) {
    const current = state.boardId !== null && item.dataset.id === String(state.boardId);
    item.classList.toggle("current", current);
    const open = item.querySelector(".history-open");
    if (current) open.setAttribute("aria-current", "true");
    else open.removeAttribute("aria-current");
  }
}

/** Keep the open board's history entry roughly current between full refreshes. */
function renderHistoryItemProgress() {
  if (!state.board) return;
  const item = document.querySelector(`#history .history-item[data-id="${CSS.escape(String(state.board.id))}"]`);
  if (!item) return;
  const frames = state.board.frames || [];
  const counts = item.querySelectorAll(".history-meta");
  const line = counts[counts.length - 1];
  if (!line || !line.lastChild) return;
  const done = frames.filter((f) => f.status === "done").length;
  line.lastChild.textContent = ` · ${historyCount({ frames_total: frames.length, frames_done: done })}`;
}

/* ------------------------------------------------------------------- start */

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
    if (id && id !== state.boardId) openBoard(id, { subscribe: true });
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
  if (id) openBoard(id, { subscribe: true });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
