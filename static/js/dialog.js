/* A panel's details, large, in a modal dialog.
 */

import { $, actionButton, el, safeUrl } from "./dom.js";
import { formatNumber } from "./format.js";
import { characterScores, characterScoreText, identityWords } from "./identity.js";
import { state } from "./state.js";

/** Who is in a panel, in words (the panel details); null where the chips show nothing. */
function castText(frame) {
  if (!Array.isArray(frame.cast)) return null;
  if (!frame.cast.length) return "no one";
  const names = frame.cast.filter(Boolean);
  return names.length ? names.join(", ") : null;
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
    ...(frame.dialogue ? [["Dialogue", frame.dialogue]] : []),
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
    ...(frame.layout ? [["Layout", layoutDetails(frame.layout)]] : []),
    // Set in the animatic, or the time to read the caption and dialogue.
    ...(typeof frame.duration === "number"
      ? [["On screen", `${formatNumber(frame.duration, 2)} s${frame.duration_set ? "" : " (reading time)"}`]] : []),
    ["Attempts", frame.attempts ?? "—"],
    ["Time", seconds ? `${seconds} s` : "—"],
  ];
}

/** What the panel follows: the layout's kind, strength and adapter, and its picture. */
function layoutDetails(layout) {
  const posed = Array.isArray(layout.poses) ? layout.poses.map((p) => p.character || "the character") : [];
  const strength = formatNumber(layout.strength, 2);
  // adapter_conditioning_factor: the share of the steps (the first ones) that follow the layout.
  const factor = typeof layout.factor !== "number" ? ""
    : layout.factor >= 1 ? "on every step" : `on the first ${Math.round(layout.factor * 100)}% of the steps`;
  const text = [
    posed.length ? `${layout.kind} of ${posed.join(", ")}` : layout.kind,
    strength ? `strength ${strength}` : "",
    factor,
    layout.adapter || "",
  ].filter(Boolean).join(" · ");
  const url = safeUrl(layout.image);
  return el("div", { className: "layout-details" }, [
    el("span", { className: "layout-text", text }),
    url ? el("img", { className: "layout-image", attrs: { src: url, alt: `The ${layout.kind} this panel follows` } })
      : null,
  ]);
}

/** The panel's scene when it is not simply its caption (an edited plan's English scene), else "". */
export function distinctScene(frame) {
  const scene = typeof frame.scene === "string" ? frame.scene.trim() : "";
  return scene && scene !== (frame.caption || "").trim() ? scene : "";
}

/** What made a take, in a line: "seed 99 · fast · 12 steps, Euler, CFG 6.5 · 1.2 s · following its sketch". */
function takeText(take, takes) {
  const ran = take.settings || {};
  const how = [
    ran.steps ? `${ran.steps} steps` : "",
    ran.sampler || "",
    ran.guidance_scale !== undefined && ran.guidance_scale !== null ? `CFG ${formatNumber(ran.guidance_scale, 1)}` : "",
    ran.lora ? `${ran.lora} LoRA` : "",
  ].filter(Boolean).join(", ");
  const seconds = formatNumber(take.seconds, 1);
  const parent = takes.findIndex((t) => t.id === take.parent);
  return [
    `seed ${take.seed}`,
    take.mode || "",
    how,
    seconds ? `${seconds} s` : "",
    take.layout ? `following its ${take.layout.kind}` : "",
    parent >= 0 ? `refined from take ${parent + 1}` : "",
  ].filter(Boolean).join(" · ");
}

/** Each take of the panel, with what made it; the others can be shown or deleted. */
function takesList(frame, n, actions) {
  const takes = frame.takes;
  return el("ol", { className: "detail-list takes" }, takes.map((take, i) => {
    const chosen = take.id === frame.take;
    const item = el("li", { className: chosen ? "take chosen" : "take" });
    item.append(el("span", { text: `Take ${i + 1}${chosen ? " (shown)" : ""}: ${takeText(take, takes)}` }));
    if (!chosen && actions) {
      item.append(
        actionButton("take-show", "Show", `Show take ${i + 1} on panel ${n}`, () => actions.choose(frame, take, n)),
        actionButton("take-delete", "Delete", `Delete take ${i + 1} of panel ${n}`, () => actions.remove(frame, take, n)),
      );
    }
    return item;
  }));
}

/** ``actions``: {choose, remove}(frame, take, n), the board's calls for the takes list. */
export function openPanelDialog(frame, n, actions) {
  const dialog = $("panel-dialog");
  const url = safeUrl(frame.image_url);
  const image = $("panel-dialog-image");
  if (url) image.src = url;
  else image.removeAttribute("src");
  image.alt = `Panel ${n}: ${frame.caption || ""}`;
  image.hidden = !url;
  $("panel-dialog-title").textContent = `Panel ${n}`;
  $("panel-dialog-caption").textContent = frame.caption || "";
  const details = panelDetails(frame, state.board && state.board.settings);
  if (Array.isArray(frame.takes) && frame.takes.length) details.push(["Takes", takesList(frame, n, actions)]);
  $("panel-dialog-details").replaceChildren(...details
    .flatMap(([term, value]) => [el("dt", { text: term }),
      value instanceof Node ? el("dd", {}, [value]) : el("dd", { text: value })]));
  if (!dialog.open) dialog.showModal(); // modal: Esc closes it and focus returns to the panel
}

export function onDialogClick(event) {
  // A click on the backdrop lands on the dialog element itself, outside its content box.
  if (event.target === $("panel-dialog")) $("panel-dialog").close();
}
