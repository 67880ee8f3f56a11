"""The storyboard studio: a Flask page and JSON API over one generator worker.

    python app.py [--model tiny] [--port 8080] ...      (or: make run / make demo)

``create_app(settings, load_generator=...)`` builds the app; tests pass a fake or tiny
generator. Handlers only validate, store and enqueue; the worker draws.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import tempfile
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Request, Response, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from board_lookup import board_or_404, frame_of, send_png, take_of
from board_params import MAX_CHARACTERS, MAX_SEED, BoardParams, Character, panel_cast, panel_seed, random_seed, \
    read_cast
from config import ASPECTS, MAX_FRAMES, PRESETS, REFINE_DEFAULT_PRESET, REFINE_PRESETS, Settings, SettingsError, \
    is_loopback, load_settings
from errors import InputError
from layouts_api import edited_layout, layouts, plan_layouts, redraw_layout
from planner import SOURCE_LLM, planner_client, validated_panels
from plans_api import llm_plan, plans
from screenplay_api import screenplays
from exports_api import exports
from prompt_enhancer import SHOT_TYPES, StoryPlan, cast_from_text, plan_story
from serializers import board_json, frame_json, preset_json, reference_url, summary_json
import step_time
import storyboarder
from storage import FINAL, Conflict, DataDirInUse, DatabaseDamaged, QueueFull, Store, lock_data_dir
from studio import Studio, current_studio
from timing import FRAME_RATES, board_timeline, read_duration, read_fps
from uploaded_images import base64_bytes, open_image
from web_input import bool_field, choice_field, form_fields, int_field, json_body, json_list_field, text_field
from backend import DISK_FULL_MESSAGE, Backend, is_disk_full
from events import EventHub

log = logging.getLogger(__name__)
T = TypeVar("T")

# A stream writes at least this often, so a listener that has gone is noticed (its
# thread ends at the failed write) even while its board is quiet.
SSE_KEEPALIVE_S = 15.0

api = Blueprint("studio", __name__)

# An upload up to this size is kept in memory while its request is read (Werkzeug's own spool).
UPLOAD_SPOOL_BYTES = 500 * 1024


class StudioRequest(Request):
    """A bigger upload (a Storyboarder project, a large face) spools into the data dir, as
    exports do, not into the system's temp dir: that may be a small tmpfs, and the data dir is
    where the studio's disk is watched and said full."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return tempfile.SpooledTemporaryFile(max_size=UPLOAD_SPOOL_BYTES, mode="rb+", dir=current_studio().store.root)



# --- The factory ---------------------------------------------------------------------------


def create_app(
    settings: Settings | None = None,
    load_generator: Callable[[], Any] | None = None,
    load_scorer: Callable[[], Any] | None = None,
    start_worker: bool = True,
) -> Flask:
    """Build the app. ``load_generator`` is called once, by the worker, on first use."""
    from backend import default_generator_loader, default_scorer_loader
    from worker import Worker

    settings = settings or load_settings()
    app = Flask(__name__)
    app.request_class = StudioRequest
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024)
    app.json.ensure_ascii = False
    if settings.trusted_proxies:
        # The proxy's X-Forwarded-* say which host, scheme and client the request came from.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    store = Store(settings.data_path, takes_per_panel=settings.takes_per_panel)
    # With Redis workers, a running job may still be drawn elsewhere: the backend reconciles.
    recovered = store.recover(interrupt_running=not settings.queue_url)
    if recovered:
        log.info("marked %d interrupted storyboard(s) after a restart", len(recovered))
    hub = EventHub()  # the web layer's; the backend publishes what it draws into it
    backend: Backend
    if settings.queue_url:
        from redis_backend import RedisBackend

        backend = RedisBackend(store, settings, hub)
    else:
        backend = Worker(store, settings, load_generator or default_generator_loader(settings), hub,
                        load_scorer if load_scorer is not None else default_scorer_loader)
    app.extensions["studio"] = Studio(settings, store, hub, backend)
    app.register_blueprint(api)
    app.register_blueprint(plans)
    app.register_blueprint(layouts)
    app.register_blueprint(screenplays)
    app.register_blueprint(exports)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InputError, _input_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_refuse_cross_origin)
    app.after_request(_security_headers)
    if start_worker:
        backend.start(preload=settings.preload)
    return app


# --- Errors and guards ---------------------------------------------------------------------


