"""The one thread that owns the generator, and the event hub that tells browsers what it did.

Request handlers only validate, store and enqueue (jobs live in SQLite, so they survive a
restart); this worker takes them first come, first served, and is the only code that
calls the pipeline. Listeners read events from :class:`EventHub`; publishing costs the
worker one append and one notify, however many browsers listen.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Callable

from backend import (NOT_DRAWN, BackendHealth, StoreSink, default_generator_loader, default_scorer_loader,
                     WarmUp, WarmUpTracker, make_judge, publish_status, user_message)
from config import Settings
from storage import Status

log = logging.getLogger(__name__)


class EventHub:
    """A bounded log of events per storyboard, with ids a reconnecting browser resumes from."""

    def __init__(self, keep: int = 2000):
        self.boot = secrets.token_hex(3)  # ids from before a restart are recognised as stale
        self._keep = keep
        self._cond = threading.Condition()
        self._seq = 0
        self._logs: dict[str, list[tuple[int, str, dict]]] = {}

    def publish(self, board_id: str, kind: str, data: dict) -> None:
        with self._cond:
            self._seq += 1
            log_ = self._logs.setdefault(board_id, [])
            log_.append((self._seq, kind, data))
            del log_[: -self._keep]
            self._cond.notify_all()

    def event_id(self, seq: int) -> str:
        return f"{self.boot}-{seq}"

    def parse_id(self, last_event_id: str | None) -> int:
        boot, _, seq = (last_event_id or "").partition("-")
        return int(seq) if boot == self.boot and seq.isdigit() else 0

    def wait(self, board_id: str, after: int, timeout: float) -> list[tuple[int, str, dict]]:
        """Events of ``board_id`` newer than ``after``; waits up to ``timeout`` for one.

        Every publish wakes every listener; one whose board has nothing new waits on, so
        listeners of quiet boards cost nothing per event of the board being drawn.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                events = [e for e in self._logs.get(board_id, ()) if e[0] > after]
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                self._cond.wait(remaining)

    def forget(self, board_id: str) -> None:
        with self._cond:
            self._logs.pop(board_id, None)


