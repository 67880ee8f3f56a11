"""One job's drawing, the same in every backend: a typed spec in, facts out.

The studio turns a job and its board into a :class:`JobSpec` (everything the drawing
needs, nothing that points into the studio's database or files); whoever owns a
generator calls :func:`draw` with it and a :class:`Sink` that receives the facts
(prompts built, a panel started or saved, the generated reference, progress). The
embedded worker's sink writes to the store; a Redis worker's sink sends the facts to
the studio, which stays the one writer. A spec travels as JSON and is checked on the
way in like any other input (:meth:`JobSpec.from_json`).
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

from config import MAX_FRAMES, PRESETS, SpeedPreset
from prompt_enhancer import SHOT_TYPES, PanelPlan, build_prompt, portrait_prompt

SPEC_VERSION = 1
MAX_TEXT = 4000
MAX_REFERENCE_BYTES = 16 * 2**20


class SpecError(ValueError):
    """A job's payload that cannot be drawn; the message names the field."""


@dataclass(frozen=True)
class PanelSpec:
    frame_id: int
    position: int  # on the board, 1-based: "Panel 2 of 3"
    caption: str  # the user's words (PNG metadata, exports)
    scene: str  # what the prompt describes
    shot: str
    seed: int


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    board_id: str
    panels: tuple[PanelSpec, ...]
    board_panels: int  # how many panels the board has ("of 3")
    character: str
    style: str
    negative_prompt: str
    preset: str
    steps: int
    guidance_scale: float
    ip_adapter_scale: float
    width: int
    height: int
    seed: int  # the board's seed: the generated portrait's
    identity_lock: bool
    model: str | None = None
    reference_png: bytes | None = field(default=None, repr=False)  # uploaded or generated earlier

    @property
    def speed_preset(self) -> SpeedPreset:
        base = PRESETS.get(self.preset)
        label = base.label if base else self.preset
        return SpeedPreset(self.preset, label, self.steps, self.guidance_scale, self.ip_adapter_scale)

    # -- JSON, for a job that travels --

    def to_json(self) -> dict:
        data = asdict(self)
        data["panels"] = [asdict(panel) for panel in self.panels]  # JSON has lists, not tuples
        data["version"] = SPEC_VERSION
        data["reference_png"] = base64.b64encode(self.reference_png).decode() if self.reference_png else None
        return data

    @classmethod
    def from_json(cls, data: Any) -> "JobSpec":
        """Read and check a payload; SpecError names the first wrong field."""
        if not isinstance(data, dict):
            raise SpecError("the job payload is not an object")
        if data.get("version") != SPEC_VERSION:
            raise SpecError(f"version: expected {SPEC_VERSION}, got {data.get('version')!r}")
        raw_panels = data.get("panels")
        if not isinstance(raw_panels, list) or not 1 <= len(raw_panels) <= MAX_FRAMES:
            raise SpecError(f"panels: 1 to {MAX_FRAMES} panels expected")
        panels = tuple(_panel(p, f"panels[{i}]") for i, p in enumerate(raw_panels))
        reference = data.get("reference_png")
        if reference is not None:
            if not isinstance(reference, str) or len(reference) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
                raise SpecError("reference_png: base64 text of a PNG expected")
            try:
                reference = base64.b64decode(reference, validate=True)
            except ValueError:
                raise SpecError("reference_png: not base64") from None
            if not reference.startswith(b"\x89PNG\r\n\x1a\n"):
                raise SpecError("reference_png: not a PNG")
        spec = cls(
            job_id=_integer(data, "job_id", 1, 2**62),
            board_id=_text(data, "board_id", 64),
            panels=panels,
            board_panels=_integer(data, "board_panels", len(panels), MAX_FRAMES),
            character=_text(data, "character", MAX_TEXT),
            style=_text(data, "style", MAX_TEXT, empty=True),
            negative_prompt=_text(data, "negative_prompt", MAX_TEXT, empty=True),
            preset=_text(data, "preset", 64),
            steps=_integer(data, "steps", 1, 200),
            guidance_scale=_number(data, "guidance_scale", 0.0, 30.0),
            ip_adapter_scale=_number(data, "ip_adapter_scale", 0.0, 1.0),
            width=_integer(data, "width", 8, 4096),
            height=_integer(data, "height", 8, 4096),
            seed=_integer(data, "seed", 0, 2**31 - 1),
            identity_lock=_boolean(data, "identity_lock"),
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            reference_png=reference,
        )
        for name in ("width", "height"):
            if getattr(spec, name) % 8:
                raise SpecError(f"{name}: a multiple of 8 expected")
        return spec


