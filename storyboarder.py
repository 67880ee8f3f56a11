"""Storyboarder projects (wonderunit/storyboarder, the format of its 3.0.0 source): out, a ZIP
of a project folder that Storyboarder opens so an artist can draw over the generated panels;
in, a zipped project's boards read back as panels (their text and durations, and what was
drawn on their drawing layers as each panel's sketch layout).

The format, as Storyboarder 3.0.0 writes it (src/js/main.js "new project",
src/js/window/main-window.js insertNewBoardDataAtPosition / insertNewBoardsWithFiles /
updateSceneTiming / verifyScene, src/js/models/board.js)::

    <name>/<name>.storyboarder   {version, aspectRatio, fps, defaultBoardTiming (ms), boards: [...]}
    <name>/images/board-<n>-<uid>-reference.png   a layer (what "Import Images to New Boards" makes)
    <name>/images/board-<n>-<uid>-thumbnail.png   the drawer's thumbnail (verifyScene wants it)
    <name>/images/board-<n>-<uid>-posterframe.jpg the board flattened on white (onion skin, print)

A board: {uid (5 of [0-9A-Z]), url "board-<n>-<uid>.png", newShot, lastEdited (ms), layers
{name: {url, opacity}}, number, shot "<n>A", time (ms from the start), duration (ms),
dialogue, action, notes}. The ``url`` file itself is not written: Storyboarder reads a board
whose url file exists and that has no ``fill`` layer as a pre-1.6 project and migrates it.
The panel goes on the ``reference`` layer, as Storyboarder's own image import puts it, so the
artist draws on the layers above it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import posixpath
import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Mapping

from PIL import Image

from cut import Cut
from errors import InputError

STORYBOARDER_VERSION = "3.0.0"  # the version whose source this follows, written as its files say
LAYER = "reference"
_UID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# What a project may hold before it is read: entries, and bytes once inflated (a zip bomb
# declares small sizes and inflates to gigabytes: reading stops at the limit, whatever it says).
MAX_ENTRIES = 2000
MAX_PROJECT_BYTES = 512 * 1024 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024
log = logging.getLogger(__name__)


# --- Out ------------------------------------------------------------------------------


def _uid(cut: Cut, frame_id: int) -> str:
    """A board's uid: Storyboarder's shape (5 base-36 capitals), the same at every export."""
    digest = int.from_bytes(hashlib.sha256(f"{cut.board_id}/{frame_id}".encode()).digest()[:8], "big")
    return "".join(_UID_CHARS[(digest >> (6 * i)) % 36] for i in range(5))


def image_size(aspect_ratio: float) -> tuple[int, int]:
    """The drawing's size in Storyboarder (models/board.js boardFileImageSize): 900 high."""
    return (round(900 * aspect_ratio), 900) if aspect_ratio >= 1 else (900, round(900 / aspect_ratio))


