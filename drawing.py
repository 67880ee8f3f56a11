"""One job's drawing, the same in every backend: a typed spec in, facts out.

The studio turns a job and its board into a :class:`JobSpec` (everything the drawing
needs, nothing that points into the studio's database or files); whoever owns a
generator calls :func:`draw` with it and a :class:`Sink` that receives the facts
(prompts built, a panel started or saved, the generated reference, progress). The
embedded worker's sink writes to the store; a Redis worker's sink sends the facts to
the studio, which stays the one writer. A spec travels as JSON and is checked on the
way in like any other input (:meth:`JobSpec.from_json`: an ``errors.InputError`` names the
first wrong field).
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

from board_params import MAX_CHARACTERS, MAX_NAME_CHARS, SEED_LIMIT, portrait_seed
from config import MAX_FRAMES, PRESETS, SpeedPreset
from errors import InputError
from layouts import Layout, checked_layout
from prompt_enhancer import CAST_POSITIONS, SHOT_TYPES, PanelPlan, build_prompt, portrait_prompt

# 2: a cast (characters with their references, each panel's cast); 3: the speed preset whole;
# 4: a refine (its strength, each panel's source take and picture); 5: each panel's layout
SPEC_VERSION = 5
MAX_TEXT = 4000
MAX_REFERENCE_BYTES = 16 * 2**20


def _refused(field: str, expected: str) -> InputError:
    """A payload's wrong field; the message starts with the field, as a worker's log shows it."""
    return InputError(field, f"{field}: {expected}")


@dataclass(frozen=True)
class CharacterSpec:
    name: str  # "" for the one unnamed character of a cast of one
    traits: str
    reference_png: bytes | None = field(default=None, repr=False)  # uploaded or generated earlier


@dataclass(frozen=True)
class PanelSpec:
    frame_id: int
    position: int  # on the board, 1-based: "Panel 2 of 3"
    caption: str  # the user's words (PNG metadata, exports)
    scene: str  # what the prompt describes
    shot: str
    seed: int
    cast: tuple[int, ...] = (1,)  # who is in it: places in the job's characters (1-based), () = no one
    # A refine: the take it starts from, and that take's PNG (it travels with the spec, so a
    # Redis worker needs nothing of the studio's files).
    source_take: int | None = None
    source_png: bytes | None = field(default=None, repr=False)
    # Its layout as the store keeps it ({"kind", "strength", "poses"?, "file"}), and a sketch's
    # PNG (a pose is drawn again from its keypoints); None: no layout.
    layout: dict | None = None
    layout_png: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    board_id: str
    panels: tuple[PanelSpec, ...]
    board_panels: int  # how many panels the board has ("of 3")
    characters: tuple[CharacterSpec, ...]
    style: str
    negative_prompt: str
    preset: SpeedPreset  # as the board stored it, read back whole
    width: int
    height: int
    seed: int  # the board's seed: the generated portraits' come from it
    identity_lock: bool
    model: str | None = None
    strength: float | None = None  # a refine (img2img from each panel's source_png); None: drawn afresh
    consistent_look: bool = False  # the board's (consistent_look.py); a job queued before it carried none

    # -- JSON, for a job that travels --

    def to_json(self) -> dict:
        data = asdict(self)  # the preset too, as SpeedPreset.to_dict writes it
        data["panels"] = [{**asdict(panel), "cast": list(panel.cast),  # lists, not tuples
                           "source_png": _base64(panel.source_png), "layout_png": _base64(panel.layout_png)}
                          for panel in self.panels]
        data["characters"] = [{"name": c.name, "traits": c.traits,
                               "reference_png": _base64(c.reference_png)} for c in self.characters]
        data["version"] = SPEC_VERSION
        return data

    @classmethod
    def from_json(cls, data: Any) -> "JobSpec":
        """Read and check a payload; an InputError names the first wrong field."""
        if not isinstance(data, dict):
            raise _refused("payload", "an object expected")
        if data.get("version") != SPEC_VERSION:
            raise _refused("version", f"{SPEC_VERSION} expected, got {data.get('version')!r}")
        raw_characters = data.get("characters")
        if not isinstance(raw_characters, list) or not 1 <= len(raw_characters) <= MAX_CHARACTERS:
            raise _refused("characters", f"1 to {MAX_CHARACTERS} characters expected")
        characters = tuple(_character(c, f"characters[{i}]", len(raw_characters))
                           for i, c in enumerate(raw_characters))
        raw_panels = data.get("panels")
        if not isinstance(raw_panels, list) or not 1 <= len(raw_panels) <= MAX_FRAMES:
            raise _refused("panels", f"1 to {MAX_FRAMES} panels expected")
        panels = tuple(_panel(p, f"panels[{i}]", characters) for i, p in enumerate(raw_panels))
        try:
            preset = SpeedPreset.from_dict(data.get("preset"))
        except InputError as error:
            raise _refused(error.within("preset").field, error.message) from None
        spec = cls(
            job_id=_integer(data, "job_id", 1, 2**62),
            board_id=_text(data, "board_id", 64),
            panels=panels,
            board_panels=_integer(data, "board_panels", len(panels), MAX_FRAMES),
            characters=characters,
            style=_text(data, "style", MAX_TEXT, empty=True),
            negative_prompt=_text(data, "negative_prompt", MAX_TEXT, empty=True),
            preset=preset,
            width=_integer(data, "width", 8, 4096),
            height=_integer(data, "height", 8, 4096),
            seed=_integer(data, "seed", 0, SEED_LIMIT),
            identity_lock=_boolean(data, "identity_lock"),
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            strength=_strength(data),
            consistent_look=_boolean(data, "consistent_look") if "consistent_look" in data else False,
        )
        if {panel.source_png is not None for panel in spec.panels} != {spec.strength is not None}:
            raise _refused("strength", "a refine, and a picture for each of its panels, or neither")
        for name in ("width", "height"):
            if getattr(spec, name) % 8:
                raise _refused(name, "a multiple of 8 expected")
        return spec


def _base64(png: bytes | None) -> str | None:
    return base64.b64encode(png).decode() if png else None


def _png_field(raw: dict, key: str, where: str) -> bytes | None:
    """An optional PNG sent as base64 text."""
    encoded = raw.get(key)
    if encoded is None:
        return None
    if not isinstance(encoded, str) or len(encoded) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
        raise _refused(f"{where}.{key}", "base64 text of a PNG expected")
    try:
        png = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise _refused(f"{where}.{key}", "base64 expected") from None
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise _refused(f"{where}.{key}", "a PNG expected")
    return png


def _strength(data: dict) -> float | None:
    value = data.get("strength")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise _refused("strength", "a number in (0, 1] or null expected")
    return float(value)


def _character(raw: Any, where: str, count: int) -> CharacterSpec:
    if not isinstance(raw, dict):
        raise _refused(where, "an object expected")
    return CharacterSpec(name=_text(raw, "name", MAX_NAME_CHARS, empty=count == 1, where=where),
                         traits=_text(raw, "traits", MAX_TEXT, where=where),
                         reference_png=_png_field(raw, "reference_png", where))


def _panel(raw: Any, where: str, characters: tuple[CharacterSpec, ...]) -> PanelSpec:
    if not isinstance(raw, dict):
        raise _refused(where, "an object expected")
    shot = _text(raw, "shot", 64, where=where)
    if shot not in SHOT_TYPES:
        raise _refused(f"{where}.shot", f"one of {', '.join(SHOT_TYPES)} expected")
    cast = raw.get("cast")
    count = len(characters)
    if (not isinstance(cast, list) or len(cast) > max(CAST_POSITIONS) or len(set(cast)) != len(cast)
            or any(isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= count for i in cast)):
        raise _refused(f"{where}.cast", f"distinct places from 1 to {count} expected")
    layout_png = _png_field(raw, "layout_png", where)
    layout = raw.get("layout")
    if layout is not None:
        try:
            checked_layout(layout, f"{where}.layout", [characters[i - 1].name for i in cast], layout_png)
        except InputError as error:
            raise _refused(error.field, error.message) from None
    return PanelSpec(
        frame_id=_integer(raw, "frame_id", 1, 10_000, where=where),
        position=_integer(raw, "position", 1, MAX_FRAMES, where=where),
        caption=_text(raw, "caption", MAX_TEXT, where=where),
        scene=_text(raw, "scene", MAX_TEXT, where=where),
        shot=shot,
        seed=_integer(raw, "seed", 0, SEED_LIMIT, where=where),
        cast=tuple(cast),
        source_take=None if raw.get("source_take") is None else _integer(raw, "source_take", 1, 2**31, where=where),
        source_png=_png_field(raw, "source_png", where),
        layout=layout,
        layout_png=layout_png,
    )


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _text(data: dict, key: str, limit: int, empty: bool = False, where: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
        raise _refused(_name(where, key), f"text of at most {limit} characters expected")
    return value


def _integer(data: dict, key: str, low: int, high: int, where: str = "") -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refused(_name(where, key), f"a whole number from {low} to {high} expected")
    return value


def _boolean(data: dict, key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise _refused(key, "true or false expected")
    return value


def spec_for(job: dict, board: dict, references: dict[int, bytes],
             sources: dict[int, tuple[int, bytes]] | None = None, layouts: dict[int, bytes] | None = None) -> JobSpec:
    """The spec of ``job`` (a store row) on ``board`` (the store's board, frames in display
    order); ``references``: the PNG of each character (1-based) that has one; ``sources``: a
    refine's (Store.take_pngs), each refined panel's chosen take and its PNG; ``layouts``: each
    sketched panel's sketch PNG (Store.sketch_pngs)."""
    params = board["params"]
    positions = {frame["id"]: i for i, frame in enumerate(board["frames"], start=1)}
    refine = job["kind"] == "refine"
    if job["kind"] == "frame":
        frames = [f for f in board["frames"] if f["id"] == job["frame_id"]]
    elif refine:  # the panels whose take it has (one, or each drawn panel of the board)
        frames = sorted((f for f in board["frames"] if f["id"] in (sources or {})), key=lambda f: f["id"])
    else:
        frames = sorted((f for f in board["frames"] if f["status"] != "done"), key=lambda f: f["id"])
    source = (sources or {}).get
    panels = tuple(PanelSpec(f["id"], positions[f["id"]], f["caption"], f["scene"] or f["caption"], f["shot"],
                             f["seed"], tuple(params.position(name) for name in f["cast"]),
                             *(source(f["id"]) or (None, None)), f.get("layout"), (layouts or {}).get(f["id"]))
                   for f in frames)
    characters = tuple(CharacterSpec(c.name, c.traits, references.get(k) if params.identity_lock else None)
                       for k, c in enumerate(params.characters, start=1))
    return JobSpec(
        job_id=job["id"], board_id=board["id"], panels=panels, board_panels=len(board["frames"]),
        characters=characters, style=params.style, negative_prompt=params.negative_prompt,
        preset=PRESETS[job["preset"]] if refine else params.preset, width=params.width, height=params.height,
        seed=params.seed, identity_lock=params.identity_lock, model=params.model or None,
        strength=job["strength"] if refine else None, consistent_look=params.consistent_look,
    )


