"""Scale-out on Redis + RQ, the studio's side: it queues the jobs, reads back what workers
report and is the one writer of the database and the image files (the protocol:
redis_protocol.py; the workers: redis_worker.py).

    studio:  python app.py --queue redis://:PASSWORD@HOST:6379/0
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

from rq.job import Job

from backend import Backend, BackendHealth, ModelState, Outcome, StoreSink, is_disk_full, publish_status, \
    user_message
from board_params import MAX_CHARACTERS
from config import SettingsError
from drawing import PanelPrompts, SavedPanel, spec_for
from redis_protocol import EVENTS, KEY_TTL_S, RESULTS, DRAW_JOB, Fact, MalformedFact, attempt_key, cancel_key, \
    connect, delivered_key, heartbeat, redis_problem, reference_key, rq_queue, safe_url
from storage import Status

log = logging.getLogger(__name__)

REJECTED = "sb:results:rejected"
GROUP = "studio"
# The studio that uses this Redis database: two would take each other's results.
STUDIO_KEY = "sb:studio"
STUDIO_TTL_S = 15
# How often the studio checks that Redis still holds its running jobs (it may restart empty).
RECONCILE_S = 10
# How long health names a board whose job Redis lost (and which was interrupted for it).
LOST_NOTICE_S = 600
JOB_TIMEOUT_S = 6 * 3600  # one board, however slow the device
RETRIES = 3
GAVE_UP = (f"Its worker stopped {RETRIES + 1} times while drawing this storyboard (see the workers' logs); "
           "finished panels are kept. Resume to try again.")


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
