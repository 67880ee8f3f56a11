/* The studio's API: one place for every call (JSON or FormData in, parsed JSON out, ApiError
 * on failure), and the only module that names a URL. Past the entry points every URL comes
 * from an answer (a board's and a panel's `links`, `image_url`, `export`), so the server alone
 * knows their shapes.
 */

/** Where the page starts; everything else is a link in what these answer. */
export const ENTRY = {
  health: "/api/health",
  presets: "/api/presets",
  planner: "/api/planner",
  storyboards: "/api/storyboards",
  plans: "/api/plans",
  screenplays: "/api/screenplays",
  storyboarderImport: "/api/storyboards/import",
};

export const NETWORK_ERROR = "Cannot reach the studio server";
export const RETRY_MS = 5000; // a call the page cannot do without (health, presets) is tried again

export class ApiError extends Error {
  constructor(message, field, status) {
    super(message);
    this.field = field || null;
    this.status = status || 0;
  }
}

export function defaultErrorMessage(status) {
  if (status === 404) return "That storyboard no longer exists.";
  if (status === 413) return "The reference image is too large.";
  if (status === 429) return "The studio is busy — too many storyboards are queued. Try again shortly.";
  if (status === 507) return "The disk is full: nothing was stored. Free some space and try again.";
  if (status >= 500) return `The studio server hit an error (HTTP ${status}).`;
  return `The request failed (HTTP ${status}).`;
}

/** One place for every API call: JSON or FormData in, parsed JSON out, ApiError on failure. */
export async function api(method, url, body) {
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

/** A board known by its id alone (the page's address, #board=id, has no answer to read a link
 * from): the one item of the storyboards collection the page names itself. */
export function boardUrl(id) {
  return `${ENTRY.storyboards}/${encodeURIComponent(id)}`;
}
