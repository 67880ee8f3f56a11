"""Export a finished storyboard: a ZIP of panels + JSON, a printable PDF, and PNGs that
carry their own generation parameters.

Everything here is a pure function of the board dict (as ``GET /api/storyboards/<id>``
returns it) and the image bytes, so the web layer, CLI tools and tests share one code
path. Panel numbers are positions in ``board["frames"]`` (already in display order), so
``panel-04.png`` in the ZIP is the panel labelled "4" in the PDF.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import unicodedata
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from fpdf import FPDF
from PIL import Image
from PIL.PngImagePlugin import PngInfo

log = logging.getLogger(__name__)

FONT_PACKAGE_HINT = (
    "install DejaVu Sans (Debian/Ubuntu: `apt-get install fonts-dejavu-core`; "
    "Fedora: `dnf install dejavu-sans-fonts`; macOS: `brew install --cask font-dejavu`) "
    "or pass font_path="
)

# A fixed fallback date keeps exports byte-identical when the board has no usable date.
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def board_date(board: Mapping[str, Any]) -> datetime:
    """When the board was made (its created_at), the one date every export shows."""
    raw = board.get("created_at")
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            log.debug("unparsable created_at %r; using fixed date", raw)
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return _EPOCH


def _panel_file(position: int) -> str:
    return f"panel-{position:02d}.png"


# --- ZIP ------------------------------------------------------------------------------


def _reference_file(character: int) -> str:
    return f"reference-{character}.png"


def _layout_file(position: int) -> str:
    return f"layout-{position:02d}.png"


def storyboard_zip(
    board: Mapping[str, Any], images: Mapping[int, bytes], references: Mapping[int, bytes] | None = None,
    out: BinaryIO | None = None, layouts: Mapping[int, bytes] | None = None,
) -> bytes | None:
    """ZIP with ``panel-NN.png`` per frame that has an image, ``layout-NN.png`` per frame with a
    layout in ``layouts`` (by index: its sketch, or its pose drawn), ``reference-K.png`` per
    character K (1-based) with a reference in ``references``, and ``storyboard.json`` (the
    whole board, each frame, its layout and each character's reference annotated with its ``file``).

    Written to ``out`` when given (the studio spools an export to a file, taking each image
    from ``images`` as it goes: one in memory at a time, see :class:`PanelFiles`), else
    returned."""
    meta = copy.deepcopy(dict(board))
    stamp = board_date(board).timetuple()[:6]
    stamp = max(stamp, (1980, 1, 1, 0, 0, 0))  # ZIP cannot store dates before 1980
    buf = io.BytesIO() if out is None else out
    with zipfile.ZipFile(buf, "w") as zf:

        def put(name: str, data: bytes, compress: int) -> None:
            # Fixed timestamps so the same board always yields the same archive.
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = compress
            zf.writestr(info, data)

        for position, frame in enumerate(meta.get("frames") or [], start=1):
            data = images.get(frame.get("index"))
            frame["file"] = _panel_file(position) if data else None
            if data:
                put(frame["file"], data, zipfile.ZIP_STORED)  # PNG is already compressed
            layout = (layouts or {}).get(frame.get("index"))
            if layout and isinstance(frame.get("layout"), dict):
                frame["layout"]["file"] = _layout_file(position)
                put(frame["layout"]["file"], layout, zipfile.ZIP_STORED)
        characters = meta.get("characters") or []
        for character, data in sorted((references or {}).items()):
            name = _reference_file(character)
            put(name, data, zipfile.ZIP_STORED)
            if character <= len(characters) and isinstance(characters[character - 1].get("reference"), dict):
                characters[character - 1]["reference"]["file"] = name
            if character == 1 and isinstance(meta.get("reference"), dict):
                meta["reference"]["file"] = name
        text = json.dumps(meta, ensure_ascii=False, indent=2, default=str)
        put("storyboard.json", text.encode("utf-8"), zipfile.ZIP_DEFLATED)
    return buf.getvalue() if out is None else None


class PanelFiles(Mapping[int, bytes]):
    """Each panel's PNG by position, read when asked from a file opened when the export began
    (a redraw or a delete meanwhile cannot take it away): an export holds one image at a
    time, not the whole board. Close it after."""

    def __init__(self, files: Mapping[int, BinaryIO]):
        self._files = dict(files)

    def __getitem__(self, index: int) -> bytes:
        file = self._files[index]
        file.seek(0)
        return file.read()

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def close(self) -> None:
        for file in self._files.values():
            file.close()


# --- PDF ------------------------------------------------------------------------------


def _font_candidates() -> list[Path]:
    home = Path.home()
    return [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),  # Debian / Ubuntu
        Path("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf"),  # Fedora
        Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),  # older Fedora / openSUSE
        Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),  # Arch
        Path("/usr/local/share/fonts/DejaVuSans.ttf"),
        home / ".local/share/fonts/DejaVuSans.ttf",
        home / ".fonts/DejaVuSans.ttf",
        Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),  # Debian fonts-noto-core
        Path("/usr/share/fonts/noto/NotoSans-Regular.ttf"),  # Arch
        Path("/usr/share/fonts/google-noto/NotoSans-Regular.ttf"),  # Fedora
        home / "Library/Fonts/DejaVuSans.ttf",  # macOS, user-installed
        Path("/Library/Fonts/DejaVuSans.ttf"),
        Path("/Library/Fonts/Arial Unicode.ttf"),
        Path("/System/Library/Fonts/Supplemental/Arial Unicode.ttf"),
        Path("C:/Windows/Fonts/DejaVuSans.ttf"),
        home / "AppData/Local/Microsoft/Windows/Fonts/DejaVuSans.ttf",
        Path("C:/Windows/Fonts/ARIALUNI.TTF"),
        Path("C:/Windows/Fonts/NotoSans-Regular.ttf"),
    ]


def find_unicode_font(candidates: Iterable[str | Path] | None = None) -> Path:
    """First existing TrueType font with wide script coverage (Latin, Cyrillic, Greek...).

    The PDF core fonts are Latin-1 only, so captions in other scripts need one of these.
    """
    paths = [Path(p) for p in (_font_candidates() if candidates is None else candidates)]
    for path in paths:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "No Unicode TrueType font found for the PDF export (looked in: "
        + (", ".join(str(p) for p in paths) or "no locations")
        + f"); {FONT_PACKAGE_HINT}"
    )


# Scripts the main font lacks (DejaVu has Latin, Cyrillic, Greek, Arabic, Hebrew), drawn glyph by
# glyph from the first of these found: (family, where each system puts it, face in a collection,
# the package that installs it).
_FALLBACK_FONTS = (
    ("CJK", ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian / Ubuntu
             "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch
             "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),  # Fedora
     2, "fonts-noto-cjk"),  # face 2: Simplified Chinese (Japanese and Korean glyphs too)
    ("Devanagari", ("/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf",  # Debian fonts-lohit-deva
                    "/usr/share/fonts/truetype/noto/NotoSansDevanagari-Regular.ttf"),  # Debian fonts-noto-core
     0, "fonts-lohit-deva"),
    # For a main font without them (Noto Sans): DejaVu has both.
    ("Arabic", ("/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",), 0, "fonts-noto-core"),
    ("Hebrew", ("/usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf",), 0, "fonts-noto-core"),
)


def find_fallback_fonts() -> list[tuple[str, Path, int]]:
    """(family, file, face) of each fallback font installed here, in the order they are tried."""
    found = []
    for family, paths, face, _package in _FALLBACK_FONTS:
        path = next((Path(p) for p in paths if Path(p).is_file()), None)
        if path is not None:
            found.append((family, path, face))
    return found


@functools.cache
def font_code_points(path: str, face: int) -> frozenset[int]:
    """The characters a font file has (its best cmap, as fpdf2 reads it), read once a process:
    a CJK collection's is ~45,000 entries and takes a second."""
    from fontTools.ttLib import TTFont

    with TTFont(path, fontNumber=face, lazy=True) as font:
        return frozenset(font.getBestCmap() or ())


def undrawable_scripts(texts: Iterable[str], font_path: str | Path | None = None,
                       fallback_fonts: Iterable[tuple[str, str | Path, int]] | None = None) -> list[str]:
    """The scripts (Unicode's names: "CJK", "DEVANAGARI") of characters in ``texts`` that no font
    the PDF draws with has: the main font, then the fallbacks (defaults as in :func:`storyboard_pdf`).
    A fallback's file is read only when characters are left that the fonts before it lack."""
    left = {c for text in texts for c in text if unicodedata.category(c)[0] not in "ZC"}  # spaces, controls
    fonts = [(font_path or find_unicode_font(), 0)]
    fonts += [(path, face) for _family, path, face in
              (find_fallback_fonts() if fallback_fonts is None else fallback_fonts)]
    for path, face in fonts:
        if not left:
            break
        covered = font_code_points(str(path), face)
        left = {c for c in left if ord(c) not in covered}
    scripts = []
    for char in sorted(left):
        script = unicodedata.name(char, "UNKNOWN").split()[0]
        if script not in scripts:
            scripts.append(script)
    return scripts


def _board_texts(board: Mapping[str, Any]) -> list[str]:
    """Every text of the board the PDF draws."""
    texts = [str(board.get(key) or "") for key in ("title", "style")]
    for frame in board.get("frames") or []:
        texts += [str(frame.get(key) or "") for key in ("caption", "dialogue", "shot")]
        texts += [str(name) for name in frame.get("cast") or []]
    for character in board.get("characters") or []:
        texts += [str(character.get("name") or ""), str(character.get("traits") or "")]
    return texts


def _missing_script_notice(scripts: list[str], where: str = "below") -> str:
    names = {"CJK": "Chinese/Japanese", "DEVANAGARI": "Hindi (Devanagari)"}
    packages = sorted({package for family, _paths, _face, package in _FALLBACK_FONTS if family.upper() in scripts})
    return ("Text in " + ", ".join(names.get(s, s.capitalize()) for s in scripts)
            + f" cannot be drawn with the fonts on this machine and is missing {where}"
            + (f": install {', '.join(packages)}" if packages else "") + ".")


def pdf_notice(board: Mapping[str, Any]) -> str | None:
    """For the page, beside the PDF link: what the board's PDF will say at its top about text
    it cannot draw, or None when every text can be drawn (or no font is found: the export says so)."""
    try:
        scripts = undrawable_scripts(_board_texts(board))
    except FileNotFoundError:
        return None
    return _missing_script_notice(scripts, "from the PDF") if scripts else None


# A4 landscape, millimetres.
_PAGE_W, _PAGE_H, _MARGIN = 297.0, 210.0, 10.0
_COLS, _ROWS, _GUTTER = 3, 2, 6.0
_HEADER_H = 20.0
_LABEL_H, _CAPTION_LINE_H, _CAPTION_LINES = 6.0, 4.2, 3
# Under the label: who is in the panel (two lines of small type, more taken from the caption
# when a cast of long names needs them), then the caption and the dialogue.
_CAST_LINE_H, _CAST_LINES, _CAST_SIZES = 3.4, 2, (7.5, 6.5, 5.5)
_BELOW_LABEL_H = _CAST_LINE_H * _CAST_LINES + _CAPTION_LINE_H * _CAPTION_LINES
_TEXT_H = 1.5 + _LABEL_H + _BELOW_LABEL_H

_STATUS_WORDS = {
    "failed": "Generation failed",
    "pending": "Not generated yet",
    "queued": "Queued",
    "running": "Generating…",
    "canceled": "Canceled",
    "done": "Image missing",
}


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ran(images: Iterable[bytes]) -> dict[str, list]:
    """What really drew the panels, from their PNGs (drawing._deliver writes it there): each
    fact's distinct values (a cast's panels run at a clamped IP-Adapter scale of their own)."""
    values: dict[str, list] = {}
    for data in images:
        try:
            meta = read_png_parameters(data)
        except Exception:  # noqa: BLE001 - a damaged file says nothing; the panel is marked on its page
            continue
        for key in ("steps", "guidance_scale", "sampler", "lora", "ip_adapter_scale"):
            if meta.get(key) is not None and meta[key] not in values.setdefault(key, []):
                values[key].append(meta[key])
    return values


def _settings_line(board: Mapping[str, Any], ran: Mapping[str, list] | None = None) -> str:
    """The board's mode (its label, as the page names it), date, style, identity lock and the
    settings really used: what the panels' PNGs say drew them (``ran``), else the board's
    settings; with the identity lock off no IP-Adapter scale applied. Each panel's own seed is
    in its footer (a redrawn panel's is not the board's)."""
    settings = board.get("settings") or {}
    ran = ran or {}
    parts = []
    mode = board.get("mode") or settings.get("preset")
    if mode:
        parts.append(str(mode))
    if board.get("created_at"):
        parts.append(board_date(board).strftime("%d %b %Y"))
    if board.get("style"):
        parts.append(f"style: {board['style']}")
    lock_off = settings.get("identity_lock") is False
    if settings.get("identity_lock") is True:
        parts.append("identity lock on")
    for key, label in (("steps", "{} steps"), ("guidance_scale", "CFG {}"),
                       ("sampler", "{}"), ("lora", "{} LoRA"), ("ip_adapter_scale", "IP scale {}")):
        if key == "ip_adapter_scale" and lock_off:
            continue
        if ran.get(key):
            parts.append(label.format("/".join(_fmt(value) for value in ran[key])))
        elif settings.get(key) is not None:
            parts.append(label.format(_fmt(settings[key])))
    if lock_off:
        parts.append("identity lock off")
    if settings.get("width") and settings.get("height"):
        parts.append(f"{settings['width']}×{settings['height']}")
    if settings.get("seed") is not None:
        parts.append(f"board seed {settings['seed']}")
    return "  ·  ".join(parts)


# Only a drifted face is a warning (the page's colour for it); "no face" is a fact about the
# picture (a back view, a wide shot, the tiny demo's noise), shown in the neutral grey.
_CAST_WORDS = {"missing": "not found", "no_reference_face": "no reference face"}
_MATCH_RGB = (30, 120, 50)
_DRIFT_RGB = (138, 90, 0)
_NEUTRAL_GREY = 120


def _status_rgb(status: Any) -> tuple[int, ...]:
    return {"match": _MATCH_RGB, "drift": _DRIFT_RGB}.get(status, (_NEUTRAL_GREY,) * 3)


def _cast_chips(frame: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """Who is in the panel and how each face matched, as (text, colour): one per character of
    a cast (every one, however many), a single face's score, or that no one is in it."""
    identity = frame.get("identity") or {}
    scored = identity.get("characters") or []
    named = [name for name in frame.get("cast") or [] if name]
    if len(scored) > 1:  # a cast: each character's face, by name
        chips = [(_character_identity(c), _status_rgb(c.get("status"))) for c in scored]
        seen = {c.get("name") for c in scored}
        return chips + [(name, _status_rgb(None)) for name in named if name not in seen]
    chips = [(name, _status_rgb(None)) for name in named]
    if identity:
        chips.append((_identity_text(identity), _status_rgb(identity.get("status"))))
    if frame.get("cast") == []:  # chosen on purpose (an establishing shot), not a failed detection
        chips.append(("no one in this panel", _status_rgb(None)))
    return chips


def _flow(pdf: FPDF, chips: list[tuple[str, tuple[int, ...]]], width: float) -> list[list[tuple]]:
    """``chips`` laid out left to right at the current font size, wrapping to ``width``:
    lines of (x offset, text, colour). A chip wider than a line wraps on its own."""
    gap = pdf.get_string_width("   ")
    lines: list[list[tuple]] = []
    line: list[tuple] = []
    end = 0.0
    for text, rgb in chips:
        for piece in pdf.multi_cell(width, text=text, dry_run=True, output="LINES", align="L"):
            piece_w = pdf.get_string_width(piece)
            start = end + gap if line else 0.0
            if line and start + piece_w > width:
                lines.append(line)
                line, start = [], 0.0
            line.append((start, piece, rgb))
            end = start + piece_w
    return lines + [line] if line else lines


def _identity_text(identity: Mapping[str, Any]) -> str:
    """One face's score (a board of one character)."""
    status = str(identity.get("status") or "")
    distance = identity.get("distance")
    if distance is None or status in ("no_face", "none"):
        return "no face" if status in ("no_face", "none", "") else status.replace("_", " ")
    mark = "✓" if status == "match" else "✗"
    return f"face {distance:.2f} {mark} {status.replace('_', ' ')}"


def _character_identity(character: Mapping[str, Any]) -> str:
    name = character.get("name") or "?"
    if character.get("distance") is None:
        return f"{name} {_CAST_WORDS.get(character.get('status'), 'no face')}"
    mark = {"match": "✓", "drift": "✗"}.get(character.get("status"), "")
    return f"{name} {character['distance']:.2f} {mark}".rstrip()


def _clip(pdf: FPDF, text: str, width: float, max_lines: int) -> list[str]:
    """Wrap ``text`` to ``width`` and keep at most ``max_lines``, ellipsizing the last."""
    lines = pdf.multi_cell(width, text=text, dry_run=True, output="LINES", align="L")
    if len(lines) <= max_lines:
        return lines
    kept, last = lines[:max_lines], lines[max_lines - 1]
    while last and pdf.get_string_width(last + "…") > width:
        last = last[:-1]
    kept[-1] = last.rstrip() + "…"
    return kept


def _header(pdf: FPDF, board: Mapping[str, Any], pages: int, ran: Mapping[str, list], notice: str) -> None:
    pdf.set_text_color(20)
    pdf.set_font_size(16)
    title = str(board.get("title") or "Untitled storyboard")
    width = _PAGE_W - 2 * _MARGIN - 25
    pdf.set_xy(_MARGIN, _MARGIN)
    pdf.cell(width, 8, _clip(pdf, title, width, 1)[0])
    pdf.set_font_size(9)
    pdf.set_text_color(110)
    pdf.set_xy(_PAGE_W - _MARGIN - 25, _MARGIN + 1)
    pdf.cell(25, 6, f"{pdf.page_no()} / {pages}", align="R")
    pdf.set_font_size(8)
    # Two lines at most: a long style or many settings wrap rather than run off the page; a
    # script that cannot be drawn takes the second, so the reader knows words are missing.
    for i, line in enumerate(_clip(pdf, _settings_line(board, ran), width, 1 if notice else 2)):
        pdf.set_xy(_MARGIN, _MARGIN + 8.5 + i * 3.5)
        pdf.cell(width, 3.5, line)
    if notice:
        pdf.set_text_color(*_DRIFT_RGB)
        pdf.set_xy(_MARGIN, _MARGIN + 12)
        pdf.cell(width, 3.5, _clip(pdf, notice, width, 1)[0])
    pdf.set_draw_color(200)
    pdf.line(_MARGIN, _MARGIN + _HEADER_H - 4, _PAGE_W - _MARGIN, _MARGIN + _HEADER_H - 4)


def _own_error(frame: Mapping[str, Any], board_error: Any) -> str | None:
    """The panel's error unless it is the board's (a board that failed as a whole marks each
    unfinished panel with it, or with a short "Not drawn: ..."): that is said once, not per panel."""
    error = str(frame.get("error") or "").strip()
    board = str(board_error or "").strip()
    if not error or (board and (error in board or board in error)):
        return None
    return None if error.lower().startswith("not drawn") else error


def _panel(pdf: FPDF, frame: Mapping[str, Any], number: int, image: bytes | None,
           x: float, y: float, cell_w: float, box_h: float, below_label_h: float, board_error: Any = None) -> None:
    """One panel: its picture in ``box_h``, then its label and, in ``below_label_h``, its cast,
    caption and dialogue."""
    pdf.set_draw_color(190)
    damaged = False
    if image:
        try:
            pdf.image(io.BytesIO(image), x=x, y=y, w=cell_w, h=box_h, keep_aspect_ratio=True)
            pdf.rect(x, y, cell_w, box_h)
        except Exception:  # noqa: BLE001 - any unreadable file: export the rest, mark this one
            log.warning("panel %d of %s: its image file is damaged; exported without it", number,
                        frame.get("id"))
            damaged = True
    if not image or damaged:
        pdf.set_fill_color(225)
        pdf.rect(x, y, cell_w, box_h, style="DF")
        status = str(frame.get("status") or "missing")
        error = _own_error(frame, board_error)
        words = _STATUS_WORDS.get(status, status.replace("_", " ").capitalize())
        if status == "failed" and not error:
            words = "Not drawn"
        if damaged:
            words, error = "Image damaged", "Its file could not be read: redraw this panel."
        pdf.set_text_color(90)
        pdf.set_font_size(12)
        pdf.set_xy(x, y + box_h / 2 - 6)
        pdf.cell(cell_w, 6, words, align="C")
        if error:
            pdf.set_font_size(7)
            for i, line in enumerate(_clip(pdf, error, cell_w - 8, 2)):
                pdf.set_xy(x + 4, y + box_h / 2 + 1 + i * 3.5)
                pdf.cell(cell_w - 8, 3.5, line, align="C")

    top = y + box_h + 1.5
    pdf.set_text_color(20)
    pdf.set_font_size(11)
    pdf.set_xy(x, top)
    pdf.cell(8, _LABEL_H, str(number))
    pdf.set_font_size(8)
    pdf.set_text_color(_NEUTRAL_GREY)
    # The panel's own seed: a redrawn panel's is not the board's.
    seed = f"seed {frame['seed']}" if frame.get("seed") is not None else ""
    seed_w = pdf.get_string_width(seed) + 2 if seed else 0
    shot = str(frame.get("shot") or "")
    if shot:
        pdf.set_xy(x + 8, top)
        pdf.cell(cell_w - 8 - seed_w, _LABEL_H, _clip(pdf, shot, cell_w - 8 - seed_w, 1)[0])
    if seed:
        pdf.set_xy(x + cell_w - seed_w, top)
        pdf.cell(seed_w, _LABEL_H, seed, align="R")

    # Every character's name and score is shown: smaller type first, then lines taken from the caption.
    chips, cast_lines = _cast_chips(frame), []
    for size in _CAST_SIZES:
        pdf.set_font_size(size)
        cast_lines = _flow(pdf, chips, cell_w)
        if len(cast_lines) <= _CAST_LINES:
            break
    for i, line in enumerate(cast_lines):
        for offset, text, rgb in line:
            pdf.set_text_color(*rgb)
            pdf.set_xy(x + offset, top + _LABEL_H + i * _CAST_LINE_H)
            pdf.cell(pdf.get_string_width(text), _CAST_LINE_H, text)

    # The caption, then the dialogue in quotes, share the lines left: the dialogue takes what the
    # caption leaves, and at least one (the caption giving up its last) when it has none.
    caption_top = top + _LABEL_H + len(cast_lines) * _CAST_LINE_H
    lines_left = int((below_label_h - len(cast_lines) * _CAST_LINE_H) // _CAPTION_LINE_H)
    pdf.set_font_size(9)
    caption = str(frame.get("caption") or "")
    dialogue = str(frame.get("dialogue") or "").strip()
    dialogue_lines = []
    if dialogue:
        caption_wants = len(pdf.multi_cell(cell_w, text=caption, dry_run=True, output="LINES"))
        dialogue_lines = _clip(pdf, f"“{dialogue}”", cell_w, max(1, lines_left - caption_wants))
    caption_lines = _clip(pdf, caption, cell_w, max(1, lines_left - len(dialogue_lines)))
    pdf.set_text_color(40)
    for i, line in enumerate(caption_lines):
        pdf.set_xy(x, caption_top + i * _CAPTION_LINE_H)
        pdf.cell(cell_w, _CAPTION_LINE_H, line)
    pdf.set_text_color(_NEUTRAL_GREY)
    for i, line in enumerate(dialogue_lines, start=len(caption_lines)):
        pdf.set_xy(x, caption_top + i * _CAPTION_LINE_H)
        pdf.cell(cell_w, _CAPTION_LINE_H, line)


_THUMBNAIL_SHARE = 0.25  # of the panel's width


def _layout_thumbnail(pdf: FPDF, png: bytes, x: float, y: float, cell_w: float, box_h: float) -> None:
    """The panel's layout, small, framed in the top right corner of its picture: the shot as
    directed beside the shot as drawn."""
    w, h = cell_w * _THUMBNAIL_SHARE, box_h * _THUMBNAIL_SHARE
    left, top = x + cell_w - w - 1, y + 1
    try:
        pdf.image(io.BytesIO(png), x=left, y=top, w=w, h=h, keep_aspect_ratio=True)
    except Exception:  # noqa: BLE001 - an unreadable layout file leaves the panel as it is
        log.warning("a layout file is damaged; the panel is exported without its thumbnail")
        return
    pdf.set_draw_color(255)
    pdf.rect(left, top, w, h)


_CAST_COLS = 4
_REFERENCE_WORDS = {"uploaded": "Uploaded face", "generated": "Generated portrait"}


def _cast_page(pdf: FPDF, board: Mapping[str, Any], references: Mapping[int, bytes]) -> None:
    """The cast: each character's name, traits and reference face, side by side."""
    pdf.set_text_color(20)
    pdf.set_font_size(13)
    pdf.set_xy(_MARGIN, _MARGIN + _HEADER_H)
    pdf.cell(60, 7, "Cast")
    width = (_PAGE_W - 2 * _MARGIN - (_CAST_COLS - 1) * _GUTTER) / _CAST_COLS
    top = _MARGIN + _HEADER_H + 10
    for k, character in enumerate(board.get("characters") or [], start=1):
        x = _MARGIN + (k - 1) * (width + _GUTTER)
        image = references.get(k)
        pdf.set_draw_color(190)
        drawn = False
        if image:
            try:
                pdf.image(io.BytesIO(image), x=x, y=top, w=width, h=width, keep_aspect_ratio=True)
                drawn = True
            except Exception:  # noqa: BLE001 - an unreadable file: the rest of the page still prints
                log.warning("character %d's reference is damaged; exported without it", k)
        if not drawn:
            pdf.set_fill_color(225)
            pdf.rect(x, top, width, width, style="DF")
        pdf.rect(x, top, width, width)
        y = top + width + 2
        pdf.set_text_color(20)
        pdf.set_font_size(12)
        pdf.set_xy(x, y)
        pdf.cell(width, 6, _clip(pdf, str(character.get("name") or f"Character {k}"), width, 1)[0])
        kind = (character.get("reference") or {}).get("kind")
        pdf.set_font_size(8)
        pdf.set_text_color(_NEUTRAL_GREY)
        pdf.set_xy(x, y + 6)
        pdf.cell(width, 4, "Image damaged" if image and not drawn else _REFERENCE_WORDS.get(kind, "No reference"))
        pdf.set_text_color(40)
        pdf.set_font_size(9)
        for i, line in enumerate(_clip(pdf, str(character.get("traits") or ""), width, 8)):
            pdf.set_xy(x, y + 11 + i * _CAPTION_LINE_H)
            pdf.cell(width, _CAPTION_LINE_H, line)


def storyboard_pdf(
    board: Mapping[str, Any], images: Mapping[int, bytes], font_path: str | Path | None = None,
    references: Mapping[int, bytes] | None = None, out: BinaryIO | None = None,
    fallback_fonts: Iterable[tuple[str, str | Path, int]] | None = None, layouts: Mapping[int, bytes] | None = None,
) -> bytes | None:
    """A4-landscape PDF: header per page, panels in a 3x2 grid, captions under each (a panel
    with a layout in ``layouts``, by index: its thumbnail in the picture's corner); then,
    for a board with ``characters``, a cast page (``references``: each character's face).
    ``fallback_fonts`` (family, file, face in a collection): for glyphs the main font lacks,
    tried in order (default: :func:`find_fallback_fonts`); text is shaped (Arabic and Hebrew
    right to left, Devanagari's joined letters). Written to ``out`` when given, else returned."""
    # fpdf2 subsets the font through fontTools, which logs ~20 INFO lines per PDF; keep its warnings.
    logging.getLogger("fontTools.subset").setLevel(logging.WARNING)
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(False)  # the grid places everything itself
    pdf.set_creation_date(board_date(board))
    pdf.set_title(str(board.get("title") or "Storyboard"))
    pdf.set_creator("storyboard studio")
    font_path = font_path or find_unicode_font()
    pdf.add_font("Unicode", "", str(font_path))
    fallbacks = list(find_fallback_fonts() if fallback_fonts is None else fallback_fonts)
    for family, path, face in fallbacks:
        pdf.add_font(family, "", str(path), collection_font_number=face)
    pdf.set_font("Unicode", size=10)
    pdf.set_fallback_fonts([family for family, _path, _face in fallbacks])
    pdf.set_text_shaping(True)
    scripts = undrawable_scripts(_board_texts(board), font_path, fallbacks)
    notice = _missing_script_notice(scripts) if scripts else ""
    if scripts:
        log.warning("PDF of board %s: %s", board.get("id"), notice)
    pdf.c_margin = 0  # text lines up with the image edges

    cell_w = (_PAGE_W - 2 * _MARGIN - (_COLS - 1) * _GUTTER) / _COLS
    cell_h = (_PAGE_H - 2 * _MARGIN - _HEADER_H - (_ROWS - 1) * _GUTTER) / _ROWS
    # Image box follows the board's aspect so the caption sits right under the picture.
    settings = board.get("settings") or {}
    aspect = (settings.get("height") or 9) / (settings.get("width") or 16)
    box_h = min(cell_w * aspect, cell_h - _TEXT_H)
    below_label_h = cell_h - box_h - (_TEXT_H - _BELOW_LABEL_H)  # a wide picture leaves the text more room

    frames = list(board.get("frames") or [])
    ran = _ran(images[frame.get("index")] for frame in frames if images.get(frame.get("index")))
    per_page = _COLS * _ROWS
    panel_pages = max(1, -(-len(frames) // per_page))
    # Total known up front: fpdf's {nb} alias would be right-aligned by its own width.
    pages = panel_pages + (1 if board.get("characters") else 0)
    for start in range(0, panel_pages * per_page, per_page):
        pdf.add_page()
        _header(pdf, board, pages, ran, notice)
        for slot, frame in enumerate(frames[start:start + per_page]):
            row, col = divmod(slot, _COLS)
            x = _MARGIN + col * (cell_w + _GUTTER)
            y = _MARGIN + _HEADER_H + row * (cell_h + _GUTTER)
            _panel(pdf, frame, start + slot + 1, images.get(frame.get("index")), x, y, cell_w, box_h,
                   below_label_h, board.get("error"))
            if (layouts or {}).get(frame.get("index")):
                _layout_thumbnail(pdf, layouts[frame.get("index")], x, y, cell_w, box_h)
    if board.get("characters"):
        pdf.add_page()
        _header(pdf, board, pages, ran, notice)
        _cast_page(pdf, board, references or {})
    if out is None:
        return bytes(pdf.output())
    out.write(pdf.output())
    return None


# --- PNG metadata ---------------------------------------------------------------------


def _a1111_parameters(p: Mapping[str, Any]) -> str:
    """The ``parameters`` text AUTOMATIC1111 writes, which other SD tools also parse."""
    lines = []
    if p.get("prompt"):
        lines.append(str(p["prompt"]))
    if p.get("negative_prompt"):
        lines.append(f"Negative prompt: {p['negative_prompt']}")
    fields = []
    # Only what the parameters say ran: a panel whose sampler is not known names none.
    for key, label in (("steps", "Steps"), ("sampler", "Sampler"), ("guidance_scale", "CFG scale"), ("seed", "Seed")):
        if p.get(key) is not None:
            fields.append(f"{label}: {_fmt(p[key])}")
    if p.get("width") and p.get("height"):
        fields.append(f"Size: {p['width']}x{p['height']}")
    for key, label in (("model", "Model"), ("scheduler", "Scheduler"), ("lora", "Distilled LoRA"),
                       ("ip_adapter_scale", "IP-Adapter scale")):
        if p.get(key) is not None:
            fields.append(f"{label}: {_fmt(p[key])}")
    if p.get("decoder") == "taesdxl":  # A1111's field for the decoder; SDXL's own VAE goes unnamed, as there
        fields.append("VAE: TAESDXL")
    layout = p.get("layout")
    if isinstance(layout, dict):  # as A1111's ControlNet extension names its unit: model, weight
        fields.append(f"T2I-Adapter: {layout.get('adapter')}, Layout: {layout.get('kind')}, "
                      f"Weight: {_fmt(layout.get('strength'))}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def encode_png(image: Image.Image, parameters: Mapping[str, Any]) -> bytes:
    """PNG bytes with ``parameters`` (A1111 text) and ``storyboard`` (JSON) text chunks."""
    info = PngInfo()
    # iTXt is UTF-8; plain tEXt is Latin-1 and would mangle Cyrillic prompts.
    info.add_itxt("parameters", _a1111_parameters(parameters))
    info.add_itxt("storyboard", json.dumps(dict(parameters), ensure_ascii=False, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_png_parameters(data: bytes) -> dict:
    """The ``storyboard`` JSON that :func:`encode_png` stored; ``{}`` if the PNG has none."""
    with Image.open(io.BytesIO(data)) as img:
        raw = img.text.get("storyboard")  # type: ignore[attr-defined]
    return json.loads(raw) if raw else {}
