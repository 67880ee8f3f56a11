"""A panel's layout in the API: read from requests, stored, served.

    POST /api/storyboards                   panels[i].layout (a sketch as a data URL or the form
                                            file layout_<i>; a pose as keypoints per character)
    POST .../frames/<n>/regenerate          {"layout": ... | null}: redraw with it (null: without)
    PATCH .../frames/<id>                   {"layout": ... | null}: the panel's layout, not drawn yet
    GET  .../frames/<id>/layout.png         the panel's layout picture (the sketch, or the pose drawn)
    GET  .../frames/<id>/takes/<t>/layout.png   the one a take was drawn with

Registered by ``app.create_app``; the reading helpers are called from app.py's create, redraw
and edit routes. Every input error is an ``errors.InputError`` naming the field.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from board_lookup import frame_of, send_png, take_of
from config import ASPECTS
from errors import InputError
from layouts import POSE, Layout, read_layout
from prompt_enhancer import StoryPlan
from studio import current_studio
from web_input import json_list_field

layouts = Blueprint("layouts", __name__)

# A layout's picture is kept at the panel's aspect, its longer side this long.
LAYOUT_SIDE = 1024


def layout_size(aspect: str) -> tuple[int, int]:
    """The size a layout of a panel of ``aspect`` is normalised and drawn at."""
    width, height = ASPECTS[aspect]
    scale = LAYOUT_SIDE / max(width, height)
    return round(width * scale), round(height * scale)


def stored(layout: Layout | None, aspect: str) -> tuple[dict, bytes] | None:
    """A layout as the store takes it: its JSON and its picture."""
    return None if layout is None else (layout.to_json(), layout.png(*layout_size(aspect)))


def plan_layouts(fields: dict, plan: StoryPlan, aspect: str) -> dict[int, tuple[dict, bytes]]:
    """Each planned panel's layout (by 1-based panel id) from a create request's ``panels``;
    the form's files ``layout_<i>`` are sketches of panel i (0-based, as the field names)."""
    raw = json_list_field(fields, "panels", '{"caption", "scene", "shot"}')
    uploads = _uploads()
    if raw is None:
        if uploads:
            index = min(uploads)
            raise InputError(f"layout_{index}", f"layout_{index} has no panel: a layout goes with the panels list.")
        return {}
    extra = [i for i in uploads if i >= len(raw)]
    if extra:
        raise InputError(f"layout_{extra[0]}", f"layout_{extra[0]} has no panel: the board has {len(raw)}.")
    found = {}
    for i, (item, panel) in enumerate(zip(raw, plan.panels)):
        layout = read_layout(item.get("layout") if isinstance(item, dict) else None, f"panels[{i}].layout",
                             panel.cast, uploads.get(i), layout_size(aspect))
        if layout is not None:
            found[i + 1] = stored(layout, aspect)
    return found


def _uploads() -> dict[int, bytes]:
    """A multipart form's layout files, by 0-based panel index."""
    if request.mimetype != "multipart/form-data":
        return {}
    files = {}
    for name, upload in request.files.items():
        number = name.removeprefix("layout_")
        if name.startswith("layout_") and number.isdigit() and upload.filename:
            files[int(number)] = upload.read()
            if not files[int(number)]:
                raise InputError(name, f"{name} is empty: choose a drawing (PNG, JPEG or WebP).")
    return files


def redraw_layout(body: dict, board: dict, frame: dict, cast: tuple[str, ...] | None) -> Any:
    """What a redraw does with the panel's layout: KEEP it (no ``layout`` in the body), drop it
    (null) or a new one (read against the cast it is redrawn with). A kept pose must still
    place exactly that cast."""
    from storage import KEEP

    names = frame["cast"] if cast is None else cast
    if "layout" not in body:
        kept = frame["layout"]
        if kept and kept["kind"] == POSE and {p["character"] for p in kept["poses"]} != set(names):
            raise InputError("layout", "The panel's pose places other characters than it is redrawn with: "
                                       "send a new layout (or null for none).")
        return KEEP
    aspect = board["params"].aspect
    return stored(read_layout(body["layout"], "layout", names, None, layout_size(aspect)), aspect)


def edited_layout(raw: Any, board: dict, frame: dict) -> tuple[dict, bytes] | None:
    """A panel's new layout from the edit route (null: none), read against its cast."""
    aspect = board["params"].aspect
    return stored(read_layout(raw, "layout", frame["cast"], None, layout_size(aspect)), aspect)


def layout_pngs(board: dict) -> dict[int, bytes]:
    """Each panel's layout picture, by index (1-based, display order), for the exports."""
    store = current_studio().store
    pngs = {}
    for index, frame in enumerate(board["frames"], start=1):
        path = store.file_path(board["id"], frame["layout"]["file"]) if frame.get("layout") else None
        if path is not None:
            pngs[index] = path.read_bytes()
    return pngs


@layouts.get("/api/storyboards/<board_id>/frames/<int:frame_id>/layout.png")
def layout_image(board_id: str, frame_id: int):
    return send_png(board_id, lambda board: _file(frame_of(board, frame_id)["layout"]))


@layouts.get("/api/storyboards/<board_id>/frames/<int:frame_id>/takes/<int:take_id>/layout.png")
def take_layout_image(board_id: str, frame_id: int, take_id: int):
    return send_png(board_id, lambda board: _file(take_of(frame_of(board, frame_id), take_id)["layout"]))


def _file(layout: dict | None) -> str | None:
    return layout["file"] if layout else None
