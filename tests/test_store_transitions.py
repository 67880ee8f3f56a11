"""A board's life in the store, event by event: (state, event) -> state, on a real Store.

A state is reached by the events that lead to it from a new board of two panels, and
described by the board's status, its panels' and its jobs' (in job order). Refused events
(Conflict, QueueFull) leave all three as they were.
"""

import pytest

from board_params import BoardParams, Character
from config import SpeedPreset
from storage import INTERRUPTED_MESSAGE, SET_ASIDE_MESSAGE, Conflict, QueueFull, Status, Store

PARAMS = BoardParams(characters=(Character("Mara", "red hair"),), style="ink",
                     preset=SpeedPreset("fast", "Fast", 2, 1.0, 0.5), aspect="1:1", width=64, height=64, seed=7,
                     identity_lock=True, negative_prompt="", model="tiny")
PANELS = [{"id": n, "caption": f"Panel {n}.", "scene": None, "shot": "wide shot", "seed": 6 + n, "cast": ["Mara"]}
          for n in (1, 2)]

# Each state: the board's status in it, and the events that reach it from "new" (a board just created).
STATES = {
    "new": ("queued", []),
    "drawing": ("running", ["take"]),
    "drawing, panel 1 drawn": ("running", ["take", "save 1"]),
    "drawing, cancel asked": ("running", ["take", "save 1", "cancel"]),
    "done": ("done", ["take", "save 1", "save 2", "finish done"]),
    "failed": ("failed", ["take", "save 1", "finish failed"]),
    "canceled while queued": ("canceled", ["cancel"]),
    "canceled": ("canceled", ["take", "save 1", "cancel", "finish canceled"]),
    "interrupted": ("interrupted", ["take", "save 1", "restart"]),
    "resumed": ("queued", ["take", "save 1", "restart", "resume"]),
    "resumed and drawing": ("running", ["take", "save 1", "restart", "resume", "take"]),
    "resumed, panel 2 drawn": ("running", ["take", "save 1", "restart", "resume", "take", "save 2"]),
    "set aside": ("failed", ["take", "restart", "resume", "take", "restart"]),
    "redraw queued": ("queued", ["take", "save 1", "save 2", "finish done", "redraw 1"]),
    "redrawn": ("done", ["take", "save 1", "save 2", "finish done", "redraw 1", "take", "save 1", "finish done"]),
    "redraw failed": ("failed", ["take", "save 1", "save 2", "finish done", "redraw 1", "take", "finish failed"]),
    "refine queued": ("queued", ["take", "save 1", "save 2", "finish done", "refine board"]),
}