def _unexpected_error(error: Exception):
    """A bug must not show a traceback: words for the page, details in the server log."""
    if isinstance(error, HTTPException):
        return _http_error(error)
    if is_disk_full(error):
        log.error("disk full on %s %s: %s", request.method, request.path, error)
        return jsonify(error=DISK_FULL_MESSAGE, field=None), 507
    log.exception("unexpected error on %s %s", request.method, request.path)
    return jsonify(error="Something went wrong in the studio; the details are in the server log.", field=None), 500


def _http_error(error: HTTPException):
    if not request.path.startswith("/api/"):
        return error
    messages = {
        413: f"The upload is too large (at most {current_studio().settings.max_upload_mb:g} MB).",
        404: "Not found.",
        405: "Method not allowed.",
    }
    return jsonify(error=messages.get(error.code, error.description), field=None), error.code


def _input_error(error: InputError):
    """The one place an input error becomes an answer, whichever validator raised it."""
    return jsonify(error=error.message, field=error.field), error.status


# The page runs no inline script or style, so the policy can forbid both; no other site
# may frame the studio (it could trick a click on Delete).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _refuse_cross_origin():
    """A page elsewhere must not drive this studio through the user's browser."""
    settings: Settings = current_studio().settings
    # DNS rebinding: a site whose name now points at this machine sends its own name as Host,
    # whatever address the studio listens on (0.0.0.0 included). Behind a trusted proxy the
    # Host is the public one (ProxyFix, see create_app).
    host = _netloc(f"//{request.host}")
    if host is None or urlsplit(f"//{host}").hostname not in settings.host_names:
        return jsonify(error="Unknown host name: open the studio at http://127.0.0.1 or localhost, or add "
                             "this name to STORYBOARD_ALLOWED_HOSTS.", field=None), 403
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return jsonify(error="Requests from other sites are refused.", field=None), 403
    origin = request.headers.get("Origin")
    if origin and _netloc(origin) != host:  # "null" (a sandboxed page, a file) has none
        return jsonify(error="Requests from other sites are refused.", field=None), 403
    return None


def _netloc(url: str) -> str | None:
    """The host and port of a URL from a header, or None when it has none that parses
    (urlsplit raises ValueError on '[evil': a 403, never a 500)."""
    try:
        return urlsplit(url).netloc or None
    except ValueError:
        return None


# --- Input ---------------------------------------------------------------------------------


# The faces of a cast in a multipart form: reference_1 is character 1's, and so on.
CAST_UPLOADS = tuple(f"reference_{k}" for k in range(1, MAX_CHARACTERS + 1))


def _payload() -> tuple[dict, dict[str, bytes]]:
    """The request's fields and its uploaded faces (raw bytes) by upload field: ``reference``
    (one character) or ``reference_1``... (a cast), from a form's files or JSON's base64."""
    if request.mimetype == "multipart/form-data" or request.mimetype == "application/x-www-form-urlencoded":
        fields, files = form_fields()
        uploads = {}
        for name in ("reference", *CAST_UPLOADS):
            upload = files.get(name)
            if upload is None or not upload.filename:
                continue
            uploads[name] = upload.read()
            if not uploads[name]:
                raise InputError(name, "The reference file is empty: choose an image file (PNG, JPEG or WebP).")
        return fields, uploads
    body = json_body()
    if not isinstance(body, dict):
        raise InputError("body", "Send a JSON object (Content-Type: application/json) or a multipart form.")
    uploads = {}
    if body.get("reference_image"):
        uploads["reference"] = base64_bytes(body["reference_image"], "reference_image")
    characters = body.get("characters")
    if isinstance(characters, list):
        for k, item in enumerate(characters[:MAX_CHARACTERS], start=1):
            if isinstance(item, dict) and item.get("reference_image"):
                uploads[f"reference_{k}"] = base64_bytes(item["reference_image"], f"characters[{k - 1}].reference_image")
    return body, uploads


def decode_reference(data: bytes, field: str = "reference") -> bytes:
    """Check an uploaded face and return it re-encoded as a clean PNG."""
    rgb = open_image(data, field, "The reference").convert("RGB")
    rgb.thumbnail((1024, 1024))
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue()


def _title(story: str) -> str:
    first = next((line.strip() for line in story.splitlines() if line.strip()), "Storyboard")
    return first if len(first) <= 60 else first[:59].rstrip() + "…"


# --- Pages ---------------------------------------------------------------------------------


@api.get("/")
def index():
    return render_template("index.html")


