"""What every backend shares: the face it shows the app (:class:`Backend`), its health, the
words for its errors, how a job ends (:class:`Outcome`), and how it loads and judges. The
embedded worker (worker.py), the Redis backend (redis_backend.py) and the generator host
they share (generator_host.py) build on this module; it imports none of them.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Callable

from config import Settings
from prompt_enhancer import shorten
from storage import Status

log = logging.getLogger(__name__)


class ModelState(StrEnum):
    """Where a worker's generator is (a StrEnum: equal to the words /api/health says)."""

    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    WARMING_UP = "warming_up"  # loaded and drawing; compiling its graphs between boards
    READY = "ready"
    ERROR = "error"  # the load failed; the next job tries again


@dataclass(frozen=True)
class BackendHealth:
    """What a backend says about itself; the HTTP layer turns it into /api/health."""

    alive: bool
    problem: str | None  # why work cannot go on right now (a full disk, Redis unreachable)
    model_state: ModelState
    model_error: str | None
    device: str | None
    workers: list = field(default_factory=list)  # Redis backend: one dict per worker process
    queue: str = "embedded"
    warm_up: WarmUp | None = None  # while a compiled model warms up


@dataclass(frozen=True)
class WarmUp:
    """How far a compiled model's warm-up has come: graphs compiled, of all, and the seconds
    left at the pace so far (None until the first graph is done)."""

    done: int
    of: int
    eta_s: int | None = None


class Backend(ABC):
    """What the app asks of a backend, whichever it is: the embedded :class:`worker.Worker`
    or :class:`redis_backend.RedisBackend`. Handlers store a job, then wake the backend;
    the backend draws it (or has it drawn) and publishes facts into the app's event hub."""

    @property
    @abstractmethod
    def accepting(self) -> str | None:
        """Why new work is refused right now (e.g. Redis unreachable), or None."""

    @abstractmethod
    def start(self, preload: bool = False) -> None:
        """Start taking jobs (``preload``: load the model now, not on the first job)."""

    @abstractmethod
    def stop(self, timeout: float = 10.0) -> None: ...

    @abstractmethod
    def wake(self) -> None:
        """A job was stored: take it now rather than at the next poll."""

    @abstractmethod
    def cancel(self, board_id: str) -> bool:
        """Cancel the board's queued jobs, and its running job at the next step; False when
        there was nothing left to cancel."""

    @abstractmethod
    def progress(self, board_id: str) -> dict | None:
        """The running board's last progress, for its JSON."""

    @abstractmethod
    def health(self) -> BackendHealth: ...


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as its worker reports it; :func:`record` writes it to the store."""

    status: Status  # done, canceled or failed
    error: str | None = None  # the board's words
    frame_error: str | None = None  # what its panels not drawn say

    @property
    def frames_to(self) -> Status:
        """Panels not drawn: failed with a failed job, else pending (drawn on a resume)."""
        return Status.FAILED if self.status == Status.FAILED else Status.PENDING


def record(store, hub, job: dict, outcome: Outcome) -> None:
    """End ``job`` in the store as ``outcome`` says, and tell its pages."""
    if store.finish_job(job, outcome.status, outcome.error, outcome.frames_to, outcome.frame_error) is not None:
        publish_status(store, hub, job["storyboard_id"])


def default_generator_loader(settings: Settings) -> Callable[[], object]:
    def load():
        from local_image_generator import StoryboardGenerator, quiet_library_logs

        quiet_library_logs(progress_bars=settings.model != "tiny")
        if settings.model == "tiny":
            import tiny_models

            tiny_models.build(settings.cache_dir)
        return StoryboardGenerator.load(settings)

    return load


def default_scorer_loader():
    from identity import FaceScorer

    return FaceScorer.load()


class WarmUpTracker:
    """A compiled generator's warm-up as a worker runs it: one graph at a time while it has
    nothing to draw (see StoryboardGenerator.plan_warm_up), and how far it has come, with the
    seconds left at the pace so far. Boards are drawn meanwhile, without compile where their
    graph is not compiled yet; one that arrives during a compile waits for that graph only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.done, self.seconds = 0, 0.0  # graphs compiled, and the time they took

    def progress(self, generator) -> WarmUp | None:
        """None when no graph waits (or the generator does not compile)."""
        left = getattr(generator, "pending_warm_ups", 0)
        if not left:
            return None
        eta = round(self.seconds / self.done * left) if self.done else None
        return WarmUp(self.done, self.done + left, eta)

    def plan(self, generator, report: Callable[[WarmUp | None], None]) -> None:
        """After the model loads: queue its graphs (StoryboardGenerator.plan_warm_up) and
        report the warm-up when there is one."""
        plan = getattr(generator, "plan_warm_up", None)
        if plan is not None and plan():
            report(self.progress(generator))

    def run_one(self, generator, report: Callable[[WarmUp | None], None]) -> bool:
        """With nothing to draw: compile the next waiting graph, reporting the progress before
        and after (None once nothing waits). Returns whether there was one."""
        if generator is None or not getattr(generator, "pending_warm_ups", 0):
            return False
        report(self.progress(generator))
        self.step(generator)
        report(self.progress(generator))
        return True

    def step(self, generator) -> bool:
        """Compile the generator's next waiting graph; False when none waits."""
        if not getattr(generator, "pending_warm_ups", 0):
            return False
        started = self.clock()
        try:
            generator.warm_up_next()
        except Exception:  # noqa: BLE001 - e.g. the kernels could not be saved; drawing goes on
            log.exception("warming up the compiled model failed")
        self.done += 1
        self.seconds += self.clock() - started
        return True


