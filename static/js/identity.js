/* A panel's face scores in words.
 */

import { formatNumber } from "./format.js";

/** A face score in words: {text, kind, title}; kind is match, drift or neutral. */
export function identityWords(identity) {
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
export function characterScores(identity) {
  return identity && Array.isArray(identity.characters) ? identity.characters.filter(Boolean) : [];
}

const CHARACTER_STATUS_WORDS = {
  match: "match",
  drift: "drift",
  missing: "missing (no face found for them)",
  no_reference_face: "no reference face",
};

/** One character's score: "Mara: match, distance 0.31, face 1 from the left, CLIP 0.84". */
export function characterScoreText(score) {
  const parts = [CHARACTER_STATUS_WORDS[score.status] || String(score.status || "not scored")];
  const distance = formatNumber(score.distance, 2);
  if (distance) parts.push(`distance ${distance}`);
  if (Number.isInteger(score.face)) parts.push(`face ${score.face + 1} from the left`);
  const clip = formatNumber(score.clip_similarity, 2);
  if (clip) parts.push(`CLIP ${clip}`);
  return `${score.name || "the character"}: ${parts.join(", ")}`;
}