@api.get("/api/health")
def health():
    studio = current_studio()
    state = studio.backend.health()
    return jsonify(
        status="worker_stopped" if not state.alive else "failing" if state.problem else "ok",
        problem=state.problem,  # e.g. the disk is full: boards wait until it is solved
        model=state.model_state,
        error=state.model_error,
        device=state.device,
        queue=studio.store.queue_length(),
        backend=state.queue,
        workers=[{**worker, "warm_up": _warm_up_json(worker.get("warm_up"))} for worker in state.workers],
        warm_up=_warm_up_json(state.warm_up),
        loading_message=_loading_message(studio.settings),
        demo=studio.settings.model == "tiny",
    )


def _warm_up_json(progress) -> dict | None:
    return None if progress is None else dataclasses.asdict(progress)


def _loading_message(settings: Settings) -> str:
    """What the page says while the model loads: nothing is downloaded for the tiny models,
    which are built once (measured: 8 s of CPU, up to 30 s on a busy 2-core machine)."""
    if settings.model == "tiny":
        import tiny_models

        if tiny_models.is_built(settings.cache_dir):
            return "Loading the tiny offline models…"
        return "Building the tiny offline models (the first start only: 10-30 seconds)…"
    return ("Loading SDXL + IP-Adapter… The first run downloads them (about 10 GB); "
            "later starts load from disk in under a minute.")


@api.get("/api/openapi.json")
def openapi_json():
    from openapi import openapi_document

    return jsonify(openapi_document())


@api.get("/api/presets")
def presets():
    settings: Settings = current_studio().settings
    measured = step_time.read(settings)  # the worker's last measurement on this machine, if any
    return jsonify(
        presets=[preset_json(preset, step_time.seconds_per_panel(preset, measured))
                 for preset in map(settings.preset_for, PRESETS)],
        step_time=None if measured is None else {"seconds_per_pass": round(measured.seconds_per_pass, 4),
                                                 "measured_at": measured.measured_at,
                                                 "panels_per_call": measured.panels_per_call},
        default_preset=settings.preset,
        aspects=[{"name": name, "width": settings.size_for(name)[0], "height": settings.size_for(name)[1]}
                 for name in ASPECTS],
        default_aspect=settings.aspect,
        defaults={"character": settings.character_traits, "style": settings.style, "frames": 6,
                  "identity_lock": settings.use_identity_lock, "consistent_look": settings.consistent_look},
        max_frames=MAX_FRAMES,
        shots=list(SHOT_TYPES),  # what a plan's panels may name
        max_characters=MAX_CHARACTERS,
        frame_rates=list(FRAME_RATES),  # what a board's fps may be
        refine={"presets": list(REFINE_PRESETS), "default_preset": REFINE_DEFAULT_PRESET,
                "strength": settings.refine_strength},  # what the board's Refine offers
    )


# --- Storyboards ---------------------------------------------------------------------------


@api.post("/api/storyboards")
def create_storyboard():
    _refuse_if_unavailable()
    board_id = _create_board(*_payload())
    return jsonify(board_json(current_studio().store.board(board_id))), 202


def _create_board(fields: dict, uploads: dict[str, bytes], fps: float | None = None,
                  durations: tuple[float, ...] = ()) -> str:
    """A new board from a request's fields and uploaded faces, queued; its id. ``fps`` and the
    panels' ``durations`` (in order), when given, are stored with it: the board is never seen
    with the default timing."""
    studio = current_studio()
    settings: Settings = studio.settings
    story = text_field(fields, "story", "", limit=settings.max_story_chars)
    characters, references = _cast(fields, uploads, settings)
    style = text_field(fields, "style", settings.style)
    frames = int_field(fields, "frames", 1, MAX_FRAMES, None)
    preset = settings.preset_for(choice_field(fields, "preset", tuple(PRESETS), settings.preset))
    aspect = choice_field(fields, "aspect", tuple(ASPECTS), settings.aspect)
    seed = int_field(fields, "seed", 0, MAX_SEED, None)
    identity_lock = bool_field(fields, "identity_lock", settings.use_identity_lock)
    # The look shares each character's identity-lock reference: by default it follows the lock.
    consistent_look = bool_field(fields, "consistent_look", settings.consistent_look and identity_lock)
    if consistent_look and not identity_lock:
        raise InputError("consistent_look", "The consistent look shares each character's identity-lock reference: "
                                            "turn the identity lock on, or the consistent look off.")
    plan = _story_plan(story, frames, fields, characters)
    panel_layouts = plan_layouts(fields, plan, aspect)
    story = story or "\n".join(panel.caption for panel in plan.panels)
    seed = random_seed() if seed is None else seed
    width, height = settings.size_for(aspect)
    params = BoardParams(
        characters=characters, style=style, preset=preset, aspect=aspect, width=width, height=height, seed=seed, identity_lock=identity_lock, consistent_look=consistent_look, negative_prompt=settings.negative_prompt,
        model=settings.sdxl_model if settings.model == "sdxl" else "tiny (offline demo)", notices=plan.notices)
    # A scene is stored only when it is not the caption (an English scene from an edited plan).
    panels = [{"id": n, "caption": panel.caption, "scene": panel.scene if panel.scene != panel.caption else None,
               "shot": panel.shot, "seed": panel_seed(seed, n), "cast": panel.cast, "dialogue": panel.dialogue,
               "layout": panel_layouts.get(n), "duration": durations[n - 1] if durations else None}
              for n, panel in enumerate(plan.panels, start=1)]
    return _queue_drawing(lambda limit: studio.store.create_board(
        title=_title(story), story=story, params=params, panels=panels, references=references,
        queue_limit=limit, fps=fps))


