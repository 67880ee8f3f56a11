"""The animatic: a board's panels as an H.264 MP4, each held for its duration at the board's
frame rate, with its captions as a subtitle track (mov_text, which QuickTime, browsers and
editors read) and, if asked, burned into the picture.

Written with PyAV (FFmpeg's libraries, shipped inside its wheel) frame by frame to a file: one
panel's picture is in memory at a time, never the whole video. The caller gives a file path
(the MP4 is rewritten at the end to put its index first, ``+faststart``, so a browser can play
it while it downloads) and may follow the progress and cancel between frames.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

from PIL import Image, ImageDraw, ImageFont

from cut import Cut, CutPanel

log = logging.getLogger(__name__)

# The shorter side of the video, by the name the page offers.
RESOLUTIONS = {"720p": 720, "1080p": 1080}
DEFAULT_RESOLUTION = "720p"
# How much closer the camera is at a panel's end than at its start with the push-in on: slow
# enough to read as a camera move, not a zoom.
PUSH_IN = 0.06
_BACKGROUND = (24, 24, 24)
# libx264: "stillimage" tunes for held pictures; a keyframe every 2 s keeps scrubbing quick.
_X264_OPTIONS = {"preset": "veryfast", "crf": "20", "tune": "stillimage"}
# mov_text is encoded from ASS events: FFmpeg's encoder needs a script header to open.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n"
    "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
    "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
    "MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Sans,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


class Canceled(Exception):
    """The animatic was canceled between two frames; its file is incomplete."""


@dataclass(frozen=True)
class AnimaticOptions:
    resolution: str = DEFAULT_RESOLUTION
    push_in: bool = False
    burn_in: bool = False


def video_size(aspect: tuple[int, int], resolution: str) -> tuple[int, int]:
    """Width and height at the board's aspect with the shorter side ``resolution``'s, both
    even (yuv420p halves the colour planes)."""
    short = RESOLUTIONS[resolution]
    aw, ah = aspect
    scale = Fraction(short, min(aw, ah))
    return round(aw * scale / 2) * 2, round(ah * scale / 2) * 2


def write_animatic(cut: Cut, images: Mapping[int, bytes], path: str | Path, options: AnimaticOptions = AnimaticOptions(),
                   progress: Callable[[int, int], None] | None = None,
                   canceled: Callable[[], bool] | None = None) -> None:
    """Write ``cut`` as an MP4 at ``path``. ``images``: each panel's PNG by position (a panel
    without one is a blank card with its number). ``progress(frames_done, frames_total)`` is
    called after every frame; ``canceled()`` is asked before each, and True stops with
    :class:`Canceled` (the file left is incomplete: the caller removes it)."""
    import av  # FFmpeg loads with it: only when an animatic is written

    width, height = video_size(cut.aspect, options.resolution)
    total, done = cut.frames, 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=cut.rate, options={**_X264_OPTIONS, "g": str(round(2 * cut.rate))})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        captions = container.add_stream("mov_text")
        captions.codec_context.subtitle_header = _ASS_HEADER.encode("utf-8")
        captions.time_base = Fraction(1, 1000)
        captions.metadata["title"] = "Captions"
        for panel in cut.panels:
            if panel.text:
                _mux_caption(container, captions, cut, panel)
            still = _picture(images.get(panel.number), panel, width, height, options.push_in)
            overlay = _caption_overlay(panel.text, width, height) if options.burn_in and panel.text else None
            frame = None if options.push_in else _video_frame(still, overlay, av)
            for k in range(panel.frames):
                if canceled is not None and canceled():
                    raise Canceled()
                if options.push_in:
                    frame = _video_frame(_pushed_in(still, width, height, k / max(1, panel.frames - 1)), overlay, av)
                frame.pts = panel.start + k
                container.mux(video.encode(frame))
                done += 1
                if progress is not None:
                    progress(done, total)
            still.close()
        container.mux(video.encode(None))


def _mux_caption(container, stream, cut: Cut, panel: CutPanel) -> None:
    from av.subtitles.subtitle import SubtitleSet

    start = round(cut.seconds_at(panel.start) * 1000)
    length = round(cut.seconds_at(panel.frames) * 1000)
    # An ASS event's text: "\N" breaks a line; braces would open an override block.
    text = panel.text.replace("{", "(").replace("}", ")").replace("\n", "\\N")
    packet = stream.codec_context.encode_subtitle(
        SubtitleSet.create(text=f"0,0,Default,,0,0,0,,{text}".encode("utf-8"), start=0, end=length))
    packet.stream = stream
    packet.pts = packet.dts = start
    packet.duration = length
    packet.time_base = stream.time_base
    container.mux(packet)


def _picture(png: bytes | None, panel: CutPanel, width: int, height: int, push_in: bool) -> Image.Image:
    """The panel filling the frame (cropped to the video's aspect, centred); with the push-in,
    at the size of its closest framing, so zooming in never enlarges pixels past the video's."""
    scale = 1 + PUSH_IN if push_in else 1
    size = (round(width * scale), round(height * scale))
    if png:
        try:
            with Image.open(io.BytesIO(png)) as source:
                source.load()
                return _cover(source.convert("RGB"), size)
        except Exception:  # noqa: BLE001 - a damaged file: the card says so, the rest still plays
            log.warning("panel %d's image could not be read; the animatic shows a card", panel.number)
    card = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(card)
    font = _font(max(12, size[1] // 12), "0123456789Panel")
    draw.text((size[0] / 2, size[1] / 2), f"Panel {panel.number}", fill=(200, 200, 200), font=font, anchor="mm")
    return card


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    w, h = image.size
    scale = max(size[0] / w, size[1] / h)
    scaled = image.resize((max(size[0], round(w * scale)), max(size[1], round(h * scale))), Image.LANCZOS)
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def _pushed_in(still: Image.Image, width: int, height: int, t: float) -> Image.Image:
    """The frame at ``t`` (0..1) of the push-in: from the whole picture to its centre."""
    zoom = 1 + PUSH_IN * t
    w, h = still.width / zoom, still.height / zoom
    left, top = (still.width - w) / 2, (still.height - h) / 2
    return still.resize((width, height), Image.BILINEAR, box=(left, top, left + w, top + h))


def _video_frame(picture: Image.Image, overlay: Image.Image | None, av):
    if overlay is not None:
        picture = picture.copy()
        picture.paste(overlay, (0, picture.height - overlay.height), overlay)
    return av.VideoFrame.from_image(picture).reformat(format="yuv420p")


def _caption_overlay(text: str, width: int, height: int) -> Image.Image:
    """The caption as the PDF prints it (its fonts), white on a dark band at the bottom."""
    size = max(12, height // 24)
    font = _font(size, text)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and probe.textlength(candidate, font=font) > width * 0.9:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    lines = lines[:3]
    line_h = round(size * 1.3)
    band = Image.new("RGBA", (width, line_h * len(lines) + size), (0, 0, 0, 150))
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((width / 2, size / 2 + i * line_h), line, fill=(255, 255, 255, 255), font=font, anchor="ma")
    return band


def _font(size: int, text: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The PDF's font (exporting.find_unicode_font), or the first of its fallbacks that has
    every character of ``text`` (a caption in Chinese or Hindi); PIL's own font without any."""
    from exporting import font_code_points  # the PDF's reading of a font's characters, cached

    files = _font_files()
    wanted = {ord(char) for char in text if not char.isspace()}
    for path, face in files:
        if wanted <= font_code_points(str(path), face):
            return ImageFont.truetype(str(path), size, index=face)
    if files:
        return ImageFont.truetype(str(files[0][0]), size, index=files[0][1])
    return ImageFont.load_default(size)


@lru_cache(maxsize=1)
def _font_files() -> tuple[tuple[Path, int], ...]:
    from exporting import find_fallback_fonts, find_unicode_font

    try:
        main = [(find_unicode_font(), 0)]
    except FileNotFoundError as error:
        log.warning("captions burned into the animatic use PIL's font: %s", error)
        main = []
    return tuple(main + [(path, face) for _family, path, face in find_fallback_fonts()])
