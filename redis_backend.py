"""Scale-out on Redis + RQ: the studio queues, GPU workers draw, the studio writes.

    studio:  python app.py --queue redis://:PASSWORD@HOST:6379/0
    workers: python worker.py --queue redis://:PASSWORD@HOST:6379/0 --device cuda:0   (one per GPU)

The studio stays the one writer of the database and the image files; workers are
stateless. What moves through Redis:

- the RQ queue ``storyboard``: one RQ job per studio job, its payload a
  :class:`drawing.JobSpec` as JSON (RQ's JSON serializer: nothing is unpickled), with
  RQ's ``Retry`` so a job whose worker died is taken over by another;
- the stream ``sb:results`` (consumer group ``studio``): every fact a worker reports
  (prompts, panel started, panel saved with its PNG, panel failed, generated reference,
  job ended). The studio acknowledges a fact only after it is in the database and on disk,
  so a studio restart loses nothing: unacknowledged facts are read again;
- the channel ``sb:events``: progress and live previews, for the page (lossy by nature);
- ``sb:cancel:<job>`` (set by the studio, read by the worker at every step),
  ``sb:delivered:<board>:<job>`` (panels already reported: a job taken over skips them),
  ``sb:reference:<job>:<character>`` (a generated portrait, for a job taken over),
  ``sb:attempt:<board>:<job>`` (which attempt at the job is the live one: a worker paused long
  enough for its job to be taken over is fenced off by it), and
  ``sb:worker:<name>`` (each worker's heartbeat: host, device, model, board).

A worker that dies stops its heartbeats; its RQ execution then expires and the studio's
sweep (RQ's own ``StartedJobRegistry.cleanup``) queues the job again for another worker.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from rq import SimpleWorker, get_current_job
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer

from backend import Backend, BackendHealth, ModelState, Outcome, StoreSink, WarmUp, is_disk_full, publish_status, \
    user_message
from board_params import MAX_CHARACTERS
from config import SettingsError, env_name
from drawing import JobSpec, PanelPrompts, SavedPanel, spec_for
from errors import InputError
from generator_host import GeneratorHost
from storage import Status

log = logging.getLogger(__name__)

QUEUE = "storyboard"
RESULTS = "sb:results"
REJECTED = "sb:results:rejected"
GROUP = "studio"
EVENTS = "sb:events"
# The studio that uses this Redis database: two would take each other's results.
STUDIO_KEY = "sb:studio"
STUDIO_TTL_S = 15
HEARTBEAT_S = 2.0
# RQ blocks this long minus 15 s waiting for a job, and sets its sockets' timeout from it:
# short, so that a Redis that hangs is noticed; the heartbeat thread keeps the worker's key.
WORKER_TTL_S = 30
# A worker silent this long is taken for dead: its job goes to another worker.
EXECUTION_TTL_S = 10
# How often the studio checks that Redis still holds its running jobs (it may restart empty).
RECONCILE_S = 10
# How long health names a board whose job Redis lost (and which was interrupted for it).
LOST_NOTICE_S = 600
# A worker that lost Redis asks again this often (at most), taking no job meanwhile.
REDIS_RETRY_S = 5
JOB_TIMEOUT_S = 6 * 3600  # one board, however slow the device
RETRIES = 3
KEY_TTL_S = 7 * 24 * 3600
# A worker whose model cannot load tries again this often, taking no job meanwhile.
LOAD_RETRY_S = 30
# What a worker waits out (Redis restarted, unreachable or hung) instead of quitting.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
GAVE_UP = (f"Its worker stopped {RETRIES + 1} times while drawing this storyboard (see the workers' logs); "
           "finished panels are kept. Resume to try again.")


def cancel_key(job_id: int) -> str:
    return f"sb:cancel:{job_id}"


def delivered_key(board_id: str, job_id: int) -> str:
    # With the board: a job left in Redis by a studio on another database has the same number.
    return f"sb:delivered:{board_id}:{job_id}"


def reference_key(job_id: int, character: int) -> str:
    return f"sb:reference:{job_id}:{character}"


def attempt_key(board_id: str, job_id: int) -> str:
    """The live attempt at a studio job: each worker that takes the job (RQ retries it on
    another worker when its worker stops beating) counts one more, and sends its number with
    every fact, only while it is the live one (see :class:`RedisSink`); the studio drops an
    earlier attempt's facts read after a later one's (see :meth:`RedisBackend._superseded`)."""
    return f"sb:attempt:{board_id}:{job_id}"


def safe_url(url: str) -> str:
    """The URL as logs and the page show it (without a password, should one slip in)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redis_problem(url: str, error: Exception) -> str:
    """Why Redis does not answer, as the studio and a worker say it, naming the setting that
    fixes it; never the password."""
    from redis.exceptions import AuthenticationError

    if isinstance(error, AuthenticationError):
        return (f"Redis at {safe_url(url)} refused the password ({error}); set {env_name('queue_password')} "
                "to its requirepass")
    return (f"Redis at {safe_url(url)} cannot be reached (start it there, or set {env_name('queue_url')} "
            "to where it runs)")