def _cast(fields: dict, uploads: dict[str, bytes], settings: Settings) -> tuple[tuple[Character, ...], dict]:
    """The board's cast and each character's uploaded face (a clean PNG, by 1-based place):
    ``characters`` (a list, or its JSON text in a form), else one unnamed character from
    ``character`` with its face in ``reference``."""
    raw = json_list_field(fields, "characters", '{"name", "traits"}')
    if raw is None or raw == []:
        extra = next((name for name in CAST_UPLOADS if name in uploads), None)
        if extra:
            raise InputError(extra, f"{extra} is a face of the characters list; with one character, use reference.")
        character = Character("", text_field(fields, "character", settings.character_traits))
        face = uploads.get("reference")
        return (character,), ({1: decode_reference(face, "reference")} if face is not None else {})
    if fields.get("character") not in (None, ""):
        raise InputError("character", "Send either character (one character) or characters (a cast), not both.")
    if "reference" in uploads:
        raise InputError("reference", "With characters, each face goes with its character: reference_image in "
                                      "JSON, or the files reference_1 to reference_4 in a form.")
    characters = read_cast(raw)
    extra = next((name for name in CAST_UPLOADS[len(characters):] if name in uploads), None)
    if extra:
        raise InputError(extra, f"{extra} has no character: the cast has {len(characters)}.")
    references = {}
    for k in range(1, len(characters) + 1):
        face = uploads.get(f"reference_{k}")
        if face is not None:
            form = request.mimetype == "multipart/form-data"
            references[k] = decode_reference(face, f"reference_{k}" if form else f"characters[{k - 1}].reference_image")
    return characters, references


def _story_plan(story: str, frames: int | None, fields: dict, characters: tuple[Character, ...]) -> StoryPlan:
    """The board's plan: the edited one in ``panels`` (see POST /api/plans) when given, else
    split from the story; each panel's cast as the plan says or, by default, who its words name."""
    raw_panels = json_list_field(fields, "panels", '{"caption", "scene", "shot"}')
    if raw_panels is None:
        if not story:
            raise InputError("story", "Write a story: one line per panel, or a premise and a panel count.")
        client = planner_client(current_studio().settings)
        # A premise (one paragraph) is the LLM's to plan when there is one; lines are the user's panels.
        if client is not None and sum(1 for line in story.splitlines() if line.strip()) == 1:
            return _premise_plan(story, frames, characters, client)
        return plan_story(story, frames, MAX_FRAMES, [c.name for c in characters])
    return validated_panels(raw_panels, characters, MAX_FRAMES)


def _premise_plan(premise: str, frames: int | None, characters: tuple[Character, ...], client) -> StoryPlan:
    """The LLM's plan of ``premise`` (or the built-in one standing in, saying why), with a
    notice saying who planned it. One unnamed character is not sent (it has no name to put in
    a panel): its panels show it, as the built-in planner's do."""
    names = [c.name for c in characters]
    named = names != [""]
    plan = llm_plan(premise, frames, characters if named else (), client)
    if not named:
        panels = tuple(dataclasses.replace(p, cast=cast_from_text(f"{p.caption}\n{p.scene}", names)) for p in plan.panels)
        plan = dataclasses.replace(plan, panels=panels)
    if plan.source == SOURCE_LLM:
        plan = dataclasses.replace(plan, notices=(f"Planned by {client.model}, the LLM planner at {client.server}: "
                                                  "captions in your language, scenes in English for the image.",
                                                  *plan.notices))
    return plan


