"""The board's exports in the API: written from the stored board, streamed from the data dir.

    GET  .../export.pdf, .../export.zip          the board as a PDF, or its pictures and texts
    GET  .../captions.vtt, .../captions.srt      the dialogue and captions on the board's timeline
    GET  .../timeline.otio|.xml|.edl|.zip        the cut for an editor (timeline_export.py)
    GET  .../storyboarder.zip                    a Storyboarder project (storyboarder.py)
    POST .../animatic                            write the animatic MP4 (animatic_jobs.py): 202
    GET  .../animatics/<job>, POST .../cancel, GET .../animatic.mp4

Registered by ``app.create_app``. At most STORYBOARD_EXPORT_CONCURRENCY exports are written at
once; another is a 429 that says so.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any, Callable

from flask import Blueprint, Response, abort, jsonify, send_file

from board_lookup import on_current_board
import cut
from errors import InputError
from layouts_api import layout_pngs
from serializers import animatic_json, board_json
import storyboarder
from studio import Studio, current_studio
import timeline_export
from web_input import bool_field, choice_field, json_body

exports = Blueprint("exports", __name__)


def _busy(studio: Studio) -> InputError:
    return InputError("export", f"The studio is busy writing {studio.settings.export_concurrency} export(s); "
                                "try again in a moment (STORYBOARD_EXPORT_CONCURRENCY).", status=429)


def _export_parts(board_id: str):
    """The board as exported, its panels' files opened now (read one at a time as the export
    is written), its references and its panels' layout pictures (small, by index)."""
    from exporting import PanelFiles

    store = current_studio().store

    def read(board: dict):
        with contextlib.ExitStack() as opened:
            files = {}
            for index, frame in enumerate(board["frames"], start=1):
                path = store.file_path(board_id, frame["image_file"])
                if path is not None:
                    files[index] = opened.enter_context(path.open("rb"))
            references = store.reference_pngs(board)
            opened.pop_all()  # all opened: from here PanelFiles closes them
        return board_json(board), PanelFiles(files), references, layout_pngs(board)

    return on_current_board(board_id, read)


def _export(board_id: str, write: Callable[..., Any], mimetype: str, suffix: str, layouts: bool = False) -> Response:
    """An export written by ``write(board, images, references=..., out=...)`` (and ``layouts=...``,
    the panels' layout pictures, for a writer that shows them) into a temporary
    file in the data dir (not memory; nothing is left of it after a crash), then streamed
    from there. At most ``export_concurrency`` are written at once; another is told so."""
    studio = current_studio()
    if not studio.export_slots.acquire(blocking=False):
        raise _busy(studio)
    try:
        spool = tempfile.TemporaryFile(dir=studio.store.root)
        try:
            board, images, references, layout_images = _export_parts(board_id)
            try:
                write(board, images, references=references, out=spool,
                      **({"layouts": layout_images} if layouts else {}))
            finally:
                images.close()
        except BaseException:
            spool.close()
            raise
    finally:
        studio.export_slots.release()
    spool.seek(0)
    return send_file(spool, mimetype=mimetype, as_attachment=True, download_name=f"storyboard-{board_id}.{suffix}")


@exports.get("/api/storyboards/<board_id>/export.pdf")
def export_pdf(board_id: str):
    from exporting import storyboard_pdf

    return _export(board_id, storyboard_pdf, "application/pdf", "pdf", layouts=True)


@exports.get("/api/storyboards/<board_id>/export.zip")
def export_zip(board_id: str):
    from exporting import storyboard_zip

    return _export(board_id, storyboard_zip, "application/zip", "zip", layouts=True)


# The cut's exports (cut.py, timeline_export.py, storyboarder.py): route name -> (writer,
# mimetype, the download's suffix after "storyboard-<id>.").
_CUT_EXPORTS = {
    "captions.vtt": (cut.captions_vtt, "text/vtt", "vtt"),
    "captions.srt": (cut.captions_srt, "application/x-subrip", "srt"),
    "timeline.otio": (timeline_export.writer("otio"), "application/json", "otio"),
    "timeline.xml": (timeline_export.writer("xml"), "application/xml", "xml"),
    "timeline.edl": (timeline_export.writer("edl"), "text/plain", "edl"),
    "timeline.zip": (timeline_export.export_timeline_zip, "application/zip", "timeline.zip"),
    "storyboarder.zip": (storyboarder.export_project, "application/zip", "storyboarder.zip"),
}


def export_cut(board_id: str, name: str):
    return _export(board_id, *_CUT_EXPORTS[name])


for _name in _CUT_EXPORTS:  # one route each, so each is its own path in the OpenAPI document
    exports.add_url_rule(f"/api/storyboards/<board_id>/{_name}", f"export_{_name.replace('.', '_')}", export_cut,
                     defaults={"name": _name})


@exports.post("/api/storyboards/<board_id>/animatic")
def start_animatic(board_id: str):
    """Start writing the board's animatic MP4 (animatic_jobs.py): 202 and the job to follow."""
    from animatic import DEFAULT_RESOLUTION, RESOLUTIONS, AnimaticOptions
    from animatic_jobs import Busy

    fields = json_body(required=False) or {}
    if not isinstance(fields, dict):
        raise InputError("body", "Send a JSON object: resolution, push_in, burn_in.")
    options = AnimaticOptions(resolution=choice_field(fields, "resolution", tuple(RESOLUTIONS), DEFAULT_RESOLUTION),
                              push_in=bool_field(fields, "push_in", False), burn_in=bool_field(fields, "burn_in", False))
    studio = current_studio()
    board, images, _references, _layouts = _export_parts(board_id)  # the snapshot: the board now, its files opened now
    try:
        job = studio.animatics.start(board, images, options)
    except Busy:
        raise _busy(studio) from None
    return jsonify(animatic_json(job)), 202


def _animatic_or_404(board_id: str, job_id: str):
    job = current_studio().animatics.get(board_id, job_id)
    if job is None:
        abort(404)
    return job


@exports.get("/api/storyboards/<board_id>/animatics/<job_id>")
def animatic_status(board_id: str, job_id: str):
    return jsonify(animatic_json(_animatic_or_404(board_id, job_id)))


@exports.post("/api/storyboards/<board_id>/animatics/<job_id>/cancel")
def cancel_animatic(board_id: str, job_id: str):
    job = _animatic_or_404(board_id, job_id)
    current_studio().animatics.cancel(job)
    return jsonify(animatic_json(job)), 202


@exports.get("/api/storyboards/<board_id>/animatics/<job_id>/animatic.mp4")
def animatic_file(board_id: str, job_id: str):
    from animatic_jobs import JobState

    job = _animatic_or_404(board_id, job_id)
    if job.state is not JobState.DONE:
        raise InputError("animatic", f"The animatic is {job.state.value}, not written: nothing to download.",
                         status=409)
    try:  # opened now: a later animatic of the board may remove the file, not this download's copy
        return send_file(job.path, mimetype="video/mp4", as_attachment=True,
                         download_name=f"storyboard-{board_id}.mp4")
    except FileNotFoundError:
        abort(404)