def connect(url: str, password: str = ""):
    from redis import Redis

    return Redis.from_url(url, password=password or None, socket_connect_timeout=2, socket_timeout=10,
                          health_check_interval=10)


def rq_queue(connection):
    from rq import Queue

    return Queue(QUEUE, connection=connection, serializer=JSONSerializer, job_class=StudioJob)


DRAW_JOB = "redis_backend.draw_job"


class ForeignJob(Exception):
    """A job on the studio's queue that the studio did not make."""


class StudioJob(Job):
    """RQ's job as the studio and its workers read it back from Redis: anyone who can write
    to Redis can put a job there, and RQ imports and calls whatever a job names (its
    function, its callbacks). Through this class the only function a job can name is
    :func:`draw_job`, and the studio's jobs have no callbacks, so none is ever imported:
    a foreign job fails before anything of it runs, in the worker and in RQ's clean-up."""

    @property
    def func(self):
        if self.func_name != DRAW_JOB or self.instance is not None:
            raise ForeignJob(f"refused job {self.id}: it names {self.func_name!r}; this queue runs {DRAW_JOB} only")
        return draw_job

    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None


# --- The studio's side ----------------------------------------------------------------------


class RedisBackend(Backend):
    """Hands the studio's jobs to RQ and writes back what workers report.

    Same face as the embedded :class:`worker.Worker` (:class:`backend.Backend`), so the
    HTTP layer does not know which one it has.
    """

    def __init__(self, store, settings, hub):
        self.store, self.settings, self.hub = store, settings, hub
        self.url = settings.queue_url
        self.redis = connect(self.url, settings.queue_password)
        self.queue = rq_queue(self.redis)
        self._progress: dict[str, dict] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.redis_error: str | None = None
        self.problem: str | None = None
        self.consumer = f"{socket.gethostname()}-{id(self):x}"
        # A studio restarted on the same data dir is the same studio; any other is refused.
        self.identity = f"{socket.gethostname()}:{settings.data_path.resolve()}"
        self._claimed = threading.Event()  # this studio holds STUDIO_KEY: it may take results
        self._next_reconcile = 0.0  # at start, then every RECONCILE_S
        self._lost: tuple[str, float] | None = None  # (what health says, until when) after Redis lost a job
        self._attempts: dict[tuple[str, int], int] = {}  # (board, job) -> the latest attempt whose facts were read
        self._fenced: set[tuple[str, int, int]] = set()  # (board, job, attempt) dropped, logged once

    # -- the backend's face --

    def start(self, preload: bool = False) -> None:
        """Raises SettingsError (queue_url) when another studio uses this Redis database."""
        from redis.exceptions import RedisError

        try:
            self._claim()
        except RedisError:
            pass  # Redis down: the dispatch loop claims it once it answers
        for name, target in (("dispatch", self._dispatch_loop), ("collect", self._collect_loop),
                             ("events", self._events_loop)):
            thread = threading.Thread(target=target, name=f"storyboard-redis-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        from redis.exceptions import RedisError

        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._claimed.is_set():
            try:  # the next studio on this Redis need not wait for the claim to expire
                if self.redis.get(STUDIO_KEY) == self.identity.encode():
                    self.redis.delete(STUDIO_KEY)
            except RedisError:
                pass

    def wake(self) -> None:
        self._wake.set()

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def progress(self, board_id: str) -> dict | None:
        return self._progress.get(board_id)

    @property
    def accepting(self) -> str | None:
        """Why new work is refused right now (Redis unreachable), or None."""
        return self.redis_error

    def cancel(self, board_id: str) -> bool:
        queued, running = self.store.request_cancel(board_id)
        if running:
            try:
                self._send_cancels()
            except Exception as error:  # noqa: BLE001 - the flag is in the store: sent when Redis is back
                self._failed(error)
        if queued and not running:
            self._publish_status(board_id)
        return bool(queued or running)

    def health(self) -> BackendHealth:
        workers = self.workers()
        ready = [w for w in workers if w["model"] == ModelState.READY]
        model = ModelState.READY if ready else ModelState(workers[0]["model"]) if workers else ModelState.NOT_LOADED
        warming = next((w["warm_up"] for w in workers if w.get("warm_up")), None)
        return BackendHealth(
            alive=self.alive, problem=self.redis_error or self.problem or self._lost_notice() or self._waiting(workers),
            model_state=model,
            model_error=next((w.get("error") for w in workers if w.get("error")), None),
            device=", ".join(sorted({w["device"] for w in workers if w.get("device")})) or None,
            workers=workers, queue=f"redis ({safe_url(self.url)})", warm_up=None if ready else warming)

    def _lost_notice(self) -> str | None:
        """What health says for LOST_NOTICE_S after Redis lost running jobs: the page and
        the operator learn why a board stopped, and that resuming it draws the rest."""
        if self._lost is None or time.monotonic() > self._lost[1]:
            return None
        return self._lost[0]

    def _waiting(self, workers: list[dict]) -> str | None:
        """Boards that wait because no worker is connected (or none can load its model), said so."""
        if any(w["model"] != ModelState.ERROR for w in workers) or not (
                self.store.queue_length() or self.store.running_jobs()):
            return None
        if workers:
            return (f"No worker can load its model ({workers[0]['error']}); storyboards wait until one can "
                    "(see the workers' logs).")
        return (f"No worker takes jobs from the Redis at {safe_url(self.url)}: storyboards wait until one starts "
                f"(python worker.py --queue {safe_url(self.url)}).")

    def workers(self) -> list[dict]:
        from redis.exceptions import ResponseError

        try:
            keys = sorted(self.redis.scan_iter("sb:worker:*", count=100))
        except Exception:  # noqa: BLE001 - Redis down: health says so through problem
            return []
        workers = []
        for key in keys:
            try:
                row = self.redis.hgetall(key)
            except ResponseError:  # not a hash: not a worker's heartbeat
                continue
            except Exception:  # noqa: BLE001 - Redis down: health says so through problem
                return []
            if row:
                workers.append(heartbeat(row))
        return workers

    # -- dispatch: studio jobs -> RQ --

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._dispatch_pass()
                self._ok()
            except SettingsError as error:  # another studio took this Redis while it was down
                if self.problem != str(error):
                    log.error("%s", error)
                self.problem = str(error)
            except Exception as error:  # noqa: BLE001 - Redis down or the disk full: said, retried
                self._failed(error)
            self._wake.wait(1.0)
            self._wake.clear()

    def _dispatch_pass(self) -> None:
        self.redis.ping()
        self._claim()
        if time.monotonic() >= self._next_reconcile:
            self._reconcile()
            self._next_reconcile = time.monotonic() + RECONCILE_S
        self._sweep()
        self._send_cancels()
        while not self._stop.is_set() and self._room() and self._dispatch_one():
            pass

    def _room(self) -> bool:
        """RQ holds one waiting job per live worker (one when there is none): the others
        wait in the studio's queue, where the queue limit counts them, and Redis holds no
        more reference faces than the workers can take."""
        return self.queue.count < max(1, len(self.workers()))

    def _dispatch_one(self) -> bool:
        from rq import Retry

        job = self.store.next_job()
        if job is None:
            return False
        board = self.store.board(job["storyboard_id"])
        if board is None:
            return True
        spec = spec_for(job, board, self.store.reference_pngs(board), self.store.take_pngs(board, job),
                        self.store.sketch_pngs(board))
        try:
            self.queue.enqueue(DRAW_JOB, spec.to_json(), job_id=rq_job_id(job),
                               retry=Retry(max=RETRIES), job_timeout=JOB_TIMEOUT_S, result_ttl=3600,
                               failure_ttl=KEY_TTL_S, description=f"board {board['id']} job {job['id']}")
        except Exception:
            self.store.release_job(job["id"])  # back in the studio's queue, drawn when Redis is back
            raise
        self.hub.publish(board["id"], "status", {"status": Status.RUNNING, "error": None})
        return True

    def _sweep(self) -> None:
        """RQ's own clean-up of executions whose worker stopped beating: with retries left,
        the job is queued again for another worker. A job out of retries is failed here,
        since no worker will report its end."""
        self.queue.started_job_registry.cleanup()
        failed = self.queue.failed_job_registry
        for rq_id in failed.get_job_ids():
            ids = parse_rq_job_id(rq_id)
            job = self.store.job(ids[1]) if ids else None
            if job is not None and job["storyboard_id"] != ids[0]:
                job = None  # another studio's job on the same Redis
            if job is not None and job["status"] == Status.RUNNING:
                self.store.finish_job(job, Status.FAILED, GAVE_UP, Status.FAILED,
                                      "Not drawn: no worker could finish it.")
                self._publish_status(job["storyboard_id"])
            failed.remove(rq_id)

    def _send_cancels(self) -> None:
        for job_id in self.store.cancel_requested_jobs():
            self.redis.set(cancel_key(job_id), 1, ex=KEY_TTL_S)

    def _reconcile(self) -> None:
        """A job handed to RQ that Redis no longer knows (Redis restarted without its data,
        while the studio ran or was stopped) will never report back; it is interrupted, so
        the user can resume it. Checked at start and every RECONCILE_S."""
        lost = []
        for job in self.store.running_jobs():
            if not Job.exists(rq_job_id(job), connection=self.redis) and not self._has_facts(job):
                log.error("Redis lost job %d of board %s (restarted without its data?): the board is interrupted",
                          job["id"], job["storyboard_id"])
                self.store.finish_job(job, Status.INTERRUPTED, "Redis lost this job (it restarted without its "
                                                               "data); resume to draw the rest.")
                self._publish_status(job["storyboard_id"])
                lost.append(job["storyboard_id"])
        if lost:
            self._lost = (f"Redis lost the running job of board {', '.join(lost)} (it restarted without its data); "
                          "it was interrupted: resume it to draw the rest.", time.monotonic() + LOST_NOTICE_S)

    def _claim(self) -> None:
        """Hold this Redis database for this studio (renewed every second by the dispatch
        loop); raise SettingsError naming queue_url while another studio holds it."""
        if not self.redis.set(STUDIO_KEY, self.identity, nx=True, ex=STUDIO_TTL_S):
            holder = (self.redis.get(STUDIO_KEY) or b"").decode(errors="replace")
            if holder and holder != self.identity:
                self._claimed.clear()
                raise SettingsError("queue_url", (
                    f"another studio ({holder}) uses the Redis database at {safe_url(self.url)}; two studios would "
                    "take each other's results. Give each studio its own database (the number at the end of the "
                    "URL, e.g. /1) and start its workers with the same URL"))
            self.redis.expire(STUDIO_KEY, STUDIO_TTL_S)
        self._claimed.set()

    def _has_facts(self, job: dict) -> bool:
        board = job["storyboard_id"].encode()
        return any(fields[b"board"] == board and json.loads(fields[b"job"]) == job["id"]
                   for _, fields in self.redis.xrange(RESULTS, count=10000))

    # -- collect: worker facts -> the store --

    def _collect_loop(self) -> None:
        from redis.exceptions import ResponseError

        backlog = True  # first the facts read before a restart and never acknowledged
        while not self._stop.is_set():
            if not self._claimed.wait(1.0):
                continue
            try:
                try:
                    self.redis.xgroup_create(RESULTS, GROUP, id="0", mkstream=True)
                except ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise
                while not self._stop.is_set() and self._claimed.is_set():
                    start = "0" if backlog else ">"
                    try:
                        answer = self.redis.xreadgroup(GROUP, self.consumer, {RESULTS: start}, count=50,
                                                       block=None if backlog else 1000)
                    except ResponseError as error:
                        if "NOGROUP" not in str(error):
                            raise
                        break  # Redis restarted without its data: the group is made again
                    entries = answer[0][1] if answer else []
                    if backlog and not entries:
                        backlog = self._claim_others()
                        continue
                    for entry_id, fields in entries:
                        try:
                            fact = Fact.parse(fields)
                        except MalformedFact as error:
                            self._set_aside(entry_id, fields, error)
                        else:
                            self._apply(fact)
                        self.redis.xack(RESULTS, GROUP, entry_id)
                        self.redis.xdel(RESULTS, entry_id)
                    self._ok()
            except Exception as error:  # noqa: BLE001 - Redis down or the disk full: said, retried
                self._failed(error)
                backlog = True
                self._stop.wait(1.0)

    def _claim_others(self) -> bool:
        """Facts read by an earlier studio process (another consumer name) and never
        acknowledged become this one's; returns whether there were any."""
        _, claimed, _ = self.redis.xautoclaim(RESULTS, GROUP, self.consumer, min_idle_time=0, count=100)
        return bool(claimed)

    def _set_aside(self, entry_id, fields: dict, error: Exception) -> None:
        """A fact no worker of this studio wrote (or a garbled one): acknowledged, so that
        everything after it is recorded, and kept in ``sb:results:rejected`` to look at."""
        log.error("set aside result %s from Redis (kept in %s): %s", entry_id.decode(errors="replace"), REJECTED,
                  error)
        self.redis.xadd(REJECTED, fields, maxlen=1000, approximate=True)

    def _apply(self, fact: Fact) -> None:
        kind, job_id, board_id, data = fact.kind, fact.job_id, fact.board_id, fact.data
        if self.store.board_status(board_id) is None:
            return  # deleted meanwhile
        if self._superseded(fact):
            return
        if kind != "end" and not self._current(job_id, board_id):
            log.info("dropped a late %s report of job %d: it was taken over, ended or redrawn since", kind, job_id)
            return
        sink = StoreSink(self.store, self.hub, board_id, self._progress)  # as the embedded worker records
        if kind == "prompts":
            sink.prompts({int(k): PanelPrompts(*(*v, None)[:4]) for k, v in data.items()})
        elif kind == "started":
            sink.panel_started(data["frame_id"])
        elif kind == "saved":
            sink.panel_saved(SavedPanel(data["frame_id"], fact.png, data["seed"], data["identity"],
                                        data["attempts"], data["seconds"], data.get("mode"), data.get("ran"),
                                        data.get("parent")))
        elif kind == "failed":
            sink.panel_failed(data["frame_id"], data["error"])
        elif kind == "reference":
            sink.reference(data.get("character", 1), fact.png)  # a worker from before the cast: character 1
        elif kind == "end":
            job = self.store.job(job_id)
            if job is not None and job["status"] == Status.RUNNING:
                outcome = Outcome(Status(data["status"]), data["error"], data.get("frame_error"))
                self.store.finish_job(job, outcome.status, outcome.error, outcome.frames_to, outcome.frame_error)
            self._progress.pop(board_id, None)
            self._attempts.pop((board_id, job_id), None)
            self.redis.delete(cancel_key(job_id), delivered_key(board_id, job_id), attempt_key(board_id, job_id),
                              *(reference_key(job_id, k) for k in range(1, MAX_CHARACTERS + 1)))
            self._publish_status(board_id)

    def _superseded(self, fact: Fact) -> bool:
        """Whether the fact comes from an attempt at its job after a later attempt's facts:
        a worker paused (SIGSTOP, a frozen VM) while its job was taken over goes on where it
        stopped, and its images, its end, would replace the live attempt's. Its worker
        checks before sending (:class:`RedisSink`); this holds against one that raced. Facts
        an attempt sent before the takeover, read only after it, still count: they are on
        the stream before the next attempt's."""
        if fact.attempt is None:  # a worker from before attempts
            return False
        job = (fact.board_id, fact.job_id)
        latest = self._attempts.setdefault(job, fact.attempt)
        if fact.attempt >= latest:
            self._attempts[job] = fact.attempt
            return False
        if (*job, fact.attempt) not in self._fenced:
            self._fenced.add((*job, fact.attempt))
            log.warning("dropped the reports of attempt %d at job %d of board %s: attempt %d took it over",
                        fact.attempt, fact.job_id, fact.board_id, latest)
        return True

    def _current(self, job_id: int, board_id: str) -> bool:
        """Whether a worker's report still counts: its studio job is the board's and running.
        A worker paused long enough (SIGSTOP, a frozen VM) for its job to be taken over and
        finished reports late, and its images would replace newer ones (a redraw's)."""
        job = self.store.job(job_id)
        return job is not None and job["storyboard_id"] == board_id and job["status"] == Status.RUNNING

    # -- events: progress -> the page --

    def _events_loop(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(EVENTS)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    event = json.loads(message["data"])
                    sink = StoreSink(self.store, self.hub, event["board"], self._progress)
                    if "preview" in event:
                        sink.preview(event["preview"])
                    else:
                        sink.progress(event["progress"])
            except Exception as error:  # noqa: BLE001 - Redis down: said, retried
                self._failed(error)
                self._stop.wait(1.0)

    # -- state --

    def _publish_status(self, board_id: str) -> None:
        publish_status(self.store, self.hub, board_id)

    def _ok(self) -> None:
        if self.redis_error:
            log.info("Redis at %s answers again", safe_url(self.url))
        self.redis_error = self.problem = None

    def _failed(self, error: Exception) -> None:
        from redis.exceptions import RedisError

        if isinstance(error, (RedisError, OSError)) and not is_disk_full(error):
            # New work is refused (503), not kept: say so, or the user waits for a board never stored.
            message = (f"The job queue: {redis_problem(self.url, error)}; new work (storyboards, redraws, "
                       "refines, resumes) is refused, not stored, until it answers: try again then. Nothing already "
                       "made is lost.")
            if self.redis_error is None:
                log.error("%s (%s)", message, error)
            self.redis_error = message
        else:
            log.exception("the studio could not record a worker's report")
            self.problem = user_message(error, self.settings.data_path)


class MalformedFact(ValueError):
    """An entry on the results stream that no worker of the studio wrote as it is."""


# What each kind of fact carries in its data (and whether a PNG comes with it).
FACT_FIELDS = {"prompts": ((), False), "started": (("frame_id",), False),
               "saved": (("frame_id", "seed", "identity", "attempts", "seconds"), True),
               "failed": (("frame_id", "error"), False), "reference": ((), True), "end": (("status", "error"), False)}


@dataclass(frozen=True)
class Fact:
    """One worker's report as read back from the results stream (see :class:`RedisSink`)."""

    kind: str
    job_id: int
    board_id: str
    data: dict
    png: bytes | None
    attempt: int | None = None  # which attempt at the job sent it (None: a worker from before attempts)

    @classmethod
    def parse(cls, fields: dict) -> Fact:
        """The fact in a stream entry; raises MalformedFact for anything else: Redis is
        written by others than the studio's workers, so nothing in it is taken on trust."""
        try:
            raw = {key.decode(): value for key, value in fields.items()}
            kind, board_id = raw["type"].decode(), raw["board"].decode()
            job_id, data = json.loads(raw["job"]), json.loads(raw.get("data", b"{}"))
            attempt = json.loads(raw["attempt"]) if "attempt" in raw else None
        except (KeyError, ValueError, AttributeError) as error:  # a missing field, not UTF-8, not JSON
            raise MalformedFact(f"unreadable: {error}") from None
        if kind not in FACT_FIELDS or type(job_id) is not int or not isinstance(data, dict):
            raise MalformedFact(f"not a fact: type {kind!r}, job {job_id!r}")
        if attempt is not None and type(attempt) is not int:
            raise MalformedFact(f"a {kind} fact of attempt {attempt!r}")
        needed, with_png = FACT_FIELDS[kind]
        png = raw.get("png")
        if any(name not in data for name in needed) or (with_png and not isinstance(png, bytes)):
            raise MalformedFact(f"a {kind} fact without {', '.join(needed) + (', png' if with_png else '')}")
        if "frame_id" in data and type(data["frame_id"]) is not int:
            raise MalformedFact(f"a {kind} fact for frame {data['frame_id']!r}")
        if kind == "end" and data["status"] not in {str(status) for status in Status}:
            raise MalformedFact(f"an end fact with status {data['status']!r}")
        if kind == "prompts" and not all(key.isascii() and key.isdigit() and isinstance(value, list) for key, value in data.items()):
            raise MalformedFact("a prompts fact that is not panel -> prompts")
        return cls(kind, job_id, board_id, data, png, attempt)


def rq_job_id(job: dict) -> str:
    """One RQ job per start of a studio job (a resumed, interrupted job starts again); the
    board id keeps two studios (or a studio with a new database) on one Redis apart."""
    return f"sb-{job['storyboard_id']}-{job['id']}-{job['starts']}"


def parse_rq_job_id(rq_id: str) -> tuple[str, int] | None:
    """(board id, studio job id) of an id made by :func:`rq_job_id`, else None."""
    parts = rq_id.split("-")
    if len(parts) != 4 or parts[0] != "sb" or not (parts[2].isascii() and parts[2].isdigit()):
        return None  # isdigit() alone takes '²', which int() refuses: an id in Redis may be anyone's
    return parts[1], int(parts[2])


def heartbeat(row: dict[bytes, bytes]) -> dict:
    """A worker's ``sb:worker:<name>`` hash as health shows it. Anyone can write to Redis:
    a field that is missing, not UTF-8 or not a number reads as unknown, never as an error."""
    info = {key.decode(errors="replace"): value.decode(errors="replace") for key, value in row.items()}
    try:
        beat = float(info.get("last_heartbeat", ""))
    except ValueError:
        beat = 0.0
    model = info.get("model", "")
    return {"name": info.get("name", "?"), "host": info.get("host", "?"), "device": info.get("device") or None,
            "model": ModelState(model) if model in set(ModelState) else ModelState.NOT_LOADED,
            "error": info.get("error") or None, "board": info.get("board") or None,
            "last_heartbeat": beat if math.isfinite(beat) else 0.0, "warm_up": _warm_up(info.get("warm_up"))}


def _warm_up(text: str | None) -> WarmUp | None:
    """A worker's "done of [eta_s]" back into its WarmUp."""
    parts = (text or "").split()
    if len(parts) not in (2, 3) or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return WarmUp(int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) == 3 else None)


# --- The worker's side ----------------------------------------------------------------------


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


def superseded(attempt: int | None, latest: bytes | None) -> bool:
    """Whether ``attempt`` is no longer the job's live one, given its :func:`attempt_key` as
    read: a later attempt took the job over, or the key is gone (the job ended, or Redis
    lost it). A fact without an attempt (a worker from before attempts) is never fenced."""
    if attempt is None:
        return False
    if latest is None:
        return True
    return latest.isascii() and latest.isdigit() and int(latest) > attempt


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