def _refuse_if_unavailable() -> None:
    reason = current_studio().backend.accepting
    if reason:
        raise InputError("queue", reason, status=503)


def _queue_drawing(call: Callable[[int], T], field: str = "status", conflict: str | None = None,
                   board_id: str | None = None) -> T:
    """Queue a drawing and wake the worker: ``call(queue_limit)`` is the store's queueing, which
    counts the queue in its own transaction (so the limit is exact under load). A full queue is
    a 429; the store's Conflict a 409 on ``field``, in ``conflict``'s words or the store's, and
    a 404 when ``board_id``'s board was deleted since the request read it."""
    studio = current_studio()
    limit = studio.settings.queue_limit
    try:
        queued = call(limit)
    except Conflict as error:
        if board_id is not None and studio.store.board_status(board_id) is None:
            abort(404)
        raise InputError(field, conflict or str(error), status=409) from None
    except QueueFull:
        raise InputError("queue", f"The studio is busy: {limit} storyboards are already waiting. "
                                  "Try again when some have finished.", status=429) from None
    studio.backend.wake()
    return queued


@api.get("/api/storyboards")
def list_storyboards():
    return jsonify(storyboards=[summary_json(row) for row in current_studio().store.boards()])


def _board_json(board_id: str) -> dict:
    """The board as the API shows it now, with the running job's progress; 404 when it was
    deleted meanwhile (never a 200 with ``null``)."""
    studio = current_studio()
    return board_json(board_or_404(board_id), studio.backend.progress(board_id))


@api.get("/api/storyboards/<board_id>")
def get_storyboard(board_id: str):
    return jsonify(_board_json(board_id))


@api.patch("/api/storyboards/<board_id>")
def edit_storyboard(board_id: str):
    """Change how the board plays (its frame rate); nothing is drawn again."""
    studio = current_studio()
    board_or_404(board_id)
    body = json_body()
    if not isinstance(body, dict) or "fps" not in body:
        raise InputError("fps", "Send what to change, e.g. {\"fps\": 25}.")
    if not studio.store.set_fps(board_id, read_fps(body["fps"])):
        abort(404)
    return jsonify(_board_json(board_id))


@api.delete("/api/storyboards/<board_id>")
def delete_storyboard(board_id: str):
    board_or_404(board_id)
    studio = current_studio()
    studio.backend.cancel(board_id)
    studio.store.delete_board(board_id)
    studio.hub.forget(board_id)
    return "", 204


@api.post("/api/storyboards/<board_id>/cancel")
def cancel_storyboard(board_id: str):
    board = board_or_404(board_id)
    if board["status"] not in ("queued", "running"):
        raise InputError("status", f"The storyboard is {board['status']}; only a queued or running one can be "
                                   "canceled.", status=409)
    if not current_studio().backend.cancel(board_id):
        board = current_studio().store.board_status(board_id) or abort(404)
        raise InputError("status", f"The storyboard is {board['status']}; it finished before the cancel arrived.",
                         status=409)
    return jsonify(id=board_id, status="canceled"), 202


@api.post("/api/storyboards/<board_id>/resume")
def resume_storyboard(board_id: str):
    studio = current_studio()
    board_or_404(board_id)
    _refuse_if_unavailable()
    _queue_drawing(lambda limit: studio.store.resume(board_id, queue_limit=limit), board_id=board_id)
    return jsonify(id=board_id, status="queued"), 202


def _frame_at(board: dict, n: int) -> dict:
    if not 1 <= n <= len(board["frames"]):
        abort(404)
    return board["frames"][n - 1]


@api.post("/api/storyboards/<board_id>/frames/<int:n>/regenerate")
def regenerate_frame(board_id: str, n: int):
    studio = current_studio()
    board = board_or_404(board_id)
    frame = _frame_at(board, n)
    fields = json_body(required=False)
    if not isinstance(fields, dict):
        raise InputError("body", "Send a JSON object, e.g. {\"seed\": 42, \"caption\": \"...\"}.")
    seed = int_field(fields, "seed", 0, MAX_SEED, None)
    caption = text_field(fields, "caption", frame["caption"])
    # A blank scene means "the caption" again; a missing one keeps the panel's.
    scene = None if fields.get("scene") == "" else text_field(fields, "scene", frame["scene"] or "") or None
    cast = None  # missing: the panel keeps its cast
    if fields.get("cast") is not None:
        cast = panel_cast(fields["cast"], board["params"].characters, "cast")
    layout = redraw_layout(fields, board, frame, cast)
    seed = random_seed() if seed is None else seed
    _refuse_if_unavailable()
    _queue_drawing(lambda limit: studio.store.redraw(board_id, frame["id"], caption, seed, scene=scene, cast=cast,
                                                     queue_limit=limit, layout=layout),
                   "frame", f"Panel {n} is already being drawn.", board_id)
    return jsonify(_board_json(board_id)), 202


