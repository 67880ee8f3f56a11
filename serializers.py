"""The JSON shapes of the API, built from store rows. No Flask: the worker uses them too."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from config import SpeedPreset
from layouts import LAYOUT_KINDS
from timing import TimedPanel, board_timeline

STORYBOARDS = "/api/storyboards"


def board_url(board_id: str, *path: str | int, **query) -> str:
    """Every URL of a board, in one place: the answers carry them, and the page reads them there
    instead of building its own (``board_url(id, "frames", 3, "regenerate")``)."""
    url = "/".join([STORYBOARDS, quote(board_id, safe=""), *(str(part) for part in path)])
    return f"{url}?{urlencode(query)}" if query else url


def image_url(board_id: str, frame: dict) -> str | None:
    if not frame.get("image_file"):
        return None
    return frame_image_url(board_id, frame["id"], frame["version"])


def frame_image_url(board_id: str, frame_id: int, version: int) -> str:
    # The version in the query: a redrawn panel is a new URL, so no browser shows the old image.
    return board_url(board_id, "frames", frame_id, "image.png", v=version)


def reference_url(board_id: str, character: int) -> str:
    return board_url(board_id, "references", f"{character}.png")


def take_json(board_id: str, frame_id: int, take: dict) -> dict:
    """One image drawn for a panel, with what made it."""
    return {
        "id": take["id"],
        "parent": take["parent"],  # the take it was refined from; None: drawn afresh
        "seed": take["seed"],
        "mode": take["mode"],
        "settings": take["settings"],  # what ran (steps, CFG, sampler, ...); None: in its PNG only
        "identity": take["identity"],
        "seconds": take["seconds"],
        "created_at": take["created_at"],
        # A take's file never changes: its URL needs no version.
        "image_url": board_url(board_id, "frames", frame_id, "takes", take["id"], "image.png"),
        # The layout it was drawn with (None: none).
        "layout": layout_json(take.get("layout"), board_url(board_id, "frames", frame_id, "takes", take["id"],
                                                            "layout.png")),
        "links": {"delete": board_url(board_id, "frames", frame_id, "takes", take["id"])},
    }


def frame_json(board_id: str, timed: TimedPanel) -> dict:
    """A panel as the API shows it, where the board's timeline (timing.board_timeline) puts it."""
    frame, index = timed.frame, timed.index
    return {
        "id": frame["id"],
        "index": index,
        "status": frame["status"],
        "caption": frame["caption"],
        "dialogue": frame["dialogue"] or "",  # the line spoken over the panel, shown under the caption
        # Seconds on screen, snapped to the board's frames: the user's, or the time to read it.
        "duration": timed.duration,
        "duration_set": timed.duration_set,  # False: the reading-time default, which follows the words
        "start": timed.start,  # seconds from the board's start, in its order
        # What the prompt describes: the caption, or an English scene from an edited plan.
        "scene": frame["scene"] or frame["caption"],
        "shot": frame["shot"],
        # Who is in it: names of the board's characters ("" is the one unnamed character), [] no one.
        "cast": list(frame["cast"]),
        "prompt": frame["prompt"],
        "negative_prompt": frame["negative_prompt"],
        # Scene words cut from the prompt to fit CLIP's 77 tokens (the caption keeps them).
        "prompt_shortened": frame["dropped"],
        # The trait phrases cut, by character ("": the one unnamed), when traits did not fit.
        "traits_shortened": frame["traits_dropped"],
        "seed": frame["seed"],
        "image_url": image_url(board_id, frame),  # the chosen take's
        "take": frame["take"],  # the chosen take's id; None before the first
        "takes": [take_json(board_id, frame["id"], take) for take in frame["takes"]],
        "identity": frame["identity"],
        "consistent_look": _look(frame),
        "attempts": frame["attempts"],
        "error": frame["error"],
        "seconds": frame["seconds"],
        # The layout the panel follows (layouts.py), its picture a file named once: its URL
        # carries that name's token, so a new layout is a new URL.
        "layout": layout_json(frame.get("layout"), board_url(
            board_id, "frames", frame["id"], "layout.png",
            v=frame["layout"]["file"].rsplit("-", 1)[-1].removesuffix(".png")) if frame.get("layout") else None),
        # By position, as the route takes it: panel n of the board's order when this was sent.
        "links": {"self": board_url(board_id, "frames", frame["id"]),
                  "regenerate": board_url(board_id, "frames", index, "regenerate"),
                  "take": board_url(board_id, "frames", frame["id"], "take"),
                  "refine": board_url(board_id, "frames", frame["id"], "refine")},
    }


def _look(frame: dict) -> dict | None:
    """Whether the chosen take was drawn with the consistent look, and whose references it shared
    (the characters, 1-based); None: drawn without it (or before takes said so)."""
    chosen = next((take for take in frame["takes"] if take["id"] == frame["take"]), None)
    ran = (chosen or {}).get("settings") or {}
    if "look_references" not in ran:
        return None
    return {"characters": ran["look_references"], "sampling_rate": ran.get("look_sampling_rate")}


