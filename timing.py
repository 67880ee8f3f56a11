"""How long each panel stays on screen, and where it sits on the board's timeline.

A panel's duration is the user's (``frames.duration``, seconds) or, when they set none,
the time to read it: :func:`default_seconds`. Every duration is snapped to whole frames of
the board's frame rate (``storyboards.fps``), so the animatic on the page, the MP4, the
subtitles and an editor's timeline all cut on the same frame. :func:`board_timeline` is
the one place that lays a board's panels end to end; exports read it rather than adding
durations up themselves.

Pure functions over the store's board dict; imports neither Flask nor the store.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from errors import InputError

# The rates editors and players use, as the page and the API name them; the NTSC ones are
# exactly 24000/1001 and so on (what "23.976" means to an editor), so snapping and the
# exports' timecode agree with Premiere's and Resolve's.
FRAME_RATES: dict[float, Fraction] = {
    23.976: Fraction(24000, 1001),
    24.0: Fraction(24),
    25.0: Fraction(25),
    29.97: Fraction(30000, 1001),
    30.0: Fraction(30),
    50.0: Fraction(50),
    59.94: Fraction(60000, 1001),
    60.0: Fraction(60),
}
# What a board made without a frame rate plays at: film's rate (migration 9's column default).
DEFAULT_FPS = 24.0

# The default duration: a moment to take in the picture, then the caption and dialogue read
# at a comfortable subtitle pace, never a flash and never a stall.
LOOK_SECONDS = 1.0
WORDS_PER_SECOND = 3.0  # about 180 words a minute, the pace subtitle guidelines allow
# Scripts written without spaces between words (Chinese, Japanese, Thai, ...) are read by the
# character; 6 a second is about the pace of Chinese and Japanese subtitles. Hangul is spaced
# into words, so Korean counts by words.
CHARACTERS_PER_SECOND = 6.0
_UNSPACED = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")
MIN_DEFAULT_SECONDS = 2.0
MAX_DEFAULT_SECONDS = 10.0

# Bounds of a duration the user sets: above nothing, at most two minutes a panel.
MAX_SECONDS = 120.0


def default_seconds(caption: str, dialogue: str = "") -> float:
    """The seconds to show a panel nobody timed: LOOK_SECONDS plus its caption and dialogue
    read at WORDS_PER_SECOND (words of spaced scripts) and CHARACTERS_PER_SECOND (characters
    of scripts written without spaces), kept within MIN_DEFAULT_SECONDS..MAX_DEFAULT_SECONDS.
    Not yet snapped to frames (see :func:`frames_for`)."""
    text = f"{caption}\n{dialogue or ''}"
    unspaced = sum(1 for char in text if unicodedata.name(char, "").startswith(_UNSPACED))
    spaced = "".join(" " if unicodedata.name(char, "").startswith(_UNSPACED) else char for char in text)
    words = sum(1 for word in spaced.split() if any(char.isalnum() for char in word))
    seconds = LOOK_SECONDS + words / WORDS_PER_SECOND + unspaced / CHARACTERS_PER_SECOND
    return min(MAX_DEFAULT_SECONDS, max(MIN_DEFAULT_SECONDS, seconds))


def rate(fps: float) -> Fraction:
    """The exact rate of ``fps`` (one of FRAME_RATES): 29.97 is 30000/1001."""
    return FRAME_RATES[fps]


def frames_for(seconds: float, fps: float) -> int:
    """``seconds`` as whole frames at ``fps``: the nearest count (halves round up), at least one."""
    return max(1, math.floor(Fraction(seconds) * rate(fps) + Fraction(1, 2)))


def panel_frames(frame: dict, fps: float) -> int:
    """How many frames a panel (a store frame) is on screen: its set duration, or the default."""
    seconds = frame["duration"]
    if seconds is None:
        seconds = default_seconds(frame["caption"], frame["dialogue"] or "")
    return frames_for(seconds, fps)


def seconds_of(frames: int, fps: float) -> float:
    """``frames`` at ``fps`` in seconds, to the microsecond (for JSON and the page)."""
    return round(float(frames / rate(fps)), 6)


@dataclass(frozen=True)
class TimedPanel:
    """One panel on the timeline: the store's frame dict, its 1-based place in the board's
    order, where it starts and how long it lasts, both in whole frames of ``fps``."""

    frame: dict
    index: int
    start_frame: int
    frame_count: int
    fps: float

    @property
    def start(self) -> float:
        return seconds_of(self.start_frame, self.fps)

    @property
    def duration(self) -> float:
        return seconds_of(self.frame_count, self.fps)

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.frame_count

    @property
    def duration_set(self) -> bool:
        """Whether the user set this panel's duration (False: the reading-time default)."""
        return self.frame["duration"] is not None


@dataclass(frozen=True)
class Timeline:
    """A board's panels end to end, in the board's order, at its frame rate."""

    fps: float
    panels: tuple[TimedPanel, ...]

    @property
    def rate(self) -> Fraction:
        return rate(self.fps)

    @property
    def total_frames(self) -> int:
        return self.panels[-1].end_frame if self.panels else 0

    @property
    def duration(self) -> float:
        return seconds_of(self.total_frames, self.fps)

    def __iter__(self):
        return iter(self.panels)

    def __len__(self) -> int:
        return len(self.panels)


def board_timeline(board: dict) -> Timeline:
    """The board (as ``storage.Store.board`` reads it) laid out in time: each panel starts on
    the frame the one before it ends."""
    fps, start, panels = board["fps"], 0, []
    for index, frame in enumerate(board["frames"], start=1):
        count = panel_frames(frame, fps)
        panels.append(TimedPanel(frame, index, start, count, fps))
        start += count
    return Timeline(fps, tuple(panels))


# --- Input -----------------------------------------------------------------------------------


def read_duration(value, field: str = "duration") -> float | None:
    """A duration from a request: seconds above 0 and at most MAX_SECONDS, or None (null: back
    to the reading-time default). Raises InputError naming ``field``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field, f"{field} must be a number of seconds, or null for the default.")
    if not 0 < value <= MAX_SECONDS:
        raise InputError(field, f"{field} must be above 0 and at most {MAX_SECONDS:g} seconds, not {value:g}.")
    return float(value)


def read_fps(value, field: str = "fps") -> float:
    """A frame rate from a request: one of FRAME_RATES (23.98 reads as 23.976, as editors
    round it). Raises InputError naming ``field``."""
    named = ", ".join(f"{fps:g}" for fps in FRAME_RATES)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field, f"{field} must be a frame rate: one of {named}.")
    for fps in FRAME_RATES:
        if abs(value - fps) < 0.005:
            return fps
    raise InputError(field, f"{field} must be one of {named}, not {value:g}.")
