"""What the studio and its Redis workers say to each other through Redis: the names, the
job the queue runs, the facts on the results stream and the workers' heartbeats.

    studio:  python app.py --queue redis://:PASSWORD@HOST:6379/0      (redis_backend.py)
    workers: python worker.py --queue redis://:PASSWORD@HOST:6379/0 --device cuda:0   (redis_worker.py)

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

import json
import math
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from rq.job import Job
from rq.serializers import JSONSerializer

from backend import ModelState, WarmUp
from config import env_name
from storage import Status

QUEUE = "storyboard"
RESULTS = "sb:results"
EVENTS = "sb:events"
HEARTBEAT_S = 2.0  # a worker's heartbeat: written this often, expiring after five missed
KEY_TTL_S = 7 * 24 * 3600


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


DRAW_JOB = "redis_worker.draw_job"
# The same function under the name a studio gave it before the workers' side had a module of
# its own: a job such a studio queued is still drawn by a worker of this release.
DRAW_JOB_NAMES = (DRAW_JOB, "redis_backend.draw_job")


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
        if self.func_name not in DRAW_JOB_NAMES or self.instance is not None:
            raise ForeignJob(f"refused job {self.id}: it names {self.func_name!r}; this queue runs {DRAW_JOB} only")
        from redis_worker import draw_job

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


def superseded(attempt: int | None, latest: bytes | None) -> bool:
    """Whether ``attempt`` is no longer the job's live one, given its :func:`attempt_key` as
    read: a later attempt took the job over, or the key is gone (the job ended, or Redis
    lost it). A fact without an attempt (a worker from before attempts) is never fenced."""
    if attempt is None:
        return False
    if latest is None:
        return True
    return latest.isascii() and latest.isdigit() and int(latest) > attempt