def make_judge(scorer, generator, threshold: float):
    """judge(references, image) -> the identity score of a panel against the references of
    the characters in it (identity.CastScore as a dict, each character's CLIP similarity
    added), each reference's descriptor computed once."""
    descriptors: dict[int, tuple] = {}  # id -> (the reference, kept alive so its id stays its own; descriptor)

    def judge(references, image) -> dict:
        for reference in references:
            if id(reference) not in descriptors:
                descriptors[id(reference)] = (reference, scorer.descriptor(reference))
        score = scorer.score_cast([descriptors[id(r)][1] for r in references], image, threshold).to_dict()
        similarity = getattr(generator, "clip_similarity", None)
        similarities = [similarity(r, image) if similarity else None for r in references]
        for character, value in zip(score["characters"], similarities):
            character["clip_similarity"] = value
        # The panel's: its least similar character (overall look, not identity).
        score["clip_similarity"] = None if None in similarities else min(similarities, default=None)
        return score

    return judge


# What a panel says when its board failed as a whole; the board's error has the details.
NOT_DRAWN = "Not drawn: the storyboard failed."


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return isinstance(error, sqlite3.OperationalError) and "full" in str(error).lower()


DISK_FULL_MESSAGE = "The disk is full: the studio cannot save panels. Free some space; finished panels are kept."


def user_message(error: Exception, data_path: Path | None = None) -> str:
    """Words for the page: the error's own message, never a traceback or the data folder's path."""
    if is_disk_full(error):
        return DISK_FULL_MESSAGE
    text = str(error).strip() or type(error).__name__
    if data_path is not None:
        text = text.replace(str(data_path.resolve()), "the data folder").replace(str(data_path), "the data folder")
    return shorten(text, 1000)


def publish_status(store, hub, board_id: str) -> None:
    """Tell the board's pages its status, as the store derives it (nothing for a deleted board)."""
    board = store.board_status(board_id)
    if board is not None:
        hub.publish(board_id, "status", {"status": board["status"], "error": board["error"]})


class StoreSink:
    """Facts into the studio: each goes to the store, then to the page as an event. The
    embedded worker draws into one; the Redis backend replays its workers' reports into one."""

    def __init__(self, store, hub, board_id: str, progress: dict):
        self.store, self.hub, self.board_id, self._progress = store, hub, board_id, progress

    def prompts(self, prompts) -> None:
        self.store.panel_prompts(self.board_id, {frame_id: (p.prompt, p.negative_prompt, p.dropped, p.traits_dropped)
                                                 for frame_id, p in prompts.items()})

    def panel_started(self, frame_id: int) -> None:
        self.store.panel_started(self.board_id, frame_id)

    def panel_saved(self, panel) -> None:
        self.store.save_take(self.board_id, panel.frame_id, panel.png, seed=panel.seed, mode=panel.mode,
                             ran=panel.ran, parent=panel.parent, identity=panel.identity, attempts=panel.attempts,
                             seconds=panel.seconds)
        self.hub.publish(self.board_id, "frame", {"frame_id": panel.frame_id})

    def panel_failed(self, frame_id: int, error: str) -> None:
        self.store.panel_failed(self.board_id, frame_id, error)
        self.hub.publish(self.board_id, "frame", {"frame_id": frame_id})

    def reference(self, character: int, png: bytes) -> None:
        self.store.save_reference(self.board_id, character, png, "generated")
        self.hub.publish(self.board_id, "reference", {"character": character, "kind": "generated"})

    def progress(self, progress: dict) -> None:
        self._progress[self.board_id] = progress
        self.hub.publish(self.board_id, "progress", progress)

    def preview(self, preview: dict) -> None:
        self.hub.publish(self.board_id, "preview", preview)  # never stored