# --- Drawing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelPrompts:
    prompt: str
    negative_prompt: str
    dropped: str | None  # scene words cut to fit CLIP's 77 tokens
    traits_dropped: dict[str, str] | None = None  # name -> trait phrases cut, for those cut


@dataclass(frozen=True)
class SavedPanel:
    """A finished panel: the PNG (with its parameters inside: what really drew it, so they
    travel wherever the PNG does) and what the page shows."""

    frame_id: int
    png: bytes
    seed: int
    identity: dict | None
    attempts: int
    seconds: float
    mode: str | None = None  # the speed preset's name (None: a worker from before takes did not say)
    ran: dict | None = None  # what drew it (local_image_generator.PanelRun), as the take records it
    parent: int | None = None  # the take it was made from (a refine); None: drawn afresh


class Sink(Protocol):
    """Where a job's facts go, as they happen."""

    def prompts(self, prompts: dict[int, PanelPrompts]) -> None: ...

    def panel_started(self, frame_id: int) -> None: ...

    def panel_saved(self, panel: SavedPanel) -> None: ...

    def panel_failed(self, frame_id: int, error: str) -> None: ...

    def reference(self, character: int, png: bytes) -> None: ...  # a generated portrait (character 1-based)

    def progress(self, progress: dict) -> None: ...

    def preview(self, preview: dict) -> None: ...  # a panel's live preview: for the page only, never stored