# (state, event) -> (board, panels, jobs)
TRANSITIONS = [
    ("new", "take", ("running", ("queued", "queued"), ("running",))),
    ("new", "cancel", ("canceled", ("pending", "pending"), ("canceled",))),
    ("new", "restart", ("queued", ("queued", "queued"), ("queued",))),
    ("new", "delete", None),
    ("drawing", "start 1", ("running", ("running", "queued"), ("running",))),
    ("drawing", "save 1", ("running", ("done", "queued"), ("running",))),
    ("drawing", "fail 1", ("running", ("failed", "queued"), ("running",))),
    ("drawing", "release", ("queued", ("queued", "queued"), ("queued",))),
    ("drawing", "restart", ("interrupted", ("pending", "pending"), ("interrupted",))),
    ("drawing", "restart elsewhere", ("running", ("queued", "queued"), ("running",))),  # Redis workers draw on
    ("drawing", "cancel", ("running", ("queued", "queued"), ("running",))),  # flagged for the worker
    ("drawing", "finish failed", ("failed", ("failed", "failed"), ("failed",))),
    ("drawing, panel 1 drawn", "save 2", ("running", ("done", "done"), ("running",))),
    ("drawing, panel 1 drawn", "finish failed", ("failed", ("done", "failed"), ("failed",))),
    ("drawing, panel 1 drawn", "finish canceled", ("canceled", ("done", "pending"), ("canceled",))),
    ("drawing, panel 1 drawn", "restart", ("interrupted", ("done", "pending"), ("interrupted",))),
    ("drawing, panel 1 drawn", "redraw 1", ("running", ("queued", "queued"), ("running", "queued"))),
    ("drawing, panel 1 drawn", "delete", None),
    ("drawing, cancel asked", "finish canceled", ("canceled", ("done", "pending"), ("canceled",))),
    ("done", "redraw 2", ("queued", ("done", "queued"), ("done", "queued"))),
    ("done", "cancel", ("done", ("done", "done"), ("done",))),
    ("done", "delete", None),
    ("failed", "resume", ("queued", ("done", "queued"), ("failed", "queued"))),
    ("failed", "redraw 2", ("queued", ("done", "queued"), ("failed", "queued"))),
    ("canceled while queued", "resume", ("queued", ("queued", "queued"), ("canceled", "queued"))),
    ("canceled", "resume", ("queued", ("done", "queued"), ("canceled", "queued"))),
    ("interrupted", "resume", ("queued", ("done", "queued"), ("queued",))),  # the same job, its starts kept
    ("interrupted", "redraw 2", ("queued", ("done", "queued"), ("interrupted", "queued"))),
    ("resumed", "take", ("running", ("done", "queued"), ("running",))),
    ("resumed and drawing", "save 2", ("running", ("done", "done"), ("running",))),
    ("resumed, panel 2 drawn", "finish done", ("done", ("done", "done"), ("done",))),
    ("set aside", "resume", ("queued", ("queued", "queued"), ("failed", "queued"))),
    ("redraw queued", "take", ("running", ("queued", "done"), ("done", "running"))),
    ("redraw queued", "cancel", ("done", ("done", "done"), ("done", "canceled"))),  # the panel keeps its image
    ("redraw queued", "choose 1 1", ("queued", ("queued", "done"), ("done", "queued"))),  # the redraw still comes
    ("redrawn", "choose 1 1", ("done", ("done", "done"), ("done", "done"))),
    ("redrawn", "drop 1 1", ("done", ("done", "done"), ("done", "done"))),
    ("redraw failed", "choose 1 1", ("done", ("done", "done"), ("done", "failed"))),  # its old take is the panel
    ("done", "refine 1", ("queued", ("queued", "done"), ("done", "queued"))),
    ("done", "refine board", ("queued", ("queued", "queued"), ("done", "queued"))),
    ("redraw failed", "refine board", ("queued", ("queued", "queued"), ("done", "failed", "queued"))),
    ("failed", "refine board", ("queued", ("queued", "failed"), ("failed", "queued"))),  # only drawn panels
    ("refine queued", "take", ("running", ("queued", "queued"), ("done", "running"))),
    ("refine queued", "cancel", ("done", ("done", "done"), ("done", "canceled"))),  # the panels keep their takes
]

# (state, event) refused, with what it raises; nothing changes.
REFUSED = [
    ("new", "resume", Conflict, "already queued"),
    ("drawing", "resume", Conflict, "already running"),
    ("done", "resume", Conflict, "Every panel is already drawn"),
    ("new", "redraw 1", Conflict, "already being drawn"),
    ("drawing", "redraw 2", Conflict, "already being drawn"),
    ("done", "redraw 3", Conflict, "already being drawn"),  # no such panel
    ("failed", "resume full", QueueFull, "already waiting"),
    ("done", "redraw 1 full", QueueFull, "already waiting"),
    ("redrawn", "drop 1 2", Conflict, "shows this take"),
    ("canceled while queued", "refine board", Conflict, "Nothing is drawn"),
    ("canceled while queued", "refine 1", Conflict, "Nothing is drawn"),
    ("drawing", "refine board", Conflict, "already running"),
    ("redraw queued", "refine 1", Conflict, "already being drawn"),
    ("done", "refine 1 full", QueueFull, "already waiting"),
]


