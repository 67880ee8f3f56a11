"""The JSON shapes of the API, built from store rows. No Flask: the worker uses them too."""

from __future__ import annotations

from config import SpeedPreset


def image_url(board_id: str, frame: dict) -> str | None:
    if not frame.get("image_file"):
        return None
    return f"/api/storyboards/{board_id}/frames/{frame['id']}/image.png?v={frame['version']}"


def frame_json(board_id: str, frame: dict, index: int) -> dict:
    return {
        "id": frame["id"],
        "index": index,
        "status": frame["status"],
        "caption": frame["caption"],
        "shot": frame["shot"],
        "prompt": frame["prompt"],
        "negative_prompt": frame["negative_prompt"],
        # Scene words cut from the prompt to fit CLIP's 77 tokens (the caption keeps them).
        "prompt_shortened": frame["dropped"],
        "seed": frame["seed"],
        "image_url": image_url(board_id, frame),
        "identity": frame["identity"],
        "attempts": frame["attempts"],
        "error": frame["error"],
        "seconds": frame["seconds"],
    }


def board_json(board: dict, progress: dict | None = None) -> dict:
    board_id = board["id"]
    reference_url = f"/api/storyboards/{board_id}/reference.png" if board["reference_file"] else None
    return {
        "id": board_id,
        "title": board["title"],
        "status": board["status"],
        "error": board["error"],
        "created_at": board["created_at"],
        "story": board["story"],
        "character": board["character"],
        "style": board["style"],
        "settings": board["settings"],
        "reference": {"kind": board["reference_kind"], "image_url": reference_url},
        "progress": progress,
        "frames": [frame_json(board_id, frame, i) for i, frame in enumerate(board["frames"], start=1)],
        "export": {"pdf": f"/api/storyboards/{board_id}/export.pdf", "zip": f"/api/storyboards/{board_id}/export.zip"},
    }


def summary_json(row: dict) -> dict:
    thumb = row["thumb_frame"]
    return {
        "id": row["id"],
        "title": row["title"],
        "status": row["status"],
        "created_at": row["created_at"],
        "frames_total": row["frames_total"],
        "frames_done": row["frames_done"],
        "thumbnail_url": (f"/api/storyboards/{row['id']}/frames/{thumb}/image.png?v={row['thumb_version']}"
                          if thumb is not None else None),
    }


def preset_json(preset: SpeedPreset) -> dict:
    return {
        "name": preset.name,
        "label": preset.label,
        "steps": preset.steps,
        "guidance_scale": preset.guidance_scale,
        "ip_adapter_scale": preset.ip_adapter_scale,
        "unet_passes": preset.unet_passes,
        "description": preset.description,
    }