def draw(generator, spec: JobSpec, sink: Sink, cancel=None, judge: Callable | None = None,
         skip: frozenset[int] = frozenset(), previews: bool = True, seconds_per_pass: float | None = None):
    """Draw ``spec``'s panels (but those in ``skip``, already delivered) with ``generator``;
    returns its StoryboardResult (None: nothing to draw). ``previews``: a live preview of each
    panel at each step (settings.live_previews); ``seconds_per_pass``: a UNet pass's measured
    time on this machine (step_time.py), for the progress bar's first estimate."""
    from local_image_generator import CharacterLock, PanelJob, StoryboardRequest

    panels = [p for p in spec.panels if p.frame_id not in skip]
    prompts = {}
    jobs = []
    for panel in panels:
        layout = Layout.from_json(panel.layout, panel.layout_png) if panel.layout is not None else None
        places = _left_to_right(panel.cast, layout, spec.characters)
        present = [spec.characters[i - 1] for i in places]
        built = build_prompt(PanelPlan(panel.caption, panel.scene, panel.shot), [c.traits for c in present],
                             spec.style, spec.negative_prompt, generator.count_tokens)
        cut = {c.name: words for c, words in zip(present, built.traits_dropped) if words}
        prompts[panel.frame_id] = PanelPrompts(built.prompt, built.negative_prompt, built.dropped or None, cut or None)
        jobs.append(PanelJob(panel.frame_id, built.prompt, built.negative_prompt, panel.seed, panel.caption,
                             panel.shot, tuple(i - 1 for i in places),
                             init_image=_image(panel.source_png) if panel.source_png else None, layout=layout,
                             regions=layout.regions([c.name for c in present]) if layout is not None else None))
    sink.prompts(prompts)
    if not jobs:
        return None
    shown = {i for panel in panels for i in panel.cast}
    locks, portraits = [], {}
    for k, character in enumerate(spec.characters, start=1):
        if not spec.identity_lock or k not in shown:
            locks.append(CharacterLock())
        elif character.reference_png is not None:
            locks.append(CharacterLock(reference=_image(character.reference_png)))
        else:
            p = portrait_prompt(character.traits, spec.style, spec.negative_prompt, generator.count_tokens)
            portraits[k - 1] = character.name  # a unit of the progress bar beside the panels
            locks.append(CharacterLock(portrait=PanelJob(None, p.prompt, p.negative_prompt,
                                                         portrait_seed(spec.seed, k), p.caption, p.shot)))
    request = StoryboardRequest(tuple(jobs), spec.width, spec.height, spec.preset, spec.identity_lock,
                                characters=tuple(locks), strength=spec.strength, consistent_look=spec.consistent_look)
    # A step's share of a panel's whole cost (its decode and encodes too), in measured time.
    step_s = seconds_per_pass and seconds_per_pass * spec.preset.passes_per_panel / request.num_steps
    tracker = Progress(sink, {p.frame_id: p.position for p in panels}, spec.board_panels, portraits, step_s)
    by_id = {panel.frame_id: panel for panel in panels}
    writer = PanelWriter(lambda result: _deliver(spec, result, sink, by_id[result.index]))
    try:
        result = generator.generate(
            request,
            on_progress=tracker.step,
            on_panel=writer.put,
            on_reference=lambda character, image: sink.reference(character + 1, _png(image)),
            cancel=cancel,
            judge=judge if spec.identity_lock else None,
            on_preview=tracker.preview if previews else None,
        )
    except BaseException:
        writer.close(raise_error=False)  # the panels finished before the error are still saved
        raise
    writer.close()
    return result