class Worker:
    """The embedded backend: one thread in the studio's process owns the generator."""

    accepting = None  # never refuses work for its own reasons (a full disk answers 507 itself)

    def __init__(
        self,
        store,
        settings: Settings,
        load_generator: Callable[[], object],
        hub: EventHub,
        load_scorer: Callable[[], object] | None = None,
    ):
        self.store = store
        self.settings = settings
        self.hub = hub
        self._load_generator = load_generator
        self._load_scorer = load_scorer
        self.generator = None
        self._scorer = None
        self.model_state = "not_loaded"  # not_loaded | loading | warming_up (drawing too) | ready | error
        self.model_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: dict | None = None  # the running job
        self._cancel = threading.Event()
        self._guard = threading.Lock()  # _current and _cancel change together
        self._progress: dict[str, dict] = {}
        self.warm_up_progress: WarmUp | None = None  # while a compiled model warms up
        self._warm_up = WarmUpTracker()
        # Set while the store refuses writes (a full disk): health and the page say so.
        self.problem: str | None = None
        self._unrecorded: tuple | None = None  # a job's end the store could not record yet

    # -- control (any thread) --

    def start(self, preload: bool = False) -> None:
        self._preload = preload
        self._thread = threading.Thread(target=self._loop, name="storyboard-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._cancel.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def progress(self, board_id: str) -> dict | None:
        return self._progress.get(board_id)

    def health(self) -> BackendHealth:
        generator = self.generator
        return BackendHealth(alive=self.alive, problem=self.problem, model_state=self.model_state,
                             model_error=self.model_error,
                             device=generator.describe()["device"] if generator is not None else None,
                             warm_up=self.warm_up_progress)

    def cancel(self, board_id: str) -> bool:
        """Cancel the board's queued jobs, and its running job at the next step.

        The promise: a cancel that lands before the worker starts drawing draws nothing;
        one that lands while it draws stops it within one step, keeping finished panels.
        Returns False when there was nothing left to cancel (the board had finished).
        """
        queued, running = self.store.request_cancel(board_id)
        with self._guard:
            current = self._current
            if running and current is not None and current["storyboard_id"] == board_id:
                self._cancel.set()
        if queued and not running:
            self._publish_status(board_id)
        return bool(queued or running)

    # -- the loop (worker thread only) --

    def _loop(self) -> None:
        if self._preload:
            try:
                self._ensure_generator()
            except Exception:  # noqa: BLE001 - health shows the error; the next job retries
                pass
        while not self._stop.is_set():
            try:
                job = self._next()
            except Exception as error:  # noqa: BLE001 - e.g. a full disk: wait, then try again
                self._store_failed(error)
                job = None
            if job is None:
                if self._warm_up.run_one(self.generator, self._show_warm_up):
                    continue
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run(job)

    def _next(self) -> dict | None:
        """Record what could not be recorded before, then take the next job."""
        if self._unrecorded is not None:
            self._finish(*self._unrecorded)
            self._unrecorded = None
        job = self.store.next_job()
        self.problem = None
        if job is not None:
            with self._guard:
                self._current, self._cancel = job, threading.Event()
            # A cancel that flagged the job after it was taken, but before it was
            # published as current, could not reach the event: its flag is in the store.
            if self.store.cancel_requested(job["id"]):
                self._cancel.set()
        return job

    def _store_failed(self, error: Exception) -> None:
        if self.problem is None:
            log.error("the studio cannot write its database or files: %s", error)
        self.problem = user_message(error, self.settings.data_path)

    def _ensure_generator(self):
        if self.generator is not None:
            return self.generator
        self.model_state, self.model_error = "loading", None
        try:
            generator = self._load_generator()
        except Exception as error:  # noqa: BLE001 - reported to the user, retried on the next job
            log.exception("model failed to load")
            self.model_state, self.model_error = "error", str(error)
            raise
        self.generator, self.model_state = generator, "ready"
        self._warm_up.plan(generator, self._show_warm_up)
        return self.generator

    def _show_warm_up(self, progress: WarmUp | None) -> None:
        """Health's model state and warm-up progress (None: nothing left to compile)."""
        self.warm_up_progress = progress
        self.model_state = "ready" if progress is None else "warming_up"

    def _scorer_or_none(self):
        if self._scorer is None and self._load_scorer is not None and self.settings.identity_scoring:
            try:
                self._scorer = self._load_scorer()
            except Exception:  # noqa: BLE001 - scoring is optional; drawing goes on without it
                log.exception("face scorer unavailable; panels will not be scored")
                self._load_scorer = None
        return self._scorer

    def _run(self, job: dict) -> None:
        """Draw ``job``, which the loop has made ``_current`` (with a fresh cancel event)."""
        from local_image_generator import GenerationCancelled

        board_id = job["storyboard_id"]
        self.hub.publish(board_id, "status", {"status": Status.RUNNING, "error": None})
        try:
            if self._cancel.is_set():  # canceled while being taken: no model load, no drawing
                raise GenerationCancelled()
            generator = self._ensure_generator()
            if self._cancel.is_set():  # canceled while the model loaded
                raise GenerationCancelled()
            self._draw(job, generator)
        except Exception as error:  # noqa: BLE001 - one bad job must not stop the worker
            if isinstance(error, GenerationCancelled):
                outcome = (job, Status.CANCELED, None, Status.PENDING, None)
            else:
                log.exception("job %s failed", job["id"])
                outcome = (job, Status.FAILED, user_message(error, self.settings.data_path), Status.FAILED,
                           NOT_DRAWN)
        else:
            outcome = (job, Status.DONE, None, Status.PENDING, None)
        finally:
            with self._guard:
                self._current = None
            self._progress.pop(board_id, None)
        try:
            self._finish(*outcome)
        except Exception as error:  # noqa: BLE001 - e.g. a full disk: recorded once the store takes writes
            self._unrecorded = outcome
            self._store_failed(error)

    def _finish(self, job: dict, status: Status, error: str | None, frames_to: Status,
                frame_error: str | None) -> None:
        if self.store.finish_job(job, status, error, frames_to, frame_error) is not None:
            self._publish_status(job["storyboard_id"])

    def _publish_status(self, board_id: str) -> None:
        publish_status(self.store, self.hub, board_id)

    def _draw(self, job: dict, generator) -> None:
        from drawing import draw, spec_for

        board = self.store.board(job["storyboard_id"])
        if board is None:
            return
        spec = spec_for(job, board, self.store.reference_pngs(board))
        judge = self._judge(generator) if spec.identity_lock else None
        draw(generator, spec, StoreSink(self.store, self.hub, board["id"], self._progress), self._cancel, judge)

    def _judge(self, generator):
        scorer = self._scorer_or_none()
        return make_judge(scorer, generator, self.settings.identity_threshold) if scorer is not None else None


# --- A Redis worker process -----------------------------------------------------------------


def parse_worker_args(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(
        description="A storyboard worker: takes jobs from Redis (the studio runs with the same --queue) and "
                    "draws them on one device. Run one per GPU.")
    parser.add_argument("--queue", dest="queue_url", required=True, metavar="redis://HOST:6379/0",
                        help="the studio's Redis (password: STORYBOARD_QUEUE_PASSWORD)")
    parser.add_argument("--device", help="auto, cpu, mps, cuda or cuda:N (this process sees only GPU N)")
    parser.add_argument("--model", choices=("sdxl", "tiny"))
    parser.add_argument("--precision", choices=("auto", "fp16", "bf16", "fp32"))
    parser.add_argument("--data-dir", dest="data_dir", help="where the tiny models are built (model tiny)")
    parser.add_argument("--cpu-threads", dest="cpu_threads", type=int, help="torch CPU threads (0 = auto)")
    parser.add_argument("--name", help="this worker's name in /api/health (default: host and device)")
    return {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    import os
    import socket

    from config import SettingsError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_worker_args(argv)
    name = args.pop("name", None)
    device = args.get("device", "auto")
    if device.startswith("cuda:"):
        # One process per GPU: this one sees only its own, as cuda.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        args["device"] = "cuda"
    try:
        settings = load_settings(os.environ, args)
    except SettingsError as error:
        log.error("%s", error)
        return 2
    from redis_backend import WorkerContext, connect, make_worker, safe_url

    name = name or f"{socket.gethostname()}-{device}-{os.getpid()}"
    context = WorkerContext(connect(settings.queue_url, settings.queue_password), settings,
                            default_generator_loader(settings),
                            default_scorer_loader if settings.identity_scoring else None, name, device)
    log.info("worker %s on %s takes jobs from %s", name, device, safe_url(settings.queue_url))
    make_worker(context).work(logging_level="WARNING")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
