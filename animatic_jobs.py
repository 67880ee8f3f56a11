"""Animatic exports as jobs: a 64-panel 1080p MP4 takes minutes on a CPU, longer than a
download should hang with nothing to show, so the studio writes it in a thread of its own.

    POST .../animatic            -> 202, the job: its state, frames done of total, its links
    GET  .../animatics/<job>     -> the job now (the page polls it for its progress bar)
    POST .../animatics/<job>/cancel -> stops it between two frames; its file is removed
    GET  .../animatics/<job>/animatic.mp4 -> the finished MP4

The job writes from a snapshot taken when it was asked for: the board as it was then and its
panels' files opened then (a redraw, a reorder or a new duration meanwhile changes nothing in
it). It holds one of the studio's export slots (STORYBOARD_EXPORT_CONCURRENCY) while it writes.
Its MP4 is a file in ``<data dir>/exports`` (PyAV rewrites it at the end to put its index
first, which needs a path), removed when the job is canceled or fails, when the board's next
animatic replaces it, when more than KEEP_FINISHED are kept, when the studio closes, and, for
files left by a studio that crashed, when the next one starts.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from animatic import AnimaticOptions, Canceled, write_animatic
from cut import Cut

log = logging.getLogger(__name__)

KEEP_FINISHED = 8  # finished MP4s kept for download (per studio, oldest removed first)


class JobState(str, enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass
class AnimaticJob:
    id: str
    board_id: str
    options: AnimaticOptions
    path: Path
    frames_total: int
    frames_done: int = 0
    state: JobState = JobState.RUNNING
    error: str | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class Busy(Exception):
    """Every export slot is taken."""


class AnimaticJobs:
    """The studio's animatic jobs: at most one per board (a new one replaces the last)."""

    def __init__(self, folder: Path, slots: threading.BoundedSemaphore):
        self.folder = folder
        self._slots = slots
        self._lock = threading.Lock()
        self._jobs: dict[str, AnimaticJob] = {}
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob("*.mp4"):  # a crashed studio's: no job will ever serve them
            leftover.unlink(missing_ok=True)

    def start(self, board: Mapping[str, Any], images, options: AnimaticOptions) -> AnimaticJob:
        """Start writing ``board``'s animatic from ``images`` (a PanelFiles: the job closes
        it). Raises Busy when no export slot is free."""
        if not self._slots.acquire(blocking=False):
            images.close()
            raise Busy()
        try:
            cut = Cut.from_board(board)
            job_id = secrets.token_hex(6)
            job = AnimaticJob(job_id, cut.board_id, options, self.folder / f"{job_id}.mp4", cut.frames)
            with self._lock:
                previous = [j for j in self._jobs.values() if j.board_id == job.board_id]
                self._jobs[job.id] = job
            for old in previous:
                self._drop(old)
            thread = threading.Thread(target=self._run, args=(job, cut, images), name=f"animatic-{job.id}",
                                      daemon=True)
            thread.start()
        except BaseException:
            self._slots.release()
            images.close()
            raise
        return job

    def _run(self, job: AnimaticJob, cut: Cut, images) -> None:
        try:
            write_animatic(cut, images, job.path, job.options,
                           progress=lambda done, _total: setattr(job, "frames_done", done),
                           canceled=job.cancel_requested.is_set)
            job.state = JobState.DONE
        except Canceled:
            job.state = JobState.CANCELED
        except Exception as error:  # noqa: BLE001 - the job says it failed; the details go to the log
            log.exception("animatic %s of board %s failed", job.id, job.board_id)
            job.state, job.error = JobState.FAILED, f"The animatic could not be written: {error}"
        finally:
            images.close()
            self._slots.release()
            if job.state is not JobState.DONE:
                job.path.unlink(missing_ok=True)
            job.finished.set()
            self._trim()

    def get(self, board_id: str, job_id: str) -> AnimaticJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.board_id == board_id else None

    def cancel(self, job: AnimaticJob) -> None:
        job.cancel_requested.set()

    def _drop(self, job: AnimaticJob) -> None:
        """Forget ``job``: a running one is canceled (its thread removes its file)."""
        with self._lock:
            self._jobs.pop(job.id, None)
        job.cancel_requested.set()
        if job.finished.is_set():
            job.path.unlink(missing_ok=True)

    def _trim(self) -> None:
        with self._lock:
            done = [job for job in self._jobs.values() if job.state is JobState.DONE]
        for job in done[:-KEEP_FINISHED]:  # dicts keep insertion order: the oldest first
            self._drop(job)

    def close(self) -> None:
        """Cancel every job, wait for them, remove their files (tests, embedding)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._drop(job)
        for job in jobs:
            job.finished.wait()
            job.path.unlink(missing_ok=True)