@api.patch("/api/storyboards/<board_id>/frames/<int:frame_id>")
def edit_frame(board_id: str, frame_id: int):
    """Change what a panel shows over time, without drawing it again: its ``duration``
    (seconds; null: the time to read it) and its ``dialogue``; and its ``layout`` for its next
    drawing (null: none)."""
    studio = current_studio()
    board = board_or_404(board_id)
    frame = frame_of(board, frame_id)
    body = json_body()
    changes = {}
    if isinstance(body, dict) and "duration" in body:
        changes["duration"] = read_duration(body["duration"])
    if isinstance(body, dict) and "dialogue" in body:
        changes["dialogue"] = text_field(body, "dialogue", "") or None
    if isinstance(body, dict) and "layout" in body:
        changes["layout"] = edited_layout(body["layout"], board, frame)
    if not changes:
        raise InputError("body", "Send what to change, e.g. {\"duration\": 3.5} or {\"dialogue\": \"...\"}.")
    try:
        if not studio.store.edit_panel(board_id, frame_id, **changes):
            abort(404)
    except Conflict:
        raise InputError("layout", "The panel is being drawn; change its layout when it is done.", status=409) from None
    if "layout" in changes:
        studio.hub.publish(board_id, "frame", {"frame_id": frame_id})
    return jsonify(_board_json(board_id))


@api.put("/api/storyboards/<board_id>/frames/<int:frame_id>/take")
def choose_take(board_id: str, frame_id: int):
    """Show another of the panel's takes: instant (nothing is drawn), and it undoes a redraw."""
    studio = current_studio()
    frame_of(board_or_404(board_id), frame_id)
    body = json_body()
    if not isinstance(body, dict) or body.get("take") is None:
        raise InputError("take", "Send the take to show, e.g. {\"take\": 1}.")
    take = int_field(body, "take", 1, 2**31, None)
    if not studio.store.choose_take(board_id, frame_id, take):
        raise InputError("take", f"The panel has no take {take}.", status=404)
    studio.hub.publish(board_id, "frame", {"frame_id": frame_id})
    return jsonify(_board_json(board_id))


@api.delete("/api/storyboards/<board_id>/frames/<int:frame_id>/takes/<int:take_id>")
def delete_take(board_id: str, frame_id: int, take_id: int):
    studio = current_studio()
    frame_of(board_or_404(board_id), frame_id)
    try:
        deleted = studio.store.delete_take(board_id, frame_id, take_id)
    except Conflict as error:
        raise InputError("take", str(error), status=409) from None
    if not deleted:
        abort(404)
    studio.hub.publish(board_id, "frame", {"frame_id": frame_id})
    return "", 204


def _refine_order(settings: Settings) -> tuple[str, float]:
    """A refine's preset and strength, from its JSON body (both optional)."""
    body = json_body(required=False)
    if not isinstance(body, dict):
        raise InputError("body", "Send a JSON object, e.g. {\"preset\": \"quality\", \"strength\": 0.35}.")
    preset = choice_field(body, "preset", REFINE_PRESETS, REFINE_DEFAULT_PRESET)
    strength = body.get("strength", settings.refine_strength)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise InputError("strength", "strength must be a number above 0 and at most 1.")
    steps = PRESETS[preset].steps
    if int(steps * strength) < 1:
        raise InputError("strength", f"strength {strength} runs none of {preset}'s {steps} steps; "
                                     f"use at least {1 / steps:.2f}.")
    return preset, float(strength)


def _queue_refine(board_id: str, frame_id: int | None):
    studio = current_studio()
    preset, strength = _refine_order(studio.settings)
    _refuse_if_unavailable()
    _queue_drawing(lambda limit: studio.store.refine(board_id, frame_id, preset, strength, queue_limit=limit),
                   "frame" if frame_id is not None else "status", board_id=board_id)
    return jsonify(_board_json(board_id)), 202


@api.post("/api/storyboards/<board_id>/frames/<int:frame_id>/refine")
def refine_frame(board_id: str, frame_id: int):
    """Refine the panel's chosen take into a new take that keeps its composition."""
    board = board_or_404(board_id)
    frame_of(board, frame_id)
    return _queue_refine(board_id, frame_id)


