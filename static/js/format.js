/* Numbers, dates and messages in words.
 */

export function formatDate(value) {
  if (value === null || value === undefined || value === "") return "";
  let date;
  if (typeof value === "number") date = new Date(value < 1e12 ? value * 1000 : value);
  else date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatEta(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  return `about ${Math.max(1, Math.round(seconds))} s left`;
}

export function formatNumber(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : null;
}

/** 45 -> "45 s", 200 -> "4 min" (rounded up: an ETA that runs out early is worse). */
export function roughDuration(seconds) {
  return seconds < 60 ? `${Math.max(1, Math.round(seconds))} s` : `${Math.ceil(seconds / 60)} min`;
}

/** The same message in two places: one may be cut short, or wrapped in more words. */
export function sameMessage(a, b) {
  if (typeof a !== "string" || typeof b !== "string") return false;
  const x = a.trim();
  const y = b.trim();
  return Boolean(x && y) && (x.includes(y) || y.includes(x));
}
