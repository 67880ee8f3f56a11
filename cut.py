"""A board as an edit sees it: its panels in order, each held for a number of frames.

The animatic (animatic.py), the editorial timelines (timeline_export.py) and the Storyboarder
project (storyboarder.py) are all written from one :class:`Cut`, built from the board as the
API shows it (``board_json``), so every export agrees on each panel's frames, its text and
its file name. Panel durations and the board's frame rate come from the board's timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO, Mapping

# The hold and the frame rate of a board whose timing does not say (the usual animatic pace,
# and the film rate Storyboarder and editors start from).
DEFAULT_PANEL_SECONDS = 3.0
DEFAULT_FPS = 24


@dataclass(frozen=True)
class CutPanel:
    """One panel of the cut: ``number`` is its position (1-based, as the PDF labels it),
    ``start``/``frames`` its place on the timeline in frames of the board's rate."""

    number: int
    frame_id: int
    start: int
    frames: int
    caption: str
    dialogue: str
    shot: str
    prompt: str
    seed: int | None

    @property
    def file_name(self) -> str:
        """Its PNG's name, as in the board's ZIP export."""
        return f"panel-{self.number:02d}.png"

    @property
    def text(self) -> str:
        """What a caption track shows: the caption, and the dialogue under it."""
        return "\n".join(part for part in (self.caption, self.dialogue) if part)


@dataclass(frozen=True)
class Cut:
    board_id: str
    title: str
    fps: float  # as the board names it (23.976)
    rate: Fraction  # exactly (24000/1001)
    aspect: tuple[int, int]  # width:height, as "16:9" names it
    panels: tuple[CutPanel, ...]

    @property
    def frames(self) -> int:
        return sum(panel.frames for panel in self.panels)

    @property
    def seconds(self) -> Fraction:
        return self.seconds_at(self.frames)

    def seconds_at(self, frame: int) -> Fraction:
        return frame / self.rate

    @classmethod
    def from_board(cls, board: Mapping[str, Any]) -> "Cut":
        """The cut of a board as ``GET /api/storyboards/<id>`` answers it: each panel's
        ``duration`` (seconds) and the board's ``fps`` where the board has them, else the
        defaults above. Panels start on whole frames: each ends where the running total of
        the durations falls, so the cut's length never drifts from the durations' sum."""
        fps = float(board.get("fps") or DEFAULT_FPS)
        rate = Fraction(fps)
        settings = board.get("settings") or {}
        panels, start, elapsed = [], 0, Fraction(0)
        for number, frame in enumerate(board.get("frames") or [], start=1):
            elapsed += Fraction(str(frame.get("duration") or DEFAULT_PANEL_SECONDS))
            end = max(start + 1, round(elapsed * rate))  # every panel is seen for a frame at least
            panels.append(CutPanel(
                number=number, frame_id=int(frame["id"]), start=start, frames=end - start,
                caption=str(frame.get("caption") or ""), dialogue=str(frame.get("dialogue") or ""),
                shot=str(frame.get("shot") or ""), prompt=str(frame.get("prompt") or ""), seed=frame.get("seed")))
            start = end
        return cls(board_id=str(board.get("id") or ""), title=str(board.get("title") or "Storyboard"), fps=fps, rate=rate,
                   aspect=_aspect(settings), panels=tuple(panels))


def _aspect(settings: Mapping[str, Any]) -> tuple[int, int]:
    named = str(settings.get("aspect") or "")
    if ":" in named:
        width, _, height = named.partition(":")
        if width.isdecimal() and height.isdecimal() and int(width) and int(height):
            return int(width), int(height)
    if settings.get("width") and settings.get("height"):
        return int(settings["width"]), int(settings["height"])
    return 16, 9


def timecode(seconds: Fraction, separator: str) -> str:
    """HH:MM:SS<sep>mmm, as WebVTT (".") and SRT (",") write times."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def _cue_text(text: str) -> str:
    # A blank line would end the cue early in both formats; "-->" would read as a timing line.
    return "\n".join(line for line in text.replace("-->", "→").splitlines() if line.strip())


def webvtt(cut: Cut) -> str:
    """The captions as WebVTT, one cue per panel with text, timed to its frames."""
    lines = ["WEBVTT", ""]
    for panel in cut.panels:
        if not panel.text:
            continue
        start, end = cut.seconds_at(panel.start), cut.seconds_at(panel.start + panel.frames)
        text = _cue_text(panel.text).replace("&", "&amp;").replace("<", "&lt;")
        lines += [f"panel-{panel.number}", f"{timecode(start, '.')} --> {timecode(end, '.')}", text, ""]
    return "\n".join(lines)


def srt(cut: Cut) -> str:
    """The captions as SubRip, numbered from 1."""
    lines = []
    for n, panel in enumerate((p for p in cut.panels if p.text), start=1):
        start, end = cut.seconds_at(panel.start), cut.seconds_at(panel.start + panel.frames)
        lines += [str(n), f"{timecode(start, ',')} --> {timecode(end, ',')}", _cue_text(panel.text), ""]
    return "\n".join(lines)


# The studio's export routes call a writer as ``write(board, images, references=..., out=...)``.

def captions_vtt(board: Mapping[str, Any], images: Any = None, references: Any = None, *, out: BinaryIO) -> None:
    out.write(webvtt(Cut.from_board(board)).encode("utf-8"))


def captions_srt(board: Mapping[str, Any], images: Any = None, references: Any = None, *, out: BinaryIO) -> None:
    out.write(srt(Cut.from_board(board)).encode("utf-8"))