class Studio:
    """Plays events on one board as the app and its workers do."""

    def __init__(self, store: Store):
        self.store = store
        self.board_id = store.create_board(title="T", story="Panel 1.\nPanel 2.", params=PARAMS, panels=PANELS,
                                           references={})
        self.job: dict | None = None  # the job last taken

    def play(self, event: str) -> None:
        verb, _, rest = event.partition(" ")
        full = rest.endswith("full")
        limit = self.store.queue_length() if full else None  # the limit is what already waits
        frame = int(rest.split()[0]) if rest[:1].isdigit() else None
        store, board_id = self.store, self.board_id
        if verb == "take":
            self.job = store.next_job()
        elif verb == "start":
            store.panel_started(board_id, frame)
        elif verb == "save":
            store.save_take(board_id, frame, b"\x89PNG panel", seed=1, mode="fast", seconds=0.1)
        elif verb == "refine":  # refine FRAME, or refine board
            store.refine(board_id, frame, "quality", 0.5, queue_limit=limit)
        elif verb == "choose":  # choose FRAME TAKE
            assert store.choose_take(board_id, frame, int(rest.split()[1]))
        elif verb == "drop":  # drop FRAME TAKE
            assert store.delete_take(board_id, frame, int(rest.split()[1]))
        elif verb == "fail":
            store.panel_failed(board_id, frame, "out of memory")
        elif verb == "finish":  # what the workers report: a failure marks the panels not drawn
            status = Status(rest)
            failed = status == Status.FAILED
            store.finish_job(self.job, status, "broken" if failed else None,
                             Status.FAILED if failed else Status.PENDING, "Not drawn." if failed else None)
        elif verb == "cancel":
            store.request_cancel(board_id)
        elif verb == "restart":
            store.recover(interrupt_running=rest != "elsewhere")
        elif verb == "release":
            store.release_job(self.job["id"])
        elif verb == "resume":
            store.resume(board_id, queue_limit=limit)
        elif verb == "redraw":
            store.redraw(board_id, frame, caption=f"Panel {frame} again.", seed=99, queue_limit=limit)
        elif verb == "delete":
            store.delete_board(board_id)
        else:
            raise AssertionError(f"unknown event {event!r}")

    def state(self) -> tuple | None:
        board = self.store.board(self.board_id)
        if board is None:
            return None
        return (board["status"], tuple(f["status"] for f in board["frames"]),
                tuple(job["status"] for job in self.store.jobs(self.board_id)))


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path)
    yield store
    store.close()


def studio_in(store: Store, state: str) -> Studio:
    status, events = STATES[state]
    studio = Studio(store)
    for event in events:
        studio.play(event)
    assert studio.state()[0] == status, f"{state!r} is not reached by {events}"
    return studio


@pytest.mark.parametrize("state,event,after", TRANSITIONS, ids=[f"{s}-{e}" for s, e, _ in TRANSITIONS])
def test_transition(store, state, event, after):
    studio = studio_in(store, state)
    studio.play(event)
    assert studio.state() == after


@pytest.mark.parametrize("state,event,error,words", REFUSED, ids=[f"{s}-{e}" for s, e, _, _ in REFUSED])
def test_refused_transition_changes_nothing(store, state, event, error, words):
    studio = studio_in(store, state)
    before = studio.state()
    with pytest.raises(error, match=words):
        studio.play(event)
    assert studio.state() == before


# --- What the table's states do not show -------------------------------------------------------------


@pytest.mark.parametrize("state,error", [("interrupted", INTERRUPTED_MESSAGE), ("set aside", SET_ASIDE_MESSAGE),
                                         ("failed", "broken"), ("resumed", None)])
def test_a_board_says_why_it_stopped(store, state, error):
    assert store.board_status(studio_in(store, state).board_id)["error"] == error


def test_a_resumed_interrupted_job_keeps_its_starts(store):
    studio = studio_in(store, "resumed and drawing")
    assert (studio.job["id"], studio.job["starts"]) == (1, 2)


def test_cancel_counts_the_queued_jobs_it_ended(store):
    assert store.request_cancel(studio_in(store, "new").board_id) == (1, 0)


def test_cancel_flags_the_running_job_for_its_worker(store):
    studio = studio_in(store, "drawing")
    assert store.request_cancel(studio.board_id) == (0, 1)
    assert store.cancel_requested(studio.job["id"]) and store.cancel_requested_jobs() == [studio.job["id"]]


def test_nothing_to_take_is_none(store):
    studio_in(store, "done")
    assert store.next_job() is None


def test_a_job_finished_after_its_board_was_deleted_changes_nothing(store):
    studio = studio_in(store, "drawing")
    studio.play("delete")
    assert store.finish_job(studio.job, Status.DONE) is None and store.jobs(studio.board_id) == []