@api.post("/api/storyboards/<board_id>/refine")
def refine_board(board_id: str):
    """Refine every drawn panel's chosen take."""
    board_or_404(board_id)
    return _queue_refine(board_id, None)


@api.put("/api/storyboards/<board_id>/order")
def reorder(board_id: str):
    studio = current_studio()
    board = board_or_404(board_id)
    body = json_body()
    order = body.get("order") if isinstance(body, dict) else None
    ids = sorted(frame["id"] for frame in board["frames"])
    if not isinstance(order, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in order) \
            or sorted(order) != ids:
        raise InputError("order", f"order must list every frame id exactly once: {ids}.")
    studio.store.set_order(board_id, order)
    return jsonify(_board_json(board_id))


# --- Files ---------------------------------------------------------------------------------


@api.get("/api/storyboards/<board_id>/frames/<int:frame_id>/image.png")
def frame_image(board_id: str, frame_id: int):
    return send_png(board_id, lambda board: next(
        (f["image_file"] for f in board["frames"] if f["id"] == frame_id), None))


@api.get("/api/storyboards/<board_id>/frames/<int:frame_id>/takes/<int:take_id>/image.png")
def take_image(board_id: str, frame_id: int, take_id: int):
    return send_png(board_id, lambda board: take_of(frame_of(board, frame_id), take_id)["image_file"])


@api.get("/api/storyboards/<board_id>/references/<int:character>.png")
def character_reference(board_id: str, character: int):
    return send_png(board_id, lambda board: (board["references"].get(character) or {}).get("file"))


@api.get("/api/storyboards/<board_id>/reference.png")
def reference_image(board_id: str):
    """The first character's reference (the URL from before the cast)."""
    return character_reference(board_id, 1)


@api.post("/api/storyboards/import")
def import_storyboarder():
    """A new board from a zipped Storyboarder project (storyboarder.py): its boards' text as
    the panels with their durations, its frame rate, its aspect as the nearest the studio
    draws; drawn like a posted board."""
    _refuse_if_unavailable()
    limit = current_studio().settings.max_project_mb
    request.max_content_length = int(limit * 2**20)  # a project's images outweigh a face's upload
    try:
        fields, uploads = _payload()
    except RequestEntityTooLarge:
        raise InputError("project", f"The project is larger than {limit:g} MB (STORYBOARD_MAX_PROJECT_MB).",
                         status=413) from None
    upload = request.files.get("project")
    if upload is None or not upload.filename:
        raise InputError("project", "Choose a zipped Storyboarder project (.zip of its folder) as project.")
    project = storyboarder.read_project(upload.stream, MAX_FRAMES)  # read where Werkzeug spooled it
    fps = read_fps(project.fps, "project: its fps")  # checked before anything is stored
    durations = tuple(read_duration(board.duration or project.default_duration, f"project: board {n}'s duration")
                      for n, board in enumerate(project.boards, start=1))
    aspect = min(ASPECTS, key=lambda name: abs(ASPECTS[name][0] / ASPECTS[name][1] - project.aspect_ratio))
    panels = project.panels()
    board_id = _create_board({**fields, "story": "\n".join(p["caption"] for p in panels), "panels": panels,
                              "aspect": fields.get("aspect") or aspect}, uploads, fps, durations)
    return jsonify(_board_json(board_id)), 202


# --- Server-Sent Events --------------------------------------------------------------------


def _event_data(studio: Studio, board_id: str, seq: int, kind: str, fact: dict) -> str:
    """An event's JSON for the page, from the fact the worker published: a saved panel
    becomes the frame as the API shows it, with its URL. Made once per event, however
    many pages listen."""

    def make() -> str:
        data = fact
        if kind == "frame":
            board = studio.store.board(board_id)
            timeline = board_timeline(board) if board else ()
            data = next((frame_json(board_id, timed) for timed in timeline if timed.frame["id"] == fact["frame_id"]),
                        fact)
        elif kind == "reference":
            board = studio.store.board(board_id)
            names = board["params"].names if board else ()
            character = fact.get("character", 1)
            data = {**fact, "name": names[character - 1] if character <= len(names) else None,
                    "image_url": reference_url(board_id, character)}
        return json.dumps(data, ensure_ascii=False)

    if kind == "preview":  # not kept: a preview is several kB and superseded at the next step
        return make()
    return studio.event_texts.get(seq, make)