class PanelWriter:
    """Finished panels are encoded, saved and reported on a second thread while the next
    one draws, so the device never waits for PNG encoding, fsync or database writes. It
    never touches the pipeline (one pipeline, one caller). At most ``depth`` panels wait;
    a write that failed (a full disk) ends the job at the next panel, or at the end."""

    def __init__(self, deliver: Callable[[Any], None], depth: int = 2):
        import queue
        import threading

        self._deliver = deliver
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="storyboard-panel-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (result := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._deliver(result)
                except BaseException as error:  # noqa: BLE001 - handed to the drawing thread
                    self._error = error

    def put(self, result) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(result)

    def close(self, raise_error: bool = True) -> None:
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


def _left_to_right(cast: tuple[int, ...], layout: Layout | None, characters: tuple[CharacterSpec, ...]):
    """The panel's cast (1-based places) in the order the picture shows them: as the cast
    lists them, or as a pose stands them, left to right (the prompt names them in that order
    and the identity lock holds each in its place)."""
    if layout is None:
        return cast
    by_name = {characters[i - 1].name: i for i in cast}
    return tuple(by_name[name] for name in layout.left_to_right(list(by_name)))


def _image(png: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")


def _deliver(spec: JobSpec, result, sink: Sink, panel: PanelSpec) -> None:
    from exporting import encode_png

    if result.status != "done":
        sink.panel_failed(result.index, result.error or "The panel could not be drawn.")
        return
    names = [spec.characters[i - 1].name for i in panel.cast]
    layout = Layout.from_json(panel.layout) if panel.layout is not None else None
    shown = [spec.characters[i - 1].name for i in _left_to_right(panel.cast, layout, spec.characters)]
    ran = result.ran.to_json() if result.ran is not None else None
    if ran is not None and "layout" in ran:  # the take keeps the layout it was drawn with, its file too
        ran["layout"] = {**panel.layout, **ran["layout"]}
    identity = result.identity
    if identity is not None and "characters" in identity:  # the judge scores by place; the page shows names
        identity = {**identity, "characters": [{"name": name, **score}  # in the picture's order, as judged
                                               for name, score in zip(shown, identity["characters"])]}
    meta = {
        "prompt": result.prompt,
        "negative_prompt": result.negative_prompt,
        # What drew it, as the generator ran it (steps, CFG, sampler, the IP-Adapter scale after
        # the cast clamp, the LoRA, the layout's adapter), never the board's settings echoed.
        **({k: v for k, v in ran.items() if k != "layout"} if ran is not None else {}),
        **({"layout": {k: v for k, v in ran["layout"].items() if k != "file"}} if ran and "layout" in ran else {}),
        "seed": result.seed,
        "width": result.image.width,
        "height": result.image.height,
        "model": spec.model,
        "caption": result.caption,
        "shot": result.shot,
        "cast": names,
        "panel": result.index,
        "storyboard": spec.board_id,
    }
    sink.panel_saved(SavedPanel(result.index, encode_png(result.image, meta), result.seed, identity,
                                result.attempts, round(result.seconds, 3), mode=spec.preset.name,
                                ran=ran,
                                parent=panel.source_take))


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Progress events are coalesced to this rate: each event wakes every listener, and on a fast
# device (or the tiny model) a step takes milliseconds.
PROGRESS_INTERVAL_S = 0.1


class Progress:
    """How far the job is, for the progress bar: only ever forward.

    The job's units are its panels plus the generated reference portraits, if any; a unit
    counts by its steps. Panels are named by their position on the board ("Panel 2 of 3"
    when panel 2 is redrawn or resumed), not by their place in this job; a portrait by its
    character's name.

    The time left comes from measured step times: this job's own from its second step on
    (the first step also waited for the mode switch, the encoders, the portraits), before that
    ``seconds_per_step`` as measured on earlier boards, and none when neither is known.
    """

    def __init__(self, sink: Sink, positions: dict[int, int], board_panels: int, portraits: dict[int, str],
                 seconds_per_step: float | None = None, clock: Callable[[], float] = time.perf_counter):
        self.sink, self.positions, self.board_panels = sink, positions, board_panels
        self.seconds_per_step, self._clock = seconds_per_step, clock
        self._first: tuple[float, float] | None = None  # (time, fraction) at the first step reported
        self.portraits = portraits  # the portrait's character (0-based place) -> its name ("" unnamed)
        self.units = len(positions) + len(portraits)
        # (frame id, portrait's character) -> its best fraction (a redrawn panel restarts its steps)
        self._done: dict[tuple, float] = {}
        self.fraction = 0.0
        self._published = 0.0

    def step(self, job, step: int, steps: int) -> None:
        """``job``: the generator's PanelJob, a panel (its index) or a portrait (portrait_of)."""
        unit = (job.index, job.portrait_of)
        self._done[unit] = max(self._done.get(unit, 0.0), step / steps)
        self.fraction = max(self.fraction, min(sum(self._done.values()) / self.units, 1.0))
        position = self.positions.get(job.index)
        if step == 1 and position:
            self.sink.panel_started(job.index)
        now = self._clock()
        progress = {
            "fraction": round(self.fraction, 4),
            "panel": position or 0,
            "of": self.board_panels,
            "label": f"Panel {position} of {self.board_panels}" if position else self._portrait_label(job.portrait_of),
            "step": step,
            "steps": steps,
            "eta_s": self._eta(now, steps),
        }
        if step in (1, steps) or now - self._published >= PROGRESS_INTERVAL_S:
            self._published = now
            self.sink.progress(progress)

    def _eta(self, now: float, steps: int) -> float | None:
        if self._first is None:
            self._first = (now, self.fraction)
        started, fraction = self._first
        if self.fraction > fraction:  # this job's own pace since its first step
            seconds = (now - started) / (self.fraction - fraction) * (1 - self.fraction)
        elif self.seconds_per_step:
            seconds = (1 - self.fraction) * self.units * steps * self.seconds_per_step
        else:
            return None
        return round(seconds, 1)

    def preview(self, job, step: int, steps: int, image) -> None:
        """A panel's picture after ``step``: every one is sent; the event hub keeps only the
        newest of each panel, so a slow page skips previews and never holds up the drawing."""
        from previews import data_url

        self.sink.preview({"frame_id": job.index, "panel": self.positions.get(job.index, 0), "step": step,
                           "steps": steps, "image": data_url(image)})

    def _portrait_label(self, character: int | None) -> str:
        name = self.portraits.get(character)
        return f"Character reference: {name}" if name else "Character reference"