def test_a_deleted_board_leaves_no_folder(store):
    studio = studio_in(store, "done")
    studio.play("delete")
    assert not (store.boards_dir / studio.board_id).exists()


def test_a_new_board_past_the_queue_limit_is_not_stored(store):
    studio_in(store, "new")
    with pytest.raises(QueueFull):
        store.create_board(title="T", story="S", params=PARAMS, panels=PANELS, references={}, queue_limit=1)
    assert len(store.boards()) == 1 and len(list(store.boards_dir.iterdir())) == 1


def test_a_redraw_takes_the_new_caption_and_seed(store):
    studio = studio_in(store, "redraw queued")
    frame = store.board(studio.board_id)["frames"][0]
    assert (frame["caption"], frame["seed"], frame["image_file"]) == ("Panel 1 again.", 99, "frame-1-v1.png")


# --- Takes -------------------------------------------------------------------------------------------


def takes(store: Store, board_id: str, frame: int = 1) -> tuple[int, list[int]]:
    """The take the panel shows, and the ids of all it keeps."""
    shown = store.board(board_id)["frames"][frame - 1]
    return shown["take"], [take["id"] for take in shown["takes"]]


def test_a_redraw_adds_a_take_and_shows_it(store):
    studio = studio_in(store, "redrawn")
    assert takes(store, studio.board_id) == (2, [1, 2])
    assert sorted(p.name for p in (store.boards_dir / studio.board_id).iterdir()) == [
        "frame-1-v1.png", "frame-1-v2.png", "frame-2-v1.png"]


def test_choosing_a_take_shows_its_image_seed_and_a_new_url_version(store):
    studio = studio_in(store, "redrawn")
    store.save_take(studio.board_id, 1, b"\x89PNG third", seed=5, mode="quality", ran={"steps": 9})
    before = store.board(studio.board_id)["frames"][0]
    assert store.choose_take(studio.board_id, 1, 1)
    frame = store.board(studio.board_id)["frames"][0]
    assert (frame["take"], frame["image_file"], frame["seed"]) == (1, "frame-1-v1.png", 1)
    assert frame["version"] == before["version"] + 1
    assert before["takes"][2] | {"created_at": None} == {
        "id": 3, "parent": None, "seed": 5, "mode": "quality", "settings": {"steps": 9}, "image_file": "frame-1-v3.png",
        "identity": None, "seconds": None, "created_at": None, "layout": None}


def test_an_unknown_take_is_neither_chosen_nor_deleted(store):
    studio = studio_in(store, "redrawn")
    assert not store.choose_take(studio.board_id, 1, 7) and not store.delete_take(studio.board_id, 1, 7)
    assert takes(store, studio.board_id) == (2, [1, 2])


def test_deleting_a_take_removes_its_file(store):
    studio = studio_in(store, "redrawn")
    studio.play("drop 1 1")
    assert takes(store, studio.board_id) == (2, [2])
    assert not (store.boards_dir / studio.board_id / "frame-1-v1.png").exists()


def test_past_the_bound_the_oldest_takes_go_with_their_files(tmp_path):
    store = Store(tmp_path, takes_per_panel=2)
    studio = studio_in(store, "redrawn")
    store.choose_take(studio.board_id, 1, 1)
    store.save_take(studio.board_id, 1, b"\x89PNG third", seed=5, mode="fast")  # shown: the others are unchosen
    assert takes(store, studio.board_id) == (3, [2, 3])
    assert not (store.boards_dir / studio.board_id / "frame-1-v1.png").exists()
    store.close()


def test_a_refine_job_starts_from_each_panel_s_chosen_take(store):
    studio = studio_in(store, "redrawn")  # panel 1 has takes 1 and 2
    for event in ("choose 1 1", "refine board"):
        studio.play(event)
    job = store.next_job()
    assert (job["kind"], job["frame_id"], job["preset"], job["strength"]) == ("refine", None, "quality", 0.5)
    assert store.take_pngs(store.board(studio.board_id), job) == {1: (1, b"\x89PNG panel"), 2: (1, b"\x89PNG panel")}


def test_only_a_refine_job_has_takes_to_start_from(store):
    studio = studio_in(store, "redraw queued")
    assert store.take_pngs(store.board(studio.board_id), store.next_job()) == {}