@api.get("/api/storyboards/<board_id>/events")
def events(board_id: str):
    board_or_404(board_id)
    studio = current_studio()
    hub, store = studio.hub, studio.store
    after = hub.parse_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))

    def stream():
        last, first = after, True
        yield "retry: 2000\n\n"
        while True:
            batch = hub.wait(board_id, last, timeout=SSE_KEEPALIVE_S)
            for seq, kind, data in batch:
                last = seq
                text = _event_data(studio, board_id, seq, kind, data)
                yield f"id: {hub.event_id(seq)}\nevent: {kind}\ndata: {text}\n\n"
            # Only a status event (or silence) can mean the end: progress and frame events
            # need no database read, so listeners stay cheap while the worker draws.
            if not (first or not batch or any(kind == "status" for _, kind, _ in batch)):
                continue
            first = False
            board = store.board_status(board_id)
            if board is None:
                return
            if board["status"] in FINAL:  # derived: a final board has no work waiting
                if not batch or batch[-1][1] != "status":
                    yield f"event: status\ndata: {json.dumps({'status': board['status'], 'error': board['error']})}\n\n"
                return
            if not batch:
                yield ": keep-alive\n\n"

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- Command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Local AI storyboard studio (SDXL + IP-Adapter).")
    parser.add_argument("--model", choices=("sdxl", "tiny"), help="sdxl (default) or tiny offline models")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080)")
    parser.add_argument("--data-dir", dest="data_dir", help="where boards are saved (default ./data; ./data/demo with --model tiny)")
    parser.add_argument("--device", choices=("auto", "mps", "cuda", "cpu"))
    parser.add_argument("--precision", choices=("auto", "fp16", "bf16", "fp32"))
    parser.add_argument("--preset", choices=tuple(PRESETS))
    parser.add_argument("--preload", action="store_true", default=None, help="load the model at start")
    parser.add_argument("--queue", dest="queue_url", metavar="redis://HOST:6379/0",
                        help="draw on Redis + RQ workers (python worker.py) instead of in this process")
    parser.add_argument("--dev-server", dest="dev_server", action="store_true", default=None,
                        help="Werkzeug's development server instead of waitress (debugging only)")
    parser.add_argument("--cpu-threads", dest="cpu_threads", type=int,
                        help="torch CPU threads (0 = auto: 1 for tiny, one per core for sdxl)")
    return {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(os.environ, parse_args(argv))
    except SettingsError as error:
        log.error("%s", error)
        return 2
    if not is_loopback(settings.host):
        log.warning("listening on %s: anyone who can reach this address can use the studio (there is no login)",
                    settings.host)
    try:
        # Before anything reads the database: a second studio would mark the first's running
        # boards interrupted. The OS drops the lock when this process ends, however it ends.
        data_lock = lock_data_dir(settings.data_path)
    except DataDirInUse as error:
        log.error("%s", error)
        return 2
    try:
        return _serve(settings)
    finally:
        data_lock.release()


def _serve(settings: Settings) -> int:
    try:
        app = create_app(settings)
    except (DatabaseDamaged, SettingsError) as error:  # SettingsError: e.g. another studio on the same Redis
        log.error("%s", error)
        return 2
    log.info("studio on http://%s:%d (model: %s, %s)", settings.host, settings.port, settings.model,
             f"jobs on Redis at {settings.queue_url}" if settings.queue_url else "embedded worker")
    if settings.dev_server:
        app.run(host=settings.host, port=settings.port, threaded=True, use_reloader=False)
    else:
        make_server(app, settings).run()
    return 0


def make_server(app: Flask, settings: Settings, port: int | None = None):
    """waitress with bounded threads and connections and an inactivity timeout: a client that
    sends its request slowly holds a connection (one of ``max_connections``), never a thread."""
    from waitress import create_server

    return create_server(
        app, host=settings.host, port=settings.port if port is None else port, threads=settings.server_threads,
        connection_limit=settings.max_connections, channel_timeout=settings.request_timeout,
        cleanup_interval=max(1, min(30, settings.request_timeout // 2)), ident="storyboard-studio",
        # Without a trusted proxy, waitress drops X-Forwarded-*; with one, ProxyFix reads them.
        clear_untrusted_proxy_headers=not settings.trusted_proxies)


def stop_server(server, timeout: float = 10.0) -> None:
    """Stop a server made by :func:`make_server` from another thread (tests, embedding).

    Its connections are closed on its own loop thread (closing them from here would pull
    sockets from under its select), which then ends; then its request threads end.
    """
    def close_all():
        for channel in list(server._map.values()):
            channel.close()

    server.trigger.pull_trigger(close_all)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)


if __name__ == "__main__":
    raise SystemExit(main())
