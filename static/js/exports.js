/* Downloads: the board's PDF and ZIP, its cut for editors (captions, timelines, a Storyboarder
 * project), its animatic MP4 (written as a job on the server: progress, cancel, then the file),
 * a panel's PNG under its position's name, and a Storyboarder project imported as a new board.
 */

import { ApiError, api, defaultErrorMessage, ENTRY, NETWORK_ERROR } from "./api.js";
import { $, announce, el, safeUrl } from "./dom.js";
import { reportError } from "./errors.js";

const ANIMATIC_POLL_MS = 500;
// Each download's anchor, the key of its URL in the board's `export`, and its file's suffix.
const DOWNLOADS = [
  ["export-pdf", "pdf", "pdf"], ["export-zip", "zip", "zip"],
  ["export-vtt", "vtt", "vtt"], ["export-srt", "srt", "srt"],
  ["export-timeline-zip", "timeline_zip", "timeline.zip"], ["export-otio", "otio", "otio"],
  ["export-fcp-xml", "fcp_xml", "xml"], ["export-edl", "edl", "edl"],
  ["export-storyboarder", "storyboarder", "storyboarder.zip"],
];

// The animatic being followed: its board, the URL that starts one, the job's last answer.
const animatic = { boardId: null, startUrl: null, job: null, timer: null };

/** The board's downloads, from the links in its answer; hidden without a board. Beside them,
 * the server's word on text its fonts cannot draw, which the PDF leaves out. */
export function renderExports(board) {
  const links = board && board.export;
  $("exports").hidden = !links;
  const notice = $("export-pdf-notice");
  notice.textContent = (board && board.pdf_notice) || "";
  notice.hidden = !notice.textContent;
  if (!links) {
    $("animatic-export").hidden = true;
    return;
  }
  for (const [id, key, suffix] of DOWNLOADS) setLink($(id), links[key], `storyboard-${board.id}.${suffix}`);
  if (String(board.id) !== animatic.boardId) {
    stopFollowing();
    animatic.boardId = String(board.id);
    animatic.job = null;
    $("animatic-export").hidden = true;
    $("export-animatic").setAttribute("aria-expanded", "false");
    renderAnimatic();
  }
  animatic.startUrl = links.animatic;
}

/** "Animatic MP4…" shows and hides the animatic's options. */
export function toggleAnimatic() {
  const row = $("animatic-export");
  row.hidden = !row.hidden;
  $("export-animatic").setAttribute("aria-expanded", String(!row.hidden));
}

/** Start writing the animatic, then follow its progress until it is done, failed or canceled. */
export async function startAnimatic() {
  if (!animatic.startUrl) return;
  const boardId = animatic.boardId;
  try {
    const job = await api("POST", animatic.startUrl, {
      resolution: $("animatic-resolution").value,
      push_in: $("animatic-push-in").checked,
      burn_in: $("animatic-burn-in").checked,
    });
    if (boardId !== animatic.boardId) return;
    followAnimatic(job);
  } catch (err) {
    reportError(err);
  }
}

export async function cancelAnimatic() {
  const job = animatic.job;
  if (!job || job.state !== "running") return;
  try {
    followAnimatic(await api("POST", job.links.cancel));
  } catch (err) {
    reportError(err);
  }
}

function followAnimatic(job) {
  stopFollowing();
  animatic.job = job;
  renderAnimatic();
  if (job.state === "running") {
    animatic.timer = setTimeout(async () => {
      try {
        const now = await api("GET", job.links.self);
        if (animatic.job && animatic.job.id === job.id) followAnimatic(now);
      } catch (err) {
        reportError(err);
      }
    }, ANIMATIC_POLL_MS);
  } else if (job.state === "done") {
    announce("The animatic is written.");
    $("animatic-download").click(); // its download starts at once; the link stays for another copy
  }
}

function stopFollowing() {
  clearTimeout(animatic.timer);
  animatic.timer = null;
}

function renderAnimatic() {
  const job = animatic.job;
  const running = Boolean(job && job.state === "running");
  $("animatic-start").disabled = running;
  $("animatic-cancel").hidden = !running;
  $("animatic-progress").hidden = !running;
  const download = job && job.state === "done" ? job.links.download : null;
  $("animatic-download").hidden = !download;
  if (download) setLink($("animatic-download"), download, `storyboard-${animatic.boardId}.mp4`);
  if (!job) {
    $("animatic-status").textContent = "";
    return;
  }
  const total = Math.max(1, job.frames_total);
  $("animatic-progress").value = job.frames_done / total;
  $("animatic-status").textContent = {
    running: `Writing frame ${job.frames_done} of ${job.frames_total}…`,
    done: "Written.",
    canceled: "Canceled.",
    failed: job.error || "The animatic could not be written.",
  }[job.state] || job.state;
}

/** A zipped Storyboarder project chosen in the form: imported as a new board, then opened. */
export async function importStoryboarder(event, open) {
  const input = event.target;
  const file = input.files && input.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("project", file, file.name);
  try {
    const created = await api("POST", ENTRY.storyboarderImport, form);
    await open(created);
  } catch (err) {
    reportError(err);
  } finally {
    input.value = ""; // the same file chosen again imports again
  }
  const notice = $("export-pdf-notice");
  notice.textContent = (board && board.pdf_notice) || "";
  notice.hidden = !notice.textContent;
}

function setLink(anchor, url, fileName) {
  const safe = safeUrl(url);
  if (safe) anchor.href = safe;
  else anchor.removeAttribute("href");
  anchor.setAttribute("download", fileName);
}

export function panelFileName(position) {
  return `panel-${String(position).padStart(2, "0")}.png`;
}

/* The image answers with its stored name in Content-Disposition (frame-4-v1.png), and browsers
 * prefer that to the link's download attribute; a blob has no such header, so its name holds. */
export async function downloadAs(event, url, fileName) {
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
