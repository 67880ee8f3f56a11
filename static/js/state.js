/* The page's state, one object that every feature module reads and writes, and what a
 * board's JSON says about itself.
 */

export const state = {
  presets: null,
  health: null,
  planner: null, // GET /api/planner: {llm, model, server}
  plan: null, // {source, notices, premise, model, rows: [{key, caption, scene, shot, dialogue, cast, layout}]}
  planning: false,
  screenplay: null, // POST /api/screenplays: {title, scenes}, each scene a plan with its cast
  planRowKey: 1, // a plan row's key: stable while rows move, so ids and focus follow the row
  board: null,
  boardId: null,
  boardUrl: null, // where the open board is read from: its links.self
  events: null,
  eventsRetry: null,
  healthTimer: null,
  historyTimer: null,
  castKey: 1, // a cast row's key: stable while rows come and go, so a plan row's cast follows its characters
  facePreviews: new Map(), // cast row key -> object URL of its chosen face
  previews: new Map(), // frame id -> its newest live preview event {step, steps, image}, until it is drawn
  editing: null, // {frameId, caption, scene, seed, cast}
  layoutShown: new Set(), // ids of the panels whose layout is shown over their picture
  dragFrameId: null,
  renderPending: false,
  submitting: false,
  errorField: null, // the form field the visible error message is about
  // One drawing job's progress: the bar never goes back within a job.
  job: { floor: 0, sawReference: false },
  createdNotices: {}, // board id -> notices from the 202 answer, for a board JSON without them
  lastEventId: "", // the newest event id heard from the server, on any board's stream
};

const FINAL_STATUSES = ["done", "failed", "canceled", "interrupted"];

export function isFinal(status) {
  return FINAL_STATUSES.includes(status);
}

export function boardBusy(board) {
  if (!board) return false;
  if (board.status === "queued" || board.status === "running") return true;
  return (board.frames || []).some((f) => f.status === "queued" || f.status === "running");
}

export function sortedFrames(board) {
  return [...((board && board.frames) || [])].sort((a, b) => (a.index || 0) - (b.index || 0));
}

/** A board's cast, also for a board JSON from before the cast (one character). */
export function boardCharacters(board) {
  if (!board) return [];
  if (Array.isArray(board.characters) && board.characters.length) return board.characters;
  return [{ name: "", traits: board.character || "", reference: board.reference || null }];
}

/** Whether a board's characters have names (a cast), or it is the one unnamed character. */
export function boardHasNames(board) {
  return boardCharacters(board).some((c) => c.name);
}

/** A fresh job's bar starts from zero; within a job it only moves forward. */
export function newJob() {
  state.job = { floor: 0, sawReference: false };
}

/* Jobs run one after another, and between two jobs of a board the worker reports a status
 * other than "running" (done, failed, ..., or queued behind the next job). A new stream
 * replays the board's recent events, so a "running" event alone is no boundary: it may be
 * the start of the job whose progress the page already shows. */
export function noteJobBoundary(board) {
  if (board && board.status !== "running") newJob();
}
