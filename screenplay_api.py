"""The screenplay route: a Fountain script in, its scenes as editable plans out (nothing is
drawn or stored).

    POST /api/screenplays   JSON {"text", "characters"?: [{"name", "traits"}]}, or a form with
                            the file ``file`` (or the field ``text``) and ``characters`` as JSON
        -> {"title", "scenes": [{"number", "heading", "setting", "location", "time", "story",
                                 "characters", "source", "notices", "panels"}]}

A board is made from a scene the one way every board is: POST /api/storyboards with the
scene's ``story``, ``characters`` (traits filled in) and ``panels``. Registered by
``app.create_app``; every input error is an ``errors.InputError``.
"""

from __future__ import annotations

import dataclasses

from flask import Blueprint, jsonify, request

from board_params import read_cast
from errors import InputError
from plans_api import plan_json
from screenplay import Scene, read_screenplay
from studio import current_studio
from web_input import form_fields, json_body, json_list_field

screenplays = Blueprint("screenplays", __name__)

SOURCE_SCREENPLAY = "screenplay"  # a scene's plan's source


@screenplays.post("/api/screenplays")
def read_script():
    limit = current_studio().settings.max_screenplay_chars
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields, files = form_fields()
        upload = files.get("file")
        if upload is not None and upload.filename:
            field, text = "file", script_text(upload.read(), "file", limit)
        else:
            field, text = "text", fields.get("text")
    else:
        fields = json_body()
        if not isinstance(fields, dict):
            raise InputError("body", "Send a JSON object: {\"text\": \"INT. KITCHEN - NIGHT ...\"}, or a form "
                                     "with the file.")
        field, text = "text", fields.get("text")
    if field == "text":
        if not isinstance(text, str) or not text.strip():
            raise InputError("text", "Paste a screenplay (Fountain) or upload its file.")
        text = script_text(text, "text", limit)
    cast = read_cast(json_list_field(fields, "characters", '{"name", "traits"}'), planning=True)
    script = read_screenplay(text, cast, field=field)
    return jsonify(title=script.title, scenes=[scene_json(scene) for scene in script.scenes])


def script_text(data: bytes | str, field: str, limit: int) -> str:
    """The script as text: UTF-8 (a byte-order mark allowed), no NUL (a binary file), at most
    ``limit`` characters. Raises InputError naming ``field``."""
    if isinstance(data, bytes):
        if b"\x00" in data:
            raise InputError(field, "This file is binary, not a screenplay: upload the .fountain (plain text) file.")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(field, "The file is not UTF-8 text: save the screenplay as Fountain (UTF-8).") from None
    if "\x00" in data:
        raise InputError(field, "The text holds NUL characters: it is binary, not a screenplay.")
    if len(data) > limit:
        raise InputError(field, f"The screenplay is too long ({len(data)} characters; at most {limit}, "
                                "STORYBOARD_MAX_SCREENPLAY_CHARS). Send the scenes to draw.")
    return data


def scene_json(scene: Scene) -> dict:
    """A scene as an editable plan: the page puts its panels in the plan editor and its
    characters in the cast, and draws it through POST /api/storyboards."""
    plan = dataclasses.replace(scene.plan, source=SOURCE_SCREENPLAY)
    return {
        **plan_json(plan, planned_with_cast=bool(scene.cast)),
        "number": scene.number,
        "heading": scene.heading,
        "setting": scene.setting,
        "location": scene.location,
        "time": scene.time,
        # The board's story (its title is the first line): the heading, else the first caption.
        "story": scene.heading or scene.plan.panels[0].caption,
        "characters": [{"name": c.name, "traits": c.traits} for c in scene.cast],
    }
