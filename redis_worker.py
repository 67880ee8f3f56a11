"""Scale-out on Redis + RQ, the workers' side: one process per GPU draws the studio's jobs
and reports every fact through Redis (the protocol: redis_protocol.py; the studio:
redis_backend.py).

    workers: python worker.py --queue redis://:PASSWORD@HOST:6379/0 --device cuda:0   (one per GPU)
"""

from __future__ import annotations

import contextvars
import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from rq import SimpleWorker, get_current_job
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer

from backend import Outcome
from drawing import JobSpec
from errors import InputError
from generator_host import GeneratorHost
from redis_protocol import EVENTS, HEARTBEAT_S, KEY_TTL_S, RESULTS, StudioJob, attempt_key, cancel_key, \
    delivered_key, reference_key, rq_queue, superseded
from storage import Status

log = logging.getLogger(__name__)

# RQ blocks this long minus 15 s waiting for a job, and sets its sockets' timeout from it:
# short, so that a Redis that hangs is noticed; the heartbeat thread keeps the worker's key.
WORKER_TTL_S = 30
# A worker silent this long is taken for dead: its job goes to another worker.
EXECUTION_TTL_S = 10
# A worker that lost Redis asks again this often (at most), taking no job meanwhile.
REDIS_RETRY_S = 5
# A worker whose model cannot load tries again this often, taking no job meanwhile.
LOAD_RETRY_S = 30
# What a worker waits out (Redis restarted, unreachable or hung) instead of quitting.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class StudioWorker(SimpleWorker):
    """An RQ worker that draws in its own process (no fork: the pipeline is loaded once)
    with one :class:`generator_host.GeneratorHost`.

    RQ is used through its public API only; tests/test_rq_api.py pins the signature of
    every RQ method this class overrides or calls, so an RQ upgrade that changes one fails
    there, loudly. One heartbeat thread, for the worker's whole ``work()``, tells the
    studio how the worker is (``sb:worker:<name>``), keeps RQ's worker key alive, and while
    a board is drawn keeps its RQ execution alive: a worker that dies stops beating, and its
    job is taken over within ``EXECUTION_TTL_S``.
    """

    def __init__(self, redis, settings, load_generator: Callable[[], Any], load_scorer: Callable[[], Any] | None,
                 name: str, device: str):
        super().__init__([rq_queue(redis)], name=name, connection=redis, serializer=JSONSerializer,
                         worker_ttl=WORKER_TTL_S, job_class=StudioJob)
        self.host = GeneratorHost(settings, load_generator, load_scorer, on_change=self.report)
        self.device = device
        self.board: str | None = None  # the board being drawn
        self._drawing = None  # its RQ job, while draw_job runs
        self._beat_guard = threading.Lock()  # no execution beat once draw_job has returned
        self._beats: tuple[threading.Thread, threading.Event] | None = None
        self._stopping = False  # a warm shutdown was asked for (SIGTERM, SIGINT)
        self._stop_asked = threading.Event()  # the same, for a wait to end at once

    # -- RQ's hooks --

    def work(self, *args, **kwargs) -> bool:
        token = _worker.set(self)  # draw_job's way back to this worker
        try:
            return super().work(*args, **kwargs)
        finally:
            self._stop_beats()
            _worker.reset(token)

    def teardown(self) -> None:
        self._stop_beats()  # before RQ deletes the worker's key, so that no beat writes it again
        super().teardown()

    def get_heartbeat_ttl(self, job) -> int:
        return EXECUTION_TTL_S  # a dead worker's job is taken over this soon, not after its timeout

    def handle_warm_shutdown_request(self) -> None:
        self._stopping = True
        self._stop_asked.set()
        super().handle_warm_shutdown_request()

    def check_for_suspension(self, burst):
        self._outlasting_redis(super().check_for_suspension, burst)

    def run_maintenance_tasks(self):
        self._outlasting_redis(super().run_maintenance_tasks)

    def heartbeat(self, timeout=None, pipeline=None):
        try:
            super().heartbeat(timeout, pipeline)
        except REDIS_DOWN:  # missed: the next step of the work loop waits for Redis
            log.warning("heartbeat failed: Redis does not answer")

    def execute_job(self, job, queue):
        # Redis gone mid-job: the job is not retried here. Restarted with its data, RQ's
        # execution expires and the studio's sweep hands the job to a worker (this one,
        # maybe); restarted empty, the studio interrupts the board.
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as error:
            self._redis_down(error)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        return self._outlasting_redis(self._dequeue, timeout, max_idle_time)

    def _dequeue(self, timeout, max_idle_time):
        # With no job queued, compile the model's waiting graphs (a compiled UNet), one at a
        # time; a job queued during one waits for that one only. A stop asked for meanwhile
        # may have been swallowed by the compile (RQ raises it wherever the signal lands).
        if self._beats is None:  # here, not in work(): RQ has registered the worker by now
            self._start_beats()
        # The model before any job: a worker whose model cannot load takes none (its
        # heartbeat says why, and the jobs go to the other workers) and tries again later.
        while not self._stopping and self.host.generator is None:
            try:
                self.host.ensure()
            except Exception:  # noqa: BLE001 - logged by the host, said in the heartbeat
                self._stop_asked.wait(LOAD_RETRY_S)
        while not self._stopping and self.queues[0].count == 0 and self.host.warm_one():
            pass
        if self._stopping:
            raise StopRequested()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    # -- Redis restarted or unreachable --

    def _outlasting_redis(self, step, *args):
        """One step of RQ's work loop, done again once Redis answers if it does not: RQ
        itself retries only its wait for a job, and ends the worker on any other Redis error
        ("found an unhandled exception, quitting")."""
        while True:
            try:
                return step(*args)
            except REDIS_DOWN as error:
                self._redis_down(error)

    def _redis_down(self, error: Exception) -> None:
        """Wait until Redis answers again (a stop asked for meanwhile ends the wait)."""
        log.error("Redis stopped answering (%s); the worker waits for it", error)
        wait = 0.5
        while not self._stopping:
            self._stop_asked.wait(wait)
            try:
                self.connection.ping()
            except REDIS_DOWN:
                wait = min(wait * 2, REDIS_RETRY_S)
                continue
            log.info("Redis answers again: the worker takes jobs")
            return
        raise StopRequested()

    # -- the beats --

    @contextmanager
    def drawing(self, board_id: str):
        """While draw_job draws: the board in health, and its RQ execution kept alive."""
        with self._beat_guard:
            self.board, self._drawing = board_id, get_current_job()
        try:
            yield
        finally:
            with self._beat_guard:
                self.board, self._drawing = None, None

    def _start_beats(self) -> None:
        self.report()
        stop = threading.Event()
        thread = threading.Thread(target=self._beat_loop, args=(stop,), name="storyboard-beats", daemon=True)
        thread.start()
        self._beats = (thread, stop)

    def _beat_loop(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                with self._beat_guard:
                    if self._drawing is not None:
                        self.maintain_heartbeats(self._drawing)
                    else:
                        self.heartbeat()
                self.report()
            except Exception:  # noqa: BLE001 - a missed beat is retried; Redis down is logged by RQ
                log.warning("heartbeat failed", exc_info=True)

    def _stop_beats(self) -> None:
        if self._beats is not None:
            thread, stop = self._beats
            stop.set()
            thread.join()
            self._beats = None

    def report(self) -> None:
        """This worker's state for the studio's health: ``sb:worker:<name>``, expiring unless beaten."""
        host = self.host
        if self.device == "auto" and host.generator is not None:
            self.device = host.generator.describe()["device"]
        key = f"sb:worker:{self.name}"
        w = host.warm_up  # "done of [eta_s]" while warming up, "" otherwise
        warm_up = "" if w is None else " ".join(str(n) for n in (w.done, w.of, w.eta_s) if n is not None)
        self.connection.hset(key, mapping={
            "name": self.name, "host": socket.gethostname(), "device": self.device, "model": str(host.state),
            "error": host.error or "", "board": self.board or "", "last_heartbeat": f"{time.time():.3f}",
            "warm_up": warm_up})
        self.connection.expire(key, int(HEARTBEAT_S * 5))


_worker: contextvars.ContextVar[StudioWorker] = contextvars.ContextVar("storyboard_worker")


def draw_job(payload: dict) -> str:
    """The RQ job: draw one studio job and report every fact to the studio.

    Never raises for the studio's own reasons (a bad payload, a model that cannot load, a
    cancel): those end the job with a fact. It raises only when Redis fails, so that RQ
    retries the job.
    """
    from redis.exceptions import RedisError

    worker = _worker.get()
    redis = worker.connection
    try:
        spec = JobSpec.from_json(payload)
    except InputError as error:
        job_id = payload.get("job_id") if isinstance(payload, dict) else None
        board_id = payload.get("board_id") if isinstance(payload, dict) else None
        if isinstance(job_id, int) and isinstance(board_id, str):
            RedisSink(redis, job_id, board_id).end(Outcome(Status.FAILED, f"The job could not be read: {error}"))
        log.error("refused a job payload: %s", error)
        return "refused"
    with redis.pipeline(transaction=True) as pipe:  # this worker's attempt at the job: the live one now
        key = attempt_key(spec.board_id, spec.job_id)
        attempt, _ = pipe.incr(key).expire(key, KEY_TTL_S).execute()
    sink = RedisSink(redis, spec.job_id, spec.board_id, attempt)
    delivered = frozenset(int(x) for x in redis.smembers(delivered_key(spec.board_id, spec.job_id)))
    if spec.identity_lock:  # taken over: the same faces as before
        spec = replace(spec, characters=tuple(
            replace(c, reference_png=c.reference_png or redis.get(reference_key(spec.job_id, k)))
            for k, c in enumerate(spec.characters, start=1)))
    with worker.drawing(spec.board_id):
        cancel = RedisCancel(redis, spec.board_id, spec.job_id, attempt)
        outcome = worker.host.run(spec.job_id, lambda: spec, sink, cancel,
                                  skip=delivered, raises=(RedisError,))
        sink.end(outcome)
    return "ended"


class RedisCancel:
    """The cancel flag the generator checks at every step: a key the studio sets, or a later
    attempt at the job (this worker was paused while another took the job over: it stops)."""

    def __init__(self, redis, board_id: str, job_id: int, attempt: int | None = None):
        self.redis, self.key, self.attempt = redis, cancel_key(job_id), attempt
        self.attempt_key = attempt_key(board_id, job_id)

    def is_set(self) -> bool:
        canceled, latest = self.redis.pipeline(transaction=False).exists(self.key).get(self.attempt_key).execute()
        return bool(canceled) or superseded(self.attempt, latest)


class RedisSink:
    """A worker's facts, sent to the studio through the results stream (progress and previews
    through pub/sub: lossy, never kept). A delivered panel is recorded with it, so a job taken over skips it."""

    def __init__(self, redis, job_id: int, board_id: str, attempt: int | None = None):
        self.redis, self.job_id, self.board_id, self.attempt = redis, job_id, board_id, attempt

    def _send(self, kind: str, data: dict | None = None, png: bytes | None = None, also=None) -> bool:
        """One fact on the stream, with what goes with it (a panel marked delivered), unless
        a later attempt took the job over: then nothing, so that the live attempt's record
        of delivered panels stays true (checked and written in one transaction). Whether it was sent."""
        from redis.exceptions import WatchError

        fields = {"type": kind, "job": json.dumps(self.job_id), "board": self.board_id,
                  "data": json.dumps(data or {})}
        if self.attempt is not None:
            fields["attempt"] = json.dumps(self.attempt)
        if png is not None:
            fields["png"] = png
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(attempt_key(self.board_id, self.job_id))
                    if superseded(self.attempt, pipe.get(attempt_key(self.board_id, self.job_id))):
                        log.warning("job %d is no longer attempt %d's (taken over, ended or lost with Redis's "
                                    "data): its %s report is not sent", self.job_id, self.attempt, kind)
                        return False
                    pipe.multi()
                    pipe.xadd(RESULTS, fields)
                    if also:
                        also(pipe)
                    pipe.execute()
                    return True
                except WatchError:
                    continue  # the attempt changed meanwhile: look again

    def prompts(self, prompts) -> None:
        self._send("prompts", {str(k): [p.prompt, p.negative_prompt, p.dropped, p.traits_dropped]
                               for k, p in prompts.items()})

    def panel_started(self, frame_id: int) -> None:
        # Said after its first step: a worker paused in that step and resumed after a takeover
        # says only that its report is not sent (and stops at the step's cancel check).
        if self._send("started", {"frame_id": frame_id}):
            log.info("job %d, attempt %s: drawing panel %d", self.job_id, self.attempt, frame_id)

    def panel_saved(self, panel) -> None:
        self._send("saved", {"frame_id": panel.frame_id, "seed": panel.seed, "identity": panel.identity,
                             "attempts": panel.attempts, "seconds": panel.seconds, "mode": panel.mode,
                             "ran": panel.ran, "parent": panel.parent}, png=panel.png,
                   also=lambda pipe: self._delivered(pipe, panel.frame_id))

    def panel_failed(self, frame_id: int, error: str) -> None:
        self._send("failed", {"frame_id": frame_id, "error": error},
                   also=lambda pipe: self._delivered(pipe, frame_id))

    def reference(self, character: int, png: bytes) -> None:
        self._send("reference", {"character": character}, png=png,
                   also=lambda pipe: pipe.set(reference_key(self.job_id, character), png, ex=KEY_TTL_S))

    def progress(self, progress: dict) -> None:
        self.redis.publish(EVENTS, json.dumps({"board": self.board_id, "progress": progress}))

    def preview(self, preview: dict) -> None:
        self.redis.publish(EVENTS, json.dumps({"board": self.board_id, "preview": preview}))

    def end(self, outcome: Outcome) -> None:
        self._send("end", {"status": str(outcome.status), "error": outcome.error, "frame_error": outcome.frame_error})

    def _delivered(self, pipe, frame_id: int) -> None:
        pipe.sadd(delivered_key(self.board_id, self.job_id), frame_id)
        pipe.expire(delivered_key(self.board_id, self.job_id), KEY_TTL_S)
