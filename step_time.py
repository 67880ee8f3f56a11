"""The measured time of a UNet pass on this machine, kept across restarts.

The worker that draws a board measures it from the board's panels and writes it to
DATA_DIR/step-time.json (:func:`record`); /api/presets turns it into each mode's time a panel
(:func:`seconds_per_panel`), and the progress bar's first estimate starts from it. A panel's
time is its passes plus its decode and encodes, all counted in UNet passes by their FLOPs
(config.SpeedPreset.passes_per_panel), so one measurement serves every mode. It is kept per
model: a measurement of the tiny demo says nothing about SDXL.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass

from config import Settings, SpeedPreset

log = logging.getLogger(__name__)

FILE_NAME = "step-time.json"


@dataclass(frozen=True)
class StepTime:
    seconds_per_pass: float  # a UNet pass at ~1 megapixel (or the tiny model's size), identity lock on
    model: str  # what it was measured on (model_key)
    measured_at: float  # Unix time
    # Panels in the board's largest pipeline call: 1 drawn one by one (off CUDA), more batched.
    # What the consistent look's estimate needs: it adds its rows per call, not per panel.
    panels_per_call: int = 1


def model_key(settings: Settings) -> str:
    return "tiny" if settings.model == "tiny" else settings.sdxl_model


def read(settings: Settings) -> StepTime | None:
    """The last measurement of this settings' model, or None (none yet, another model's, unreadable)."""
    try:
        data = json.loads((settings.data_path / FILE_NAME).read_text())
        measured = StepTime(float(data["seconds_per_pass"]), str(data["model"]), float(data["measured_at"]),
                            max(1, int(data.get("panels_per_call", 1))))  # files from before it was kept: 1
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if measured.model != model_key(settings) or not measured.seconds_per_pass > 0:
        return None
    return measured


def measure(preset: SpeedPreset, panel_seconds: list[float]) -> float | None:
    """Seconds a UNet pass took, from the seconds of the panels drawn in ``preset``; None
    when none was timed."""
    if not panel_seconds or sum(panel_seconds) <= 0:
        return None
    return sum(panel_seconds) / (len(panel_seconds) * preset.passes_per_panel)


def record(settings: Settings, preset: SpeedPreset, panel_seconds: list[float],
           panels_per_call: int = 1) -> StepTime | None:
    """Measure and write it (atomically: a reader never sees half a file); None when nothing
    was drawn. A failed write is logged, never the board's failure."""
    seconds = measure(preset, panel_seconds)
    if seconds is None:
        return None
    measured = StepTime(seconds, model_key(settings), time.time(), panels_per_call)
    path = settings.data_path / FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(measured)))
        os.replace(partial, path)
    except OSError:
        log.exception("could not keep the measured step time in %s", path)
    return measured


def seconds_per_panel(preset: SpeedPreset, measured: StepTime | None) -> float | None:
    """A panel's time in ``preset`` on this machine, estimated from the measured pass."""
    if measured is None:
        return None
    return preset.passes_per_panel * measured.seconds_per_pass