def _panel(raw: Any, where: str) -> PanelSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: an object expected")
    shot = _text(raw, "shot", 64, where=where)
    if shot not in SHOT_TYPES:
        raise SpecError(f"{where}.shot: one of {', '.join(SHOT_TYPES)} expected")
    return PanelSpec(
        frame_id=_integer(raw, "frame_id", 1, 10_000, where=where),
        position=_integer(raw, "position", 1, MAX_FRAMES, where=where),
        caption=_text(raw, "caption", MAX_TEXT, where=where),
        scene=_text(raw, "scene", MAX_TEXT, where=where),
        shot=shot,
        seed=_integer(raw, "seed", 0, 2**31 - 1, where=where),
    )


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _text(data: dict, key: str, limit: int, empty: bool = False, where: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
        raise SpecError(f"{_name(where, key)}: text of at most {limit} characters expected")
    return value


def _integer(data: dict, key: str, low: int, high: int, where: str = "") -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{_name(where, key)}: a whole number from {low} to {high} expected")
    return value


def _number(data: dict, key: str, low: float, high: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SpecError(f"{key}: a number from {low} to {high} expected")
    return float(value)


def _boolean(data: dict, key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise SpecError(f"{key}: true or false expected")
    return value


def spec_for(job: dict, board: dict, reference_png: bytes | None) -> JobSpec:
    """The spec of ``job`` (a store row) on ``board`` (the store's board, frames in display order)."""
    options = board["settings"]
    positions = {frame["id"]: i for i, frame in enumerate(board["frames"], start=1)}
    if job["kind"] == "frame":
        frames = [f for f in board["frames"] if f["id"] == job["frame_id"]]
    else:
        frames = sorted((f for f in board["frames"] if f["status"] != "done"), key=lambda f: f["id"])
    panels = tuple(PanelSpec(f["id"], positions[f["id"]], f["caption"], f["scene"] or f["caption"], f["shot"],
                             f["seed"]) for f in frames)
    return JobSpec(
        job_id=job["id"], board_id=board["id"], panels=panels, board_panels=len(board["frames"]),
        character=board["character"], style=board["style"], negative_prompt=options["negative_prompt"],
        preset=options["preset"], steps=options["steps"], guidance_scale=options["guidance_scale"],
        ip_adapter_scale=options["ip_adapter_scale"], width=options["width"], height=options["height"],
        seed=options["seed"], identity_lock=options["identity_lock"], model=options.get("model"),
        reference_png=reference_png if options["identity_lock"] else None,
    )


# --- Drawing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelPrompts:
    prompt: str
    negative_prompt: str
    dropped: str | None  # scene words cut to fit CLIP's 77 tokens


@dataclass(frozen=True)
class SavedPanel:
    """A finished panel: the PNG (with its parameters inside) and what the page shows."""

    frame_id: int
    png: bytes
    seed: int
    identity: dict | None
    attempts: int
    seconds: float


class Sink(Protocol):
    """Where a job's facts go, as they happen."""

    def prompts(self, prompts: dict[int, PanelPrompts]) -> None: ...

    def panel_started(self, frame_id: int) -> None: ...

    def panel_saved(self, panel: SavedPanel) -> None: ...

    def panel_failed(self, frame_id: int, error: str) -> None: ...

    def reference(self, png: bytes) -> None: ...

    def progress(self, progress: dict) -> None: ...


def draw(generator, spec: JobSpec, sink: Sink, cancel=None, judge: Callable | None = None,
         skip: frozenset[int] = frozenset()) -> None:
    """Draw ``spec``'s panels (but those in ``skip``, already delivered) with ``generator``."""
    from PIL import Image

    from local_image_generator import PanelJob, StoryboardRequest

    panels = [p for p in spec.panels if p.frame_id not in skip]
    prompts = {}
    jobs = []
    for panel in panels:
        built = build_prompt(PanelPlan(panel.frame_id, panel.scene, panel.shot), spec.character, spec.style,
                             spec.negative_prompt, generator.count_tokens)
        prompts[panel.frame_id] = PanelPrompts(built.prompt, built.negative_prompt, built.dropped or None)
        jobs.append(PanelJob(panel.frame_id, built.prompt, built.negative_prompt, panel.seed, panel.caption,
                             panel.shot))
    sink.prompts(prompts)
    if not jobs:
        return
    reference = portrait = None
    if spec.identity_lock and spec.reference_png is not None:
        with Image.open(io.BytesIO(spec.reference_png)) as image:
            reference = image.convert("RGB")
    elif spec.identity_lock:
        p = portrait_prompt(spec.character, spec.style, spec.negative_prompt, generator.count_tokens)
        portrait = PanelJob(0, p.prompt, p.negative_prompt, spec.seed, p.caption, p.shot)
    request = StoryboardRequest(tuple(jobs), spec.width, spec.height, spec.speed_preset, spec.identity_lock,
                                reference, portrait)
    tracker = Progress(sink, {p.frame_id: p.position for p in panels}, spec.board_panels, portrait is not None)
    generator.generate(
        request,
        on_progress=tracker.step,
        on_panel=lambda result: _deliver(spec, result, sink),
        on_reference=lambda image: sink.reference(_png(image)),
        cancel=cancel,
        judge=judge if spec.identity_lock else None,
    )


def _deliver(spec: JobSpec, result, sink: Sink) -> None:
    from exporting import encode_png

    if result.status != "done":
        sink.panel_failed(result.index, result.error or "The panel could not be drawn.")
        return
    meta = {
        "prompt": result.prompt,
        "negative_prompt": result.negative_prompt,
        "steps": spec.steps,
        "guidance_scale": spec.guidance_scale,
        "ip_adapter_scale": spec.ip_adapter_scale if spec.identity_lock else None,
        "seed": result.seed,
        "width": result.image.width,
        "height": result.image.height,
        "model": spec.model,
        "caption": result.caption,
        "shot": result.shot,
        "panel": result.index,
        "storyboard": spec.board_id,
    }
    sink.panel_saved(SavedPanel(result.index, encode_png(result.image, meta), result.seed, result.identity,
                                result.attempts, round(result.seconds, 3)))


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Progress events are coalesced to this rate: each event wakes every listener, and on a fast
# device (or the tiny model) a step takes milliseconds.
PROGRESS_INTERVAL_S = 0.1


class Progress:
    """How far the job is, for the progress bar: only ever forward.

    The job's units are its panels plus the generated reference portrait, if any; a unit
    counts by its steps. Panels are named by their position on the board ("Panel 2 of 3"
    when panel 2 is redrawn or resumed), not by their place in this job.
    """

    def __init__(self, sink: Sink, positions: dict[int, int], board_panels: int, with_portrait: bool):
        self.sink, self.positions, self.board_panels = sink, positions, board_panels
        self.units = len(positions) + (1 if with_portrait else 0)
        self._done: dict[int, float] = {}  # unit -> its best fraction (a redrawn panel restarts its steps)
        self.fraction = 0.0
        self.started = time.perf_counter()
        self._published = 0.0

    def step(self, index: int, step: int, steps: int) -> None:
        self._done[index] = max(self._done.get(index, 0.0), step / steps)
        self.fraction = max(self.fraction, min(sum(self._done.values()) / self.units, 1.0))
        position = self.positions.get(index)
        if step == 1 and position:
            self.sink.panel_started(index)
        now = time.perf_counter()
        progress = {
            "fraction": round(self.fraction, 4),
            "panel": position or 0,
            "of": self.board_panels,
            "label": f"Panel {position} of {self.board_panels}" if position else "Character reference",
            "step": step,
            "steps": steps,
            "eta_s": round((now - self.started) / self.fraction * (1 - self.fraction), 1),
        }
        if step in (1, steps) or now - self._published >= PROGRESS_INTERVAL_S:
            self._published = now
            self.sink.progress(progress)