def layout_json(layout: dict | None, image_url: str | None) -> dict | None:
    """A stored layout as the API shows it: kind, strength, the adapter's factor and hub id,
    the skeletons of a pose, and the URL of its picture (the sketch, or the pose drawn)."""
    if not layout:
        return None
    kind = LAYOUT_KINDS[layout["kind"]]
    shown = {"kind": layout["kind"], "strength": layout["strength"], "factor": kind.factor, "adapter": kind.adapter}
    if "poses" in layout:
        shown["poses"] = layout["poses"]
    return {**shown, "image": image_url}


def board_json(board: dict, progress: dict | None = None) -> dict:
    board_id, params = board["id"], board["params"]
    references = board["references"]
    timeline = board_timeline(board)

    def reference(character: int) -> dict:
        kind = references[character]["kind"] if character in references else None
        return {"kind": kind, "image_url": reference_url(board_id, character) if kind else None}

    characters = [{"name": c.name, "traits": c.traits, "reference": reference(k)}
                  for k, c in enumerate(params.characters, start=1)]
    answer = {
        "id": board_id,
        "title": board["title"],
        "status": board["status"],
        "error": board["error"],
        "created_at": board["created_at"],
        "story": board["story"],
        "characters": characters,
        # The first character, as the single-character API had it.
        "character": params.characters[0].traits,
        "reference": characters[0]["reference"],
        "style": params.style,
        "settings": params.settings_json(),
        "mode": params.preset.label,  # the speed mode as the page names it ("Lightning"), not its key
        # How the story was read (fewer panels than asked, a story not in English).
        "notices": list(params.notices),
        "progress": progress,
        "fps": timeline.fps,
        "duration": timeline.duration,  # the animatic's length in seconds
        "frames": [frame_json(board_id, timed) for timed in timeline],
        "export": {"pdf": board_url(board_id, "export.pdf"), "zip": board_url(board_id, "export.zip"),
                   # POST: starts writing the MP4, answers the job to follow (animatic_json)
                   "animatic": board_url(board_id, "animatic"),
                   "vtt": board_url(board_id, "captions.vtt"), "srt": board_url(board_id, "captions.srt"),
                   "otio": board_url(board_id, "timeline.otio"), "fcp_xml": board_url(board_id, "timeline.xml"),
                   "edl": board_url(board_id, "timeline.edl"), "timeline_zip": board_url(board_id, "timeline.zip"),
                   "storyboarder": board_url(board_id, "storyboarder.zip")},
        "links": {"self": board_url(board_id), "events": board_url(board_id, "events"),
                  "cancel": board_url(board_id, "cancel"), "resume": board_url(board_id, "resume"),
                  "order": board_url(board_id, "order"), "refine": board_url(board_id, "refine")},
    }
    # Text no font here can draw: the PDF says so at its top, and the page beside its link.
    from exporting import pdf_notice  # fpdf2 and fontTools only for an answer that needs them

    answer["pdf_notice"] = pdf_notice(answer)
    return answer


def animatic_json(job) -> dict:
    """An animatic being written (animatic_jobs.AnimaticJob): how far, and where to get it."""
    links = {"self": board_url(job.board_id, "animatics", job.id),
             "cancel": board_url(job.board_id, "animatics", job.id, "cancel")}
    if job.state.value == "done":
        links["download"] = board_url(job.board_id, "animatics", job.id, "animatic.mp4")
    return {"id": job.id, "state": job.state.value, "error": job.error,
            "frames_done": job.frames_done, "frames_total": job.frames_total,
            "resolution": job.options.resolution, "push_in": job.options.push_in, "burn_in": job.options.burn_in,
            "links": links}


def summary_json(row: dict) -> dict:
    thumb = row["thumb_frame"]
    return {
        "id": row["id"],
        "title": row["title"],
        "status": row["status"],
        "created_at": row["created_at"],
        "frames_total": row["frames_total"],
        "frames_done": row["frames_done"],
        "mode": row["params"].preset.label,
        "thumbnail_url": frame_image_url(row["id"], thumb, row["thumb_version"]) if thumb is not None else None,
        "links": {"self": board_url(row["id"])},
    }


def preset_json(preset: SpeedPreset, seconds_per_panel: float | None = None) -> dict:
    """A mode with what it costs: counted FLOPs (1024x1024, lock on) and, once a board was drawn
    on this machine, the estimated seconds a panel (step_time.py)."""
    return {**preset.to_dict(), "unet_passes": preset.unet_passes, "description": preset.description,
            "tflops_per_panel": preset.tflops_per_panel, "look_passes": preset.look_passes,
            "seconds_per_panel": None if seconds_per_panel is None else round(seconds_per_panel, 3)}
