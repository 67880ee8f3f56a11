"""The embedded backend: the one thread in the studio's process that owns the generator,
and ``python worker.py``, a Redis worker process (see redis_worker.py).

Request handlers only validate, store and enqueue (jobs live in SQLite, so they survive a
restart); this worker takes them first come, first served, and is the only code that
calls the pipeline. What it draws it publishes, as facts, into the app's event hub.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from backend import Backend, BackendHealth, Outcome, StoreSink, default_generator_loader, default_scorer_loader, \
    publish_status, record, user_message
from config import Settings
from events import EventHub
from generator_host import GeneratorHost
from storage import Status

log = logging.getLogger(__name__)


class Worker(Backend):
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
        self.host = GeneratorHost(settings, load_generator, load_scorer)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: dict | None = None  # the running job
        self._cancel = threading.Event()
        self._guard = threading.Lock()  # _current and _cancel change together
        self._progress: dict[str, dict] = {}
        # Set while the store refuses writes (a full disk): health and the page say so.
        self.problem: str | None = None
        self._unrecorded: tuple[dict, Outcome] | None = None  # a job's end the store could not record yet

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
        host = self.host
        generator = host.generator
        return BackendHealth(alive=self.alive, problem=self.problem, model_state=host.state, model_error=host.error,
                             device=generator.describe()["device"] if generator is not None else None,
                             warm_up=host.warm_up)

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
            publish_status(self.store, self.hub, board_id)
        return bool(queued or running)

    # -- the loop (worker thread only) --

    def _loop(self) -> None:
        if self._preload:
            try:
                self.host.ensure()
            except Exception:  # noqa: BLE001 - health shows the error; the next job retries
                pass
        while not self._stop.is_set():
            try:
                job = self._next()
            except Exception as error:  # noqa: BLE001 - e.g. a full disk: wait, then try again
                self._store_failed(error)
                job = None
            if job is None:
                if self.host.warm_one():
                    continue
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run(job)

    def _next(self) -> dict | None:
        """Record what could not be recorded before, then take the next job."""
        if self._unrecorded is not None:
            record(self.store, self.hub, *self._unrecorded)
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

    def _run(self, job: dict) -> None:
        """Draw ``job``, which the loop has made ``_current`` (with a fresh cancel event)."""
        board_id = job["storyboard_id"]
        self.hub.publish(board_id, "status", {"status": Status.RUNNING, "error": None})
        try:
            outcome = self.host.run(job["id"], lambda: self._spec(job), StoreSink(self.store, self.hub, board_id,
                                                                                   self._progress), self._cancel)
        finally:
            with self._guard:
                self._current = None
            self._progress.pop(board_id, None)
        try:
            record(self.store, self.hub, job, outcome)
        except Exception as error:  # noqa: BLE001 - e.g. a full disk: recorded once the store takes writes
            self._unrecorded = (job, outcome)
            self._store_failed(error)

    def _spec(self, job: dict):
        """The job as the drawing reads it (None when its board was deleted meanwhile)."""
        from drawing import spec_for

        board = self.store.board(job["storyboard_id"])
        if board is None:
            return None
        return spec_for(job, board, self.store.reference_pngs(board), self.store.take_pngs(board, job),
                       self.store.sketch_pngs(board))


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
    from redis.exceptions import RedisError

    from redis_protocol import connect, redis_problem, safe_url
    from redis_worker import StudioWorker

    redis = connect(settings.queue_url, settings.queue_password)
    try:
        redis.ping()
    except RedisError as error:
        log.error("%s", redis_problem(settings.queue_url, error))
        return 1
    name = name or f"{socket.gethostname()}-{device}-{os.getpid()}"
    worker = StudioWorker(redis, settings, default_generator_loader(settings), default_scorer_loader, name, device)
    log.info("worker %s on %s takes jobs from %s", name, device, safe_url(settings.queue_url))
    worker.work(logging_level="WARNING")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