def project(cut: Cut, created_ms: int = 0) -> dict:
    """The ``.storyboarder`` JSON of ``cut``."""
    aspect = cut.aspect[0] / cut.aspect[1]
    boards = []
    for panel in cut.panels:
        uid = _uid(cut, panel.frame_id)
        url = f"board-{panel.number}-{uid}.png"
        notes = "\n".join(part for part in (
            f"shot: {panel.shot}" if panel.shot else "", f"seed: {panel.seed}" if panel.seed is not None else "",
            f"prompt: {panel.prompt}" if panel.prompt else "") if part)
        boards.append({
            "uid": uid, "url": url, "newShot": False, "lastEdited": created_ms,
            "layers": {LAYER: {"url": url.replace(".png", f"-{LAYER}.png"), "opacity": 1.0}},
            "number": panel.number, "shot": f"{panel.number}A",
            "time": round(cut.seconds_at(panel.start) * 1000), "duration": round(cut.seconds_at(panel.frames) * 1000),
            "dialogue": panel.dialogue, "action": panel.caption, "notes": notes,
        })
    return {"version": STORYBOARDER_VERSION, "aspectRatio": aspect, "fps": cut.fps,
            "defaultBoardTiming": 2000, "boards": boards}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _fitted(png: bytes | None, size: tuple[int, int]) -> Image.Image:
    """The panel at the drawing's size (letterboxed on white if its aspect differs), or white."""
    canvas = Image.new("RGB", size, "white")
    if not png:
        return canvas
    try:
        with Image.open(io.BytesIO(png)) as source:
            scale = min(size[0] / source.width, size[1] / source.height)
            picture = source.convert("RGB").resize((round(source.width * scale), round(source.height * scale)),
                                                   Image.LANCZOS)
    except Exception:  # noqa: BLE001 - a damaged file: a blank board to draw on, the rest exported
        log.warning("a panel's image could not be read; its Storyboarder board is blank")
        return canvas
    canvas.paste(picture, ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return canvas


def folder_name(cut: Cut) -> str:
    return f"storyboard-{cut.board_id}" if cut.board_id else "storyboard"


def project_zip(cut: Cut, images: Mapping[int, bytes], out: BinaryIO, created_ms: int = 0) -> None:
    """A ZIP of the project folder: the JSON and, per board, its layer, thumbnail and poster
    frame (one panel in memory at a time)."""
    data = project(cut, created_ms)
    name = folder_name(cut)
    size = image_size(data["aspectRatio"])
    thumb = (int(60 * data["aspectRatio"]) * 2, 120)  # main-window.js getThumbnailSize
    # Dated when the board was made (ZIP's dates start in 1980): the same board, the same bytes.
    stamp = max(time.gmtime(created_ms / 1000)[:6], (1980, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(out, "w") as archive:

        def put(path: str, content: bytes | str, compress: int = zipfile.ZIP_STORED) -> None:
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.compress_type = compress
            archive.writestr(info, content)

        put(f"{name}/{name}.storyboarder", json.dumps(data, ensure_ascii=False, indent=2), zipfile.ZIP_DEFLATED)
        for panel, board in zip(cut.panels, data["boards"]):
            picture = _fitted(images.get(panel.number), size)
            stem = f"{name}/images/{board['url'][:-4]}"
            put(f"{stem}-{LAYER}.png", _png(picture))
            put(f"{stem}-thumbnail.png", _png(picture.resize(thumb, Image.BILINEAR)))
            poster = io.BytesIO()
            picture.save(poster, format="JPEG", quality=85)
            put(f"{stem}-posterframe.jpg", poster.getvalue())
            picture.close()


def export_project(board: Mapping[str, Any], images: Mapping[int, bytes], references: Any = None, *,
                   out: BinaryIO) -> None:
    """The studio's export route's writer (``write(board, images, references=..., out=...)``)."""
    project_zip(Cut.from_board(board), images, out, created_ms=_created_ms(board))


def _created_ms(board: Mapping[str, Any]) -> int:
    from exporting import board_date  # one reading of the board's date for every export

    return int(board_date(board).timestamp() * 1000)


# --- In -------------------------------------------------------------------------------


# The layers an artist draws on, bottom to top (StoryboarderSketchPane's order); the reference
# layer holds an imported picture (the studio's own panel, in its exports) and is not a drawing.
DRAWING_LAYERS = ("fill", "tone", "pencil", "ink")
MAX_LAYER_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ImportedBoard:
    caption: str
    dialogue: str
    notes: str
    duration: float | None  # seconds; None: the project's default
    drawing: bytes | None = None  # its drawing layers flattened on white (PNG); None: nothing drawn


@dataclass(frozen=True)
class ImportedProject:
    name: str
    aspect_ratio: float
    fps: float
    default_duration: float  # seconds
    boards: tuple[ImportedBoard, ...]

    def panels(self) -> list[dict]:
        """The boards as a plan's panels (POST /api/storyboards ``panels``): the action is the
        caption, under it the dialogue; a board with only dialogue or notes takes that."""
        return [{"caption": board.caption or board.dialogue or board.notes or f"Board {n}",
                 "dialogue": board.dialogue if board.caption else "",
                 # A drawing becomes the panel's sketch layout: the new panel follows its composition.
                 **({"layout": {"kind": "sketch", "image": "data:image/png;base64,"
                                + base64.b64encode(board.drawing).decode("ascii")}} if board.drawing else {})}
                for n, board in enumerate(self.boards, start=1)]


def _refuse(message: str) -> InputError:
    return InputError("project", message)


def _safe_member(name: str) -> str:
    """``name`` as a path inside the archive; absolute paths, drive letters, backslashes and
    ``..`` are refused (nothing is extracted, but a project that names them is not one)."""
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise _refuse(f"The project names a path outside its folder: {name!r}.")
    parts = name.split("/")
    if ".." in parts:
        raise _refuse(f"The project names a path outside its folder: {name!r}.")
    return posixpath.normpath(name)


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The entry's bytes, refusing it as soon as it inflates past ``limit``, or when it cannot
    be read (damaged, encrypted, compressed in a way Python's zipfile does not know)."""
    try:
        with archive.open(info) as entry:
            data = entry.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as error:
        raise _refuse(f"{info.filename} cannot be read from the ZIP ({error}).") from None
    if len(data) > limit:
        raise _refuse(f"{info.filename} is larger than {limit // (1024 * 1024)} MB once unpacked.")
    return data


def read_project(data: bytes | BinaryIO, max_boards: int) -> ImportedProject:
    """A zipped Storyboarder project's boards (``data``: its bytes, or a seekable file, as an
    upload is spooled). Raises InputError (field ``project``) naming
    what is wrong: not a ZIP, no or several ``.storyboarder`` files, a path outside the
    project's folder, a layer image that is missing, too many boards, too large unpacked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _refuse("The file is not a ZIP: zip the Storyboarder project's folder and upload that.") from None
    if len(infos) > MAX_ENTRIES:
        raise _refuse(f"The ZIP holds {len(infos)} files; a project may hold at most {MAX_ENTRIES}.")
    members = {_safe_member(info.filename): info for info in infos if not info.is_dir()}
    if sum(info.file_size for info in members.values()) > MAX_PROJECT_BYTES:
        raise _refuse(f"The project is larger than {MAX_PROJECT_BYTES // (1024 * 1024)} MB unpacked.")
    found = sorted(name for name in members if name.endswith(".storyboarder"))
    if len(found) != 1:
        raise _refuse("The ZIP holds no .storyboarder file." if not found else
                      f"The ZIP holds {len(found)} .storyboarder files ({', '.join(found[:3])}): upload one scene.")
    folder = posixpath.dirname(found[0])
    try:
        scene = json.loads(_read(archive, members[found[0]], MAX_JSON_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _refuse(f"{found[0]} is not Storyboarder's JSON: {error}.") from None
    boards = scene.get("boards") if isinstance(scene, dict) else None
    if not isinstance(boards, list) or not boards:
        raise _refuse(f"{found[0]} has no boards.")
    if len(boards) > max_boards:
        raise _refuse(f"{found[0]} has {len(boards)} boards; a board here holds at most {max_boards} panels: "
                      "split the scene in Storyboarder, or delete boards from a copy.")
    imported = []
    total = 0
    for number, board in enumerate(boards, start=1):
        if not isinstance(board, dict):
            raise _refuse(f"Board {number} of {found[0]} is not an object.")
        layers = board.get("layers") or {}
        drawn = []
        for name, layer in (layers.items() if isinstance(layers, dict) else ()):
            url = layer.get("url") if isinstance(layer, dict) else None
            if not isinstance(url, str) or not url:
                continue
            path = posixpath.join(folder, "images", _safe_member(url))
            if posixpath.dirname(path) != posixpath.join(folder, "images"):
                raise _refuse(f"Board {number} names an image outside the project's images folder: {url!r}.")
            if path not in members:
                raise _refuse(f"Board {number}'s image {url} is missing from the ZIP (looked for {path}).")
            data = _read(archive, members[path], MAX_PROJECT_BYTES - total)  # inflates within the limit
            total += len(data)
            if name in DRAWING_LAYERS:
                drawn.append((DRAWING_LAYERS.index(name), path, data, _number(layer.get("opacity"), 1.0)))
        imported.append(ImportedBoard(
            caption=_text(board.get("action")), dialogue=_text(board.get("dialogue")), notes=_text(board.get("notes")),
            duration=_seconds(board.get("duration")), drawing=_flattened(sorted(drawn))))
    return ImportedProject(
        name=posixpath.basename(found[0])[: -len(".storyboarder")],
        aspect_ratio=_number(scene.get("aspectRatio"), 16 / 9), fps=_number(scene.get("fps"), 24.0),
        default_duration=_seconds(scene.get("defaultBoardTiming")) or 2.0, boards=tuple(imported))


def _flattened(layers: list[tuple[int, str, bytes, float]]) -> bytes | None:
    """The drawing layers (order, path, PNG, opacity), bottom first, on white paper as
    Storyboarder shows them; None when none has a stroke."""
    paper = None
    for _order, path, data, opacity in layers:
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_LAYER_PIXELS:
                    raise _refuse(f"{path} is too large ({image.width}x{image.height}; at most 4096x4096).")
                layer = image.convert("RGBA")
        except InputError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError):
            raise _refuse(f"{path} is not a readable image.") from None
        if layer.getchannel("A").getbbox() is None:  # an empty layer: Storyboarder saves them too
            continue
        if paper is None:
            paper = Image.new("RGBA", layer.size, "white")
        if layer.size != paper.size:
            layer = layer.resize(paper.size)
        if opacity < 1:
            layer.putalpha(layer.getchannel("A").point(lambda alpha: round(alpha * min(opacity, 1.0))))
        paper.alpha_composite(layer)
    return None if paper is None else _png(paper.convert("RGB"))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _number(value: Any, default: float) -> float:
    """A number that old projects may have stored as text ("2001")."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 and number == number and number != float("inf") else default


def _seconds(milliseconds: Any) -> float | None:
    number = _number(milliseconds, 0.0)
    return number / 1000 if number else None
