"""The board as an editorial timeline: one clip per panel on one video track, through
OpenTimelineIO, written as ``.otio``, Final Cut Pro 7 XML (Premiere, Resolve and Avid import
it) or a CMX 3600 EDL by OTIO's own adapters.

Each clip's media is its panel's PNG, referenced by the file name the board's ZIP export uses
(``panel-01.png``), relative to the timeline file: the timeline ZIP (:func:`timeline_zip`)
holds the three timelines beside those PNGs, so an editor unzips it and relinks the folder
once. A clip carries its caption, prompt and seed in its metadata, and a marker at its start.
"""

from __future__ import annotations

import zipfile
from typing import Any, BinaryIO, Mapping

from cut import Cut

# OTIO's adapter for each timeline file, by the name its download has.
FORMATS = {"otio": "otio_json", "xml": "fcp_xml", "edl": "cmx_3600"}
TIMELINE_NAME = "storyboard"


def timeline(cut: Cut):
    """The cut as an ``opentimelineio.schema.Timeline``."""
    import opentimelineio as otio

    rate = float(cut.rate)
    track = otio.schema.Track(name="Panels", kind=otio.schema.TrackKind.Video)
    for panel in cut.panels:
        length = otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(panel.frames, rate))
        # A still holds as long as the cut asks: its media's range is the clip's own.
        media = otio.schema.ExternalReference(target_url=panel.file_name, available_range=length)
        clip = otio.schema.Clip(name=f"Panel {panel.number}", media_reference=media, source_range=length)
        clip.metadata["storyboard"] = {"panel": panel.number, "frame_id": panel.frame_id, "caption": panel.caption,
                                       "dialogue": panel.dialogue, "shot": panel.shot, "prompt": panel.prompt,
                                       "seed": panel.seed, "file": panel.file_name}
        clip.markers.append(otio.schema.Marker(
            name=(panel.caption.splitlines() or [f"Panel {panel.number}"])[0][:200],  # one line: an EDL comment
            marked_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(1, rate)),
            color=otio.schema.MarkerColor.GREEN))
        track.append(clip)
    result = otio.schema.Timeline(name=cut.title, tracks=[track],
                                  global_start_time=otio.opentime.RationalTime(0, rate))
    result.metadata["storyboard"] = {"board": cut.board_id, "fps": cut.fps, "aspect": "%d:%d" % cut.aspect}
    return result


def timeline_text(cut: Cut, suffix: str) -> str:
    """The timeline in the format named by ``suffix`` (a key of FORMATS)."""
    import opentimelineio as otio

    return otio.adapters.write_to_string(timeline(cut), adapter_name=FORMATS[suffix])


def timeline_zip(cut: Cut, images: Mapping[int, bytes], out: BinaryIO) -> None:
    """``storyboard.otio``, ``storyboard.xml``, ``storyboard.edl`` and the PNGs they name,
    one panel's PNG in memory at a time."""
    with zipfile.ZipFile(out, "w") as archive:
        for suffix in FORMATS:
            archive.writestr(f"{TIMELINE_NAME}.{suffix}", timeline_text(cut, suffix), zipfile.ZIP_DEFLATED)
        for panel in cut.panels:
            data = images.get(panel.number)
            if data:
                archive.writestr(panel.file_name, data, zipfile.ZIP_STORED)  # PNG is compressed already


# The studio's export routes call a writer as ``write(board, images, references=..., out=...)``.

def writer(suffix: str):
    def write(board: Mapping[str, Any], images: Any = None, references: Any = None, *, out: BinaryIO) -> None:
        out.write(timeline_text(Cut.from_board(board), suffix).encode("utf-8"))

    return write


def export_timeline_zip(board: Mapping[str, Any], images: Mapping[int, bytes], references: Any = None, *,
                        out: BinaryIO) -> None:
    timeline_zip(Cut.from_board(board), images, out)
