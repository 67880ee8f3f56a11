/* Downloads: the board's PDF and ZIP links, and a panel's PNG under its position's name.
 */

import { ApiError, defaultErrorMessage, NETWORK_ERROR } from "./api.js";
import { $, el, safeUrl } from "./dom.js";
import { reportError } from "./errors.js";

/** The board's PDF and ZIP, from the links in its answer; hidden without a board. Beside them,
 * the server's word on text its fonts cannot draw, which the PDF leaves out. */
export function renderExports(board) {
  const links = board && board.export;
  $("exports").hidden = !links;
  if (links) {
    setLink($("export-pdf"), links.pdf, `storyboard-${board.id}.pdf`);
    setLink($("export-zip"), links.zip, `storyboard-${board.id}.zip`);
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
