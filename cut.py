"""A board as an edit sees it: its panels in order, each held for a number of frames.

The animatic (animatic.py), the editorial timelines (timeline_export.py) and the Storyboarder
project (storyboarder.py) are all written from one :class:`Cut`, built from the board as the
API shows it (``board_json``), so every export agrees on each panel's frames, its text and
its file name. Panel durations and the board's frame rate come from the board's timing
(timing.py), which snaps every duration to whole frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO, Mapping

from timing import frames_for, rate


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
        ``duration`` (seconds, already snapped to the board's frames by timing.py) as whole
        frames of the board's ``fps``, the panels end to end in the board's order."""
        fps = float(board["fps"])
        panels, start = [], 0
        for number, frame in enumerate(board.get("frames") or [], start=1):
            count = frames_for(frame["duration"], fps)
            panels.append(CutPanel(
                number=number, frame_id=int(frame["id"]), start=start, frames=count,
                caption=str(frame.get("caption") or ""), dialogue=str(frame.get("dialogue") or ""),
                shot=str(frame.get("shot") or ""), prompt=str(frame.get("prompt") or ""), seed=frame.get("seed")))
            start += count
        return cls(board_id=str(board.get("id") or ""), title=str(board.get("title") or "Storyboard"), fps=fps,
                   rate=rate(fps), aspect=_aspect(board.get("settings") or {}), panels=tuple(panels))


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
