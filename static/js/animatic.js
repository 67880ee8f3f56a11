/* The open board as an animatic: its panels in time (each panel's `start` and `duration`, from
 * the server's timeline), with their captions and dialogue, in a modal dialog: play/pause, a
 * scrub bar, keys (Space, ←/→ a panel, Home/End), and the shown panel's duration and the board's
 * frame rate to change. The player's clock is performance.now() and requestAnimationFrame and
 * nothing else, so a test steps it with a fake clock (Playwright's page.clock).
 */

import { api } from "./api.js";
import { setBoard } from "./board.js";
import { $, announce, el, safeUrl } from "./dom.js";
import { sortedFrames, state } from "./state.js";

// Where the player is: seconds from the board's start, and, while playing, the clock time and
// position it started from (the position is computed from them, never summed frame by frame).
const player = { position: 0, playing: false, startedAt: 0, startedFrom: 0, request: 0 };

function frames() {
  return sortedFrames(state.board);
}

function total() {
  return Number(state.board && state.board.duration) || 0;
}

/** The panel shown at ``position``: the last that starts at or before it. */
function panelAt(position) {
  const list = frames();
  let shown = 0;
  list.forEach((frame, i) => {
    if (frame.start <= position + 1e-9) shown = i;
  });
  return list.length ? { frame: list[shown], i: shown, count: list.length } : null;
}

export function setUpAnimatic() {
  $("animatic-open").addEventListener("click", openAnimatic);
  $("animatic-play").addEventListener("click", toggle);
  $("animatic-scrub").addEventListener("input", (event) => seek(Number(event.target.value)));
  $("animatic-dialog").addEventListener("keydown", onKey);
  $("animatic-dialog").addEventListener("close", pause);
  $("animatic-duration").addEventListener("change", () => {
    const seconds = Number($("animatic-duration").value);
    setDuration(Number.isFinite(seconds) && $("animatic-duration").value !== "" ? seconds : null);
  });
  $("animatic-duration-reset").addEventListener("click", () => setDuration(null));
  $("animatic-fps").addEventListener("change", () => setFps(Number($("animatic-fps").value)));
}

export function openAnimatic() {
  if (!state.board || !frames().length) return;
  player.position = 0;
  $("animatic-error").textContent = "";
  renderFps();
  render();
  $("animatic-dialog").showModal();
  $("animatic-stage").focus();
}

function toggle() {
  if (player.playing) pause();
  else play();
}

function play() {
  if (player.position >= total()) player.position = 0; // played to the end: from the start again
  player.playing = true;
  player.startedAt = performance.now();
  player.startedFrom = player.position;
  player.request = requestAnimationFrame(tick);
  render();
}

function pause() {
  if (player.playing) player.position = Math.min(total(), clockPosition());
  player.playing = false;
  cancelAnimationFrame(player.request);
  render();
}

function clockPosition() {
  return player.startedFrom + (performance.now() - player.startedAt) / 1000;
}

function tick() {
  if (!player.playing) return;
  player.position = clockPosition();
  if (player.position >= total()) {
    player.position = total();
    player.playing = false;
  } else {
    player.request = requestAnimationFrame(tick);
  }
  render();
}

function seek(position) {
  player.position = Math.max(0, Math.min(total(), position));
  if (player.playing) {
    player.startedAt = performance.now();
    player.startedFrom = player.position;
  }
  render();
}

function onKey(event) {
  // A control keeps its own keys (Space presses a button, arrows move the scrub bar).
  if (event.target.closest("button, input, select")) return;
  const shown = panelAt(player.position);
  if (!shown) return;
  const list = frames();
  if (event.key === " ") toggle();
  else if (event.key === "ArrowRight") seek(shown.i + 1 < list.length ? list[shown.i + 1].start : total());
  // Back to this panel's start, or, right at it, to the one before.
  else if (event.key === "ArrowLeft") {
    const atStart = player.position - shown.frame.start < 0.25;
    seek(atStart && shown.i > 0 ? list[shown.i - 1].start : shown.frame.start);
  } else if (event.key === "Home") seek(0);
  else if (event.key === "End") seek(total());
  else return;
  event.preventDefault();
}

function clock(seconds) {
  const tenths = Math.round(seconds * 10);
  return `${Math.floor(tenths / 600)}:${String(Math.floor(tenths / 10) % 60).padStart(2, "0")}.${tenths % 10}`;
}

function render() {
  const shown = panelAt(player.position);
  if (!shown) return;
  const { frame, i, count } = shown;
  const stage = $("animatic-stage");
  stage.dataset.index = String(i + 1);
  const url = safeUrl(frame.image_url);
  const image = $("animatic-image");
  if (url && image.getAttribute("src") !== url) image.src = url;
  if (!url) image.removeAttribute("src");
  image.hidden = !url;
  image.alt = `Panel ${i + 1}: ${frame.caption || ""}`;
  $("animatic-empty").hidden = Boolean(url);
  $("animatic-caption").textContent = frame.caption || "";
  $("animatic-dialogue").textContent = frame.dialogue || "";
  $("animatic-dialogue").hidden = !frame.dialogue;
  const scrub = $("animatic-scrub");
  scrub.max = String(total());
  scrub.step = String(1 / (Number(state.board.fps) || 24));
  scrub.value = String(player.position);
  scrub.setAttribute("aria-valuetext", `${clock(player.position)} of ${clock(total())}, panel ${i + 1}`);
  $("animatic-time").textContent = `${clock(player.position)} / ${clock(total())}`;
  const button = $("animatic-play");
  button.textContent = player.playing ? "Pause" : "Play";
  button.setAttribute("aria-pressed", String(player.playing));
  $("animatic-panel").textContent = `Panel ${i + 1} of ${count}`;
  const duration = $("animatic-duration");
  // To the millisecond: 4.667, not the 4.666667 of 112 frames at 24 fps.
  if (document.activeElement !== duration) duration.value = String(Math.round(frame.duration * 1000) / 1000);
  duration.title = frame.duration_set ? "Set for this panel" : "The time to read its caption and dialogue";
  $("animatic-duration-reset").disabled = !frame.duration_set;
}

function renderFps() {
  const rates = (state.presets && state.presets.frame_rates) || [state.board.fps];
  const select = $("animatic-fps");
  select.replaceChildren(...rates.map((fps) => el("option", { text: `${fps} fps`, attrs: { value: fps } })));
  select.value = String(state.board.fps);
}

/** PATCH the open board (the shown panel's duration, the board's fps); the answer is the board. */
async function change(url, body, said) {
  $("animatic-error").textContent = "";
  try {
    const board = await api("PATCH", url, body);
    if (!state.board || board.id !== state.board.id) return;
    setBoard(board);
    renderFps();
    seek(player.position);
    announce(said);
  } catch (err) {
    $("animatic-error").textContent = err.message;
    render(); // the field shows what holds again
  }
}

function setDuration(seconds) {
  const shown = panelAt(player.position);
  if (!shown) return;
  const n = shown.i + 1;
  change(shown.frame.links.self, { duration: seconds },
    seconds === null ? `Panel ${n} lasts its reading time again.` : `Panel ${n} lasts ${seconds} seconds.`);
}

function setFps(fps) {
  change(state.board.links.self, { fps }, `The board plays at ${fps} frames a second.`);
}
