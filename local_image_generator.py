"""SDXL base 1.0 with an IP-Adapter identity lock: one pipeline per process.

Reads like a diffusers pipeline: ``__init__`` only stores ready parts, :meth:`load` loads
them (model_loading.py), and :meth:`StoryboardGenerator.generate` checks its inputs and then
runs in plain steps. The lightning and draft modes are the same pipeline with a distilled LoRA
each (one adapter per family, the mode's fused into the UNet or switched on) and its family's
scheduler, without CFG; nothing is reloaded to switch. A draft decodes with TAESDXL, a module
of its own beside SDXL's VAE. A compiled UNet's graphs are kept track of in unet_compile.py, CLIP scoring lives in
clip_scoring.py. The generator is not thread-safe by nature (a diffusers pipeline is not), so
every call takes one lock; in the app a single worker thread owns it anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from board_params import retry_seed
from clip_scoring import ClipScorer, closer
from config import ASPECTS, DISTILLED_FAMILIES, LIGHTNING, MAX_FRAMES, PRESETS, Settings, SpeedPreset
from errors import InputError
from model_loading import (  # the loading API, also public here: callers load through the generator
    ModelNotAvailable,
    apply_cpu_threads,
    channels_last,
    distilled_scheduler,
    load_ip_adapter,
    load_lora,
    known_device,
    load_pipeline,
    offloaded,
    twin,
    place,
    quiet_library_logs,
    resolve_device,
    resolve_dtype,
)
from previews import PreviewDecoder
from prompt_enhancer import CAST_POSITIONS
from t2i_adapter import LayoutAdapters
from unet_compile import CompiledGraphs, GraphKey, compile_unet, save_kernels

__all__ = [
    "CAST_IP_ADAPTER_SCALE", "CharacterLock", "GenerationCancelled", "ModelNotAvailable", "PanelJob", "PanelResult",
    "PanelRun", "StoryboardGenerator", "StoryboardRequest", "StoryboardResult", "apply_cpu_threads",
    "channels_last", "free_device_memory", "quiet_library_logs", "resolve_device", "resolve_dtype",
]

log = logging.getLogger(__name__)


class GenerationCancelled(Exception):
    """Raised inside a generate call when its cancel event is set."""


# --- Requests and results ------------------------------------------------------------------


@dataclass(frozen=True)
class PanelJob:
    """One picture to draw, prompts already built (see prompt_enhancer), seed fixed: a panel,
    or a character's reference portrait (``CharacterLock.portrait``)."""

    index: int | None  # a panel's id, the caller's (the studio's frame id); None for a portrait
    prompt: str
    negative_prompt: str
    seed: int
    caption: str = ""
    shot: str = ""
    # Who is in it: places in the request's characters (0-based), left to right in the
    # picture; () = no one. None: the first character (a request of one character).
    cast: tuple[int, ...] | None = None
    # A portrait: the place of the character it is of (0-based). The generator sets it from
    # the lock that holds the portrait, so the progress it reports names the character.
    portrait_of: int | None = None
    # A refine: the picture (PIL, at the request's size) whose composition it keeps.
    init_image: object | None = None
    # The panel's layout (layouts.Layout), which a T2I-Adapter makes it follow; with a pose per
    # character, ``regions``: where each of ``cast`` stands, (left, top, right, bottom) in 0..1.
    layout: object | None = None
    regions: tuple[tuple[float, float, float, float], ...] | None = None

    @property
    def characters(self) -> tuple[int, ...]:
        return (0,) if self.cast is None else self.cast


@dataclass(frozen=True)
class CharacterLock:
    """One character's identity lock: its reference image (uploaded, or drawn earlier), or
    the portrait to draw first as one. Neither: the character is in none of the panels."""

    reference: object | None = None  # PIL image
    portrait: PanelJob | None = None


@dataclass(frozen=True)
class StoryboardRequest:
    panels: tuple[PanelJob, ...]
    width: int
    height: int
    preset: SpeedPreset
    identity_lock: bool = True
    reference: object | None = None  # PIL image uploaded by the user
    portrait: PanelJob | None = None  # drawn first as the reference when locked without one
    steps: int | None = None  # overrides preset.steps (benchmarks)
    # A cast (each panel's PanelJob.cast says who is in it); empty: one character, locked
    # with ``reference`` or ``portrait`` above.
    characters: tuple[CharacterLock, ...] = ()
    # A refine (img2img from each panel's init_image): how far from its picture it may go,
    # 0-1. It runs the last strength x steps steps of the schedule, as diffusers does.
    strength: float | None = None
    # The consistent look (consistent_look.py): each panel also attends to its characters'
    # references in the up blocks' self-attention. Only with the identity lock; not in one step.
    consistent_look: bool = False

    @property
    def num_steps(self) -> int:
        return self.steps or self.preset.steps

    @property
    def denoising_steps(self) -> int:
        """The steps that run: all of them, or a refine's share (diffusers' img2img rounds down)."""
        if self.strength is None:
            return self.num_steps
        return min(int(self.num_steps * self.strength), self.num_steps)

    @property
    def locks(self) -> tuple[CharacterLock, ...]:
        return self.characters or (CharacterLock(self.reference, self.portrait),)

    def portraits_to_draw(self) -> frozenset[int]:
        """The places of the characters whose reference is their portrait, drawn first: locked,
        with no reference given, and shown in some panel (no portrait for a character in none)."""
        if not self.identity_lock:
            return frozenset()
        shown = {i for job in self.panels for i in job.characters}
        return frozenset(i for i, lock in enumerate(self.locks)
                         if lock.reference is None and lock.portrait is not None and i in shown)

    def reference_kind(self, first_reference) -> str | None:
        """How the first character's reference came: "uploaded", "generated" or None."""
        if first_reference is None:
            return None
        return "uploaded" if self.locks[0].reference is not None else "generated"


# diffusers' scheduler classes by the sampler names AUTOMATIC1111 gives them, which other
# SD tools read from a PNG's parameters; a scheduler not listed goes by its class name.
A1111_SAMPLERS = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DDIMScheduler": "DDIM",
    "LCMScheduler": "LCM",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "UniPCMultistepScheduler": "UniPC",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
    "PNDMScheduler": "PLMS",
}


@dataclass(frozen=True)
class PanelRun:
    """What really drew a panel, for its metadata: taken from the run, not from the request."""

    scheduler: str  # the diffusers scheduler class
    sampler: str  # ... by its AUTOMATIC1111 name (A1111_SAMPLERS)
    steps: int
    guidance_scale: float  # 1 or below: no classifier-free guidance
    # The IP-Adapter scale every character in the panel was held at (one adapter, one scale:
    # clamped to CAST_IP_ADAPTER_SCALE for several); None: the lock held no one.
    ip_adapter_scale: float | None
    lora: str | None  # the distilled family (config.DISTILLED_FAMILIES) whose LoRA was on; None: SDXL alone
    decoder: str = "vae"  # what decoded it (config.DECODERS): SDXL's VAE, or TAESDXL for a draft
    # A refine: its strength, and the steps that ran (strength x steps: its cost in UNet passes,
    # twice that while guided). None for a panel drawn afresh, and then left out of the JSON.
    strength: float | None = None
    denoising_steps: int | None = None
    # The layout's T2I-Adapter as it ran (t2i_adapter.AdapterRun.to_json); None without one,
    # and then left out of the JSON.
    layout: dict | None = None
    # The consistent look: the characters (1-based, as the board numbers them) whose references
    # the panel shared attention with, at the sampling rate; None: drawn without it (left out).
    look_references: tuple[int, ...] | None = None
    look_sampling_rate: float | None = None

    def to_json(self) -> dict:
        facts = dataclasses.asdict(self)
        left_out = (() if self.strength is not None else ("strength", "denoising_steps")) + (
            () if self.layout is not None else ("layout",)) + (
            () if self.look_references is not None else ("look_references", "look_sampling_rate"))
        if self.look_references is not None:
            facts["look_references"] = list(self.look_references)
        return {k: v for k, v in facts.items() if k not in left_out}


@dataclass
class PanelResult:
    index: int | None  # the job's
    prompt: str
    negative_prompt: str
    seed: int
    caption: str
    shot: str
    status: str  # "done" | "failed"
    image: object | None = None  # PIL image
    pixels: object | None = None  # the same as float32 numpy HxWx3 in 0..1, before rounding
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 1
    vae_fp32_retry: bool = False
    identity: dict | None = None
    ran: PanelRun | None = None  # None: the pipeline never finished for it (out of memory)

    @classmethod
    def of(cls, job: PanelJob, status: str, **facts) -> "PanelResult":
        return cls(job.index, job.prompt, job.negative_prompt, job.seed, job.caption, job.shot, status, **facts)


@dataclass
class StoryboardResult:
    panels: list[PanelResult]
    reference: object | None  # the first character's
    reference_kind: str | None  # "uploaded" | "generated" | None
    timings: dict = field(default_factory=dict)
    references: tuple = ()  # every character's, in the request's order (None: not needed)


ProgressFn = Callable[[PanelJob, int, int], None]  # (the panel or portrait, step, total steps)
PreviewFn = Callable[[PanelJob, int, int, object], None]  # (the panel, step, total steps, a small PIL image)

# The IP-Adapter scale of a panel with several characters is kept in this range: above it
# the references blend into one face, below it they hardly hold (diffusers' maintainers,
# issue #8626: 0.5-0.7 with region masks).
CAST_IP_ADAPTER_SCALE = (0.5, 0.7)


# --- Device memory ---------------------------------------------------------------------------


def _blank(width: int, height: int, shade: int = 128):
    from PIL import Image

    return Image.new("RGB", (width, height), (shade, shade, shade))


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_device_memory(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()


# Working memory one SDXL panel needs per megapixel in fp16 with CFG (latents, attention,
# VAE decode), an estimate: a batch that still runs out of memory is redrawn one by one.
PANEL_BYTES_PER_MEGAPIXEL = 1.5 * 2**30

OOM_MESSAGE = (
    "The device ran out of memory while drawing this panel. Try a faster speed mode, "
    "a smaller aspect ratio, fewer panels at once (STORYBOARD_BATCH_PANELS=off), "
    "or close other programs using the GPU."
)


# --- The generator -------------------------------------------------------------------------


class StoryboardGenerator:
    """Owns one SDXL pipeline (with its IP-Adapter, once loaded) and draws storyboards."""

    def __init__(self, pipe, settings: Settings, device: str, dtype, load_seconds: float = 0.0):
        self.pipe = pipe
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.load_seconds = load_seconds
        self._lock = threading.RLock()  # re-entered by clip_similarity inside generate
        self._scorer = ClipScorer(pipe, device, self._lock)
        self._plain_processors: dict | None = None
        self._ip_processors: dict | None = None
        self._ip_projection = None
        self._identity_mode: bool | None = None
        self._ip_scale = None  # one 0-d tensor every IP-Adapter processor reads, changed in place
        self._fold = None  # cross-attention constants kept for one pipeline call (attention.Fold)
        self._look = None  # what the consistent look's processors read during a UNet call
        self.compiled = False  # the UNet runs under torch.compile (CUDA, STORYBOARD_COMPILE_UNET)
        self.graphs = CompiledGraphs()  # ... which of its graphs are compiled, which wait
        self._loras: dict[str, str] = {}  # the distilled families whose LoRA is loaded -> its weight file
        self._family: str | None = None  # the family whose LoRA (and scheduler) is on; None: SDXL alone
        self._fused = False  # ... with its LoRA fused into the UNet's weights
        self._schedulers: dict[str | None, object] = {}  # family -> its scheduler; None: SDXL's own
        self.text_encoder_calls = 0  # counted for the "computed once per board" guarantee
        self.image_encoder_calls = 0
        self.previews = PreviewDecoder(settings, device, dtype)  # TAESDXL, loaded on the first preview or draft
        self.layouts = LayoutAdapters(settings, device, dtype)  # the T2I-Adapters, loaded on a layout's first use

    # -- loading --

    @classmethod
    def load(cls, settings: Settings) -> "StoryboardGenerator":
        """Load SDXL (and the IP-Adapter when the identity lock is on by default)."""
        started = time.perf_counter()
        apply_cpu_threads(settings)
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.precision, device)
        pipe = load_pipeline(settings, device, dtype)
        generator = cls.from_pipeline(place(pipe, settings, device), settings, device, dtype)
        generator.load_seconds = time.perf_counter() - started
        what = (f"the tiny random SDXL + IP-Adapter (offline demo, built in {settings.cache_dir})"
                if settings.model == "tiny" else settings.sdxl_model)
        log.info("loaded %s on %s (%s) in %.1f s", what, device, str(dtype).replace("torch.", ""),
                 generator.load_seconds)
        return generator

    @classmethod
    def from_pipeline(cls, pipe, settings: Settings, device: str, dtype) -> "StoryboardGenerator":
        """Prepare a pipeline already on ``device`` (memory format, attention, adapter, compile)."""
        import torch

        pipe.set_progress_bar_config(disable=True)
        if not offloaded(settings, device):
            known_device(pipe, device)
        if channels_last(settings, device):
            pipe.unet.to(memory_format=torch.channels_last)
        from attention import Fold
        from consistent_look import Look

        generator = cls(pipe, settings, device, dtype)
        generator._fold = Fold()
        generator._look = Look()
        generator._prepare_attention()
        if settings.use_identity_lock:
            generator._ensure_adapter()
        if settings.preset_for().distilled:
            generator._ensure_lora(settings.preset_for().family)  # the default mode's, now (and before compiling)
        if settings.compile_unet and device == "cuda":
            generator._compile()
        return generator

    def _compile(self, backend=None) -> None:
        """torch.compile the UNet (unet_compile.compile_unet); ``backend``: another backend (tests)."""
        self.pipe.unet = compile_unet(self.pipe.unet, self.settings, backend)
        self.compiled = True

    # -- the compiled UNet's graphs (unet_compile.py) --
    #
    # A call whose graph is not compiled yet runs the UNet eagerly and queues its key; the
    # worker compiles queued keys when it has nothing to draw.

    def plan_warm_up(self, sizes: Sequence[tuple[int, int]] | None = None) -> int:
        """Queue the default mode's graph at every size a board can ask for (or ``sizes``);
        returns how many graphs wait to be compiled (0 without compile)."""
        if not self.compiled:
            return 0
        cast = 1 if self.settings.use_identity_lock else 0
        family = self.settings.preset_for().family
        sizes = sorted(set(sizes or (self.settings.size_for(aspect) for aspect in ASPECTS)))
        self.graphs.queue((width, height, cast, family, False) for width, height in sizes)
        return len(self.graphs)

    @property
    def pending_warm_ups(self) -> int:
        return len(self.graphs)

    def warm_up_next(self) -> bool:
        """Compile the next queued graph by drawing a throwaway board through it: three panels
        of two steps, the first alone and the other two in one call, so batch 1 and batch n,
        with and without guidance (the CFG cutoff). Saves the kernels for the next start once
        the queue is empty. Returns False when nothing was queued."""
        key = self.graphs.take()
        if key is None:
            return False
        try:
            self.generate(self._warm_up_request(*key))
        except Exception:  # noqa: BLE001 - that graph stays eager; drawing goes on
            self.graphs.failed(key)
            log.exception("could not compile the UNet for %s; such panels are drawn without compile", key)
        if not self.pending_warm_ups:
            save_kernels(self.settings)
        return True

    def warm_up(self, on_progress: Callable[[int, int], None] | None = None,
                sizes: Sequence[tuple[int, int]] | None = None) -> float:
        """Compile the default mode's graph at every size (or ``sizes``, a benchmark's) and
        every other waiting one now, reporting (done, of). Returns the seconds it took."""
        self.plan_warm_up(sizes)
        return self.compile_pending(on_progress)

    def compile_pending(self, on_progress: Callable[[int, int], None] | None = None) -> float:
        """Compile every waiting graph now (those of the boards drawn without compile so far),
        reporting (done, of) as it goes. Returns the seconds it took."""
        started = time.perf_counter()
        total = self.pending_warm_ups
        if not total:
            return 0.0
        if on_progress:
            on_progress(0, total)
        done = 0
        while self.warm_up_next():
            done += 1
            if on_progress:
                on_progress(done, done + self.pending_warm_ups)
        return time.perf_counter() - started

    def _warm_up_request(self, width: int, height: int, cast: int, family: str | None,
                         look: bool = False) -> StoryboardRequest:
        default = self.settings.preset_for()
        preset = default if default.family == family else next(
            preset for preset in map(self.settings.preset_for, PRESETS) if preset.family == family)
        distilled = preset.distilled
        people = tuple(range(cast))
        jobs = tuple(PanelJob(n, "warm-up", "", n, cast=people) for n in (1, 2, 3))
        locks = tuple(CharacterLock(reference=_blank(64, 64, shade=40 * k)) for k in people)
        return StoryboardRequest(jobs, width, height, preset, identity_lock=bool(cast), characters=locks,
                                 steps=None if distilled else 2, consistent_look=look)

    def _graph_key(self, run: "_Run", width: int, height: int) -> GraphKey:
        return width, height, run.cast_size, self._family, bool(run.look)

    @contextlib.contextmanager
    def _unet_for(self, run: "_Run", width: int, height: int, layout: bool = False):
        """The compiled UNet when its graph for this call is compiled; else the UNet itself
        (the key queued for warm_up_next; not for a ``layout`` call, which always runs the
        UNet itself). Yields whether it is the UNet itself."""
        key = self._graph_key(run, width, height)
        if not self.compiled or (self.graphs.is_warm(key) and not layout):
            yield not self.compiled
            return
        if not layout:  # the adapter's residuals are other inputs: such a call runs eagerly, uncompiled
            self.graphs.queue([key])
        compiled, self.pipe.unet = self.pipe.unet, self._unet_module()
        try:
            yield True
        finally:
            self.pipe.unet = compiled

    # -- attention and LoRA switching --

    def _prepare_attention(self) -> None:
        """Decide the attention processors used when the identity lock is off."""
        from attention import fold_processors, use_sdpa
        from consistent_look import install

        unet = self.pipe.unet
        wants_slicing = (self.settings.enable_attention_slicing and self.device == "mps") or (
            self.settings.force_attention_slicing
        )
        if wants_slicing:
            unet.set_attention_slice("auto")
        self._plain_processors = install(fold_processors(dict(unet.attn_processors), self._fold), self._look)
        unet.set_attn_processor(dict(self._plain_processors))
        if wants_slicing:
            use_sdpa(unet)  # for load_ip_adapter, which cannot start from sliced ones
        self._identity_mode = None

    def _ensure_adapter(self) -> None:
        from attention import FoldedImageProjection, fold_processors
        from consistent_look import install

        if self._ip_processors is not None:
            return
        unet = self.pipe.unet
        load_ip_adapter(self.pipe, self.settings)
        self.pipe.image_encoder.to(self.device)
        self._ip_processors = install(fold_processors(dict(unet.attn_processors), self._fold), self._look)
        self._ip_projection = FoldedImageProjection(unet.encoder_hid_proj, self._fold)
        unet.encoder_hid_proj = self._ip_projection
        unet.set_attn_processor(dict(self._ip_processors))
        self._share_scale_tensor()
        self._identity_mode = True
        if self._plain_processors and any("Sliced" in type(p).__name__ for p in self._plain_processors.values()):
            log.info("attention slicing is skipped while the identity lock is on (it would replace the IP-Adapter)")

    def _share_scale_tensor(self) -> None:
        """Give every IP-Adapter processor one shared 0-d scale tensor.

        A compiled UNet guards on Python floats, so a new scale would recompile it; a
        tensor changed in place is just an input (and the folded processors never branch on it).
        """
        import torch

        self._ip_scale = torch.tensor(1.0, device=self.device)
        for processor in self._ip_processors.values():
            if hasattr(processor, "scale"):
                processor.scale = [self._ip_scale] * len(processor.scale)

    def _set_ip_scale(self, value: float) -> None:
        self._ip_scale.fill_(value)

    def _folding(self, eager: bool):
        """Within one pipeline call, compute the cross-attention constants once (attention.py);
        not through a compiled UNet, whose graphs would guard on the kept values."""
        if self.settings.fold_cross_attention and eager:
            return self._fold.scope()
        return contextlib.nullcontext()

    def _set_identity_mode(self, on: bool) -> None:
        """Swap between the IP-Adapter processors and the plain (maybe sliced) ones.

        With the lock off no IP-Adapter work is done at all, and nothing is reloaded when
        it is switched back on.
        """
        if on:
            self._ensure_adapter()
        if self._identity_mode == on:
            return
        unet = self.pipe.unet
        # The projection's own attention layers count among the UNet's processors, so it
        # is attached before (and detached before) the processors are set.
        unet.encoder_hid_proj = self._ip_projection if on else None
        unet.config.encoder_hid_dim_type = "ip_image_proj" if on else None
        unet.set_attn_processor(dict(self._ip_processors if on else self._plain_processors))
        self._identity_mode = on

    def _unet_module(self):
        """The UNet itself, also under torch.compile's wrapper (which diffusers' LoRA calls skip)."""
        return getattr(self.pipe.unet, "_orig_mod", self.pipe.unet)

    def _ensure_lora(self, family: str) -> None:
        """Load ``family``'s LoRA once, as a switched-off adapter of that name, and build its scheduler."""
        if family in self._loras:
            return
        wrapper, unet = self.pipe.unet, self._unet_module()
        self.pipe.unet = unet
        try:
            load_lora(self.pipe, self.settings, family)
        finally:
            self.pipe.unet = wrapper
        unet.disable_lora()
        self._schedulers.setdefault(None, self.pipe.scheduler)
        self._schedulers[family] = distilled_scheduler(DISTILLED_FAMILIES[family], self._schedulers[None].config)
        self._loras[family] = self.settings.lora_source(family)[1]

    def _use_preset(self, preset: SpeedPreset) -> None:
        """Put the UNet and the scheduler in ``preset``'s mode: its family's LoRA on (every other
        off) with that family's scheduler, or SDXL alone; SDXL itself is never reloaded.

        fuse: the LoRA is added into the UNet's weights on the way in and subtracted on the
        way out. adapter: it stays beside them and is only switched on and off.
        """
        if preset.family == self._family:
            return
        unet = self._unet_module()
        if self._family is not None:  # out of the current mode first: a new LoRA loads beside unfused weights
            if self._fused:
                unet.unfuse_lora()
                self._fused = False
            unet.disable_lora()
            self._family = None
            self.pipe.scheduler = self._schedulers[None]
        if preset.family is None:
            return
        self._ensure_lora(preset.family)
        unet.enable_lora()
        unet.set_adapters([preset.family])
        if self.settings.lightning_lora_mode == "fuse":
            unet.fuse_lora(adapter_names=[preset.family])
            self._fused = True
        self.pipe.scheduler = self._schedulers[preset.family]
        self._family = preset.family

    @property
    def attention_sliced(self) -> bool:
        return any("Sliced" in type(p).__name__ for p in self.pipe.unet.attn_processors.values())

    def describe(self) -> dict:
        return {
            "model": self.settings.sdxl_model if self.settings.model == "sdxl" else "tiny",
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "ip_adapter": self.settings.adapter_weight,
            "lora": ", ".join(self._loras.values()) or None,
            "load_s": round(self.load_seconds, 3),
        }

    def clip_similarity(self, reference, image) -> float | None:
        """Cosine similarity of CLIP image embeddings from the IP-Adapter's own encoder
        (clip_scoring.py); None when the adapter was never loaded."""
        return self._scorer.similarity(reference, image)

    # -- prompts --

    def count_tokens(self, text: str) -> int:
        """Tokens CLIP sees for ``text``, start and end tokens included (limit 77)."""
        return max(len(tok(text, truncation=False).input_ids) for tok in (self.pipe.tokenizer, self.pipe.tokenizer_2))

    # -- generation --

    def generate(
        self,
        request: StoryboardRequest,
        on_progress: ProgressFn | None = None,
        on_panel: Callable[[PanelResult], None] | None = None,
        on_reference: Callable[[object], None] | None = None,
        cancel: threading.Event | None = None,
        judge: Callable[[object, object], dict] | None = None,
        on_preview: PreviewFn | None = None,
    ) -> StoryboardResult:
        """Draw every panel of ``request``.

        ``on_progress(job, step, steps)`` names the panel or the portrait being drawn.
        ``on_panel`` is called as each panel finishes (in one-by-one mode right away and in
        order, in batched mode after its batch); ``on_reference(character, image)`` when a
        generated portrait is ready (``character``: its place in ``request.locks``).
        Setting ``cancel`` stops the work at the next step (GenerationCancelled).
        ``judge(references, image)`` scores identity against the references of the panel's
        cast; a drifted panel is redrawn up to ``settings.identity_retries`` times and the
        closest attempt is kept. ``on_preview(job, step, steps, image)``: a small picture of a
        panel after each step (previews.py), not for the portraits (no placeholder shows them).
        """
        self._check(request)
        with self._lock, self._autocast():
            return self._generate(request, on_progress, on_panel, on_reference, cancel, judge, on_preview)

    def _check(self, request: StoryboardRequest) -> None:
        if not request.panels:
            raise InputError("frames", "a storyboard needs at least one panel")
        if len(request.panels) > MAX_FRAMES:
            raise InputError("frames", f"at most {MAX_FRAMES} panels")
        for name in ("width", "height"):
            value = getattr(request, name)
            if value <= 0 or value % 8:
                raise InputError(name, f"{name} must be a positive multiple of 8, got {value}")
        if request.num_steps < 1:
            raise InputError("steps", "at least one step")
        if request.strength is not None:
            if not 0 < request.strength <= 1 or request.denoising_steps < 1:
                raise InputError("strength", f"a refine's strength must be in (0, 1] and leave at least one of "
                                             f"the {request.num_steps} steps, got {request.strength}")
            if any(job.init_image is None for job in request.panels):
                raise InputError("strength", "a refine needs each panel's picture to start from")
        if request.characters and (request.reference is not None or request.portrait is not None):
            raise InputError("characters", "a cast locks each character itself: no request-wide reference")
        locks = request.locks
        for job in request.panels:
            if job.index is None or job.portrait_of is not None:
                raise InputError("frames", "each panel needs its index, and none is a portrait")
            if len(job.characters) not in CAST_POSITIONS and job.characters:
                raise InputError("cast", f"panel {job.index}: at most {max(CAST_POSITIONS)} characters")
            if len(set(job.characters)) != len(job.characters) or any(
                    not 0 <= i < len(locks) for i in job.characters):
                raise InputError("cast", f"panel {job.index}: its cast names characters the request lacks")
            if request.identity_lock and any(locks[i].reference is None and locks[i].portrait is None
                                             for i in job.characters):
                raise InputError("reference", f"panel {job.index}: the identity lock needs a reference "
                                              "image or a portrait prompt for each character in it")

    def _autocast(self):
        import torch

        if self.device == "mps" and self.settings.fp16_autocast:
            return torch.autocast(device_type="mps", dtype=torch.float16)
        return contextlib.nullcontext()

    def _generate(self, request, on_progress, on_panel, on_reference, cancel, judge, on_preview) -> StoryboardResult:
        timings: dict = {}
        run = _Run(request, on_progress, cancel, cfg=request.preset.uses_cfg, on_preview=on_preview,
                   previews=self.previews)
        # 1. The speed mode: SDXL as loaded, or with the distilled LoRA and its scheduler.
        started = time.perf_counter()
        self._use_preset(request.preset)
        timings["mode_switch_s"] = time.perf_counter() - started
        if request.preset.name == LIGHTNING and request.num_steps != self.settings.lightning_steps:
            log.warning("the lightning mode draws %d steps with a LoRA made for %d (%s)", request.num_steps,
                        self.settings.lightning_steps, self.settings.lora_weight)
        # 2. The references: uploaded, drawn from the traits, or none (lock off).
        started = time.perf_counter()
        if request.identity_lock:
            run.references = self._references(request, run, on_reference)
            timings["reference_s"] = time.perf_counter() - started
        # 3. What every panel shares, computed once: text embeddings, each cast's reference embeddings.
        started = time.perf_counter()
        self._condition(run, request.panels)
        if request.identity_lock:
            self._set_identity_mode(True)
            for cast in dict.fromkeys(job.characters for job in request.panels if job.characters):
                images = [run.references[i] for i in cast]
                run.cast_embeds[cast] = self._encode_reference(images[0] if len(images) == 1 else images, run)
        timings["encode_s"] = time.perf_counter() - started
        # 4. The panels, batched where the device allows; one cast per call.
        started = time.perf_counter()
        results: list[PanelResult] = []
        timings["panels_per_call"] = 0  # the largest call's: what a board's time depends on (step_time.py)
        for batch in self._batches(request.panels, request.width, request.height, key=run.call_of):
            timings["panels_per_call"] = max(timings["panels_per_call"], len(batch))
            references = self._use_cast(run, run.cast_of(batch[0]), batch[0].regions)
            for result in self._draw(batch, run):
                if judge is not None and references and result.status == "done":
                    result = self._redo_if_drifted(result, run, references, judge)
                results.append(result)
                if on_panel:
                    on_panel(result)
        timings["panels_s"] = time.perf_counter() - started
        order = {job.index: i for i, job in enumerate(request.panels)}
        results.sort(key=lambda result: order[result.index])
        first = run.references[0] if run.references else None
        return StoryboardResult(results, first, request.reference_kind(first), timings, tuple(run.references))

    def _references(self, request: StoryboardRequest, run: "_Run", on_reference) -> list:
        """Each character's reference: the one given, or its portrait drawn now (only for the
        characters some panel shows)."""
        portraits = request.portraits_to_draw()
        references = []
        for i, lock in enumerate(request.locks):
            reference = lock.reference
            if i in portraits:
                portrait_job = dataclasses.replace(lock.portrait, index=None, portrait_of=i)
                self._set_identity_mode(False)  # nothing to lock to yet
                run.size, run.cast_size, run.ip_scale = self._portrait_size(), 0, None
                self._condition(run, [portrait_job])
                portrait = self._draw([portrait_job], run)[0]
                run.size = None
                if portrait.status != "done":
                    raise RuntimeError(f"could not draw the character reference: {portrait.error}")
                reference = portrait.image
                if on_reference:
                    on_reference(i, reference)
            references.append(reference)
        return references

    def _use_cast(self, run: "_Run", cast: tuple[int, ...], regions=None) -> tuple:
        """Set the pipeline up for panels showing ``cast``; returns their references.

        One character: its reference, as ever. Several: one IP-Adapter with their reference
        images, each gated to its strip of the picture by a region mask (left to right, as
        the prompt places them), or to its own ``regions`` (a posed panel's skeletons), at a
        scale that keeps the faces apart. No one, or the lock off: the plain pipeline.
        """
        from consistent_look import wanted

        run.cast_size = len(cast)
        run.look = cast if wanted(run.request) else ()
        run.look_regions = regions  # where each character is, for the look too (None: strips)
        if not cast:
            self._set_identity_mode(False)
            run.image_embeds = run.ip_masks = run.ip_scale = None
            return ()
        self._set_identity_mode(True)
        run.image_embeds = run.cast_embeds[cast]
        scale = run.request.preset.ip_adapter_scale
        run.ip_masks = None
        if len(cast) > 1:
            low, high = CAST_IP_ADAPTER_SCALE
            scale = min(max(scale, low), high)
            run.ip_masks = self._region_masks(len(cast), run.request.width, run.request.height, regions)
        self._set_ip_scale(scale)
        run.ip_scale = scale
        return tuple(run.references[i] for i in cast)

    def _region_masks(self, count: int, width: int, height: int, regions=None) -> list:
        """``count`` vertical strips, left to right, or the ``regions`` given (0..1 boxes), as
        diffusers' IP-Adapter masks take them: one [1, count, height, width] tensor for the one adapter."""
        from diffusers.image_processor import IPAdapterMaskProcessor
        from PIL import Image

        boxes = regions or tuple((i / count, 0.0, (i + 1) / count, 1.0) for i in range(count))
        strips = []
        for left, top, right, bottom in boxes:
            mask = Image.new("L", (width, height), 0)
            mask.paste(255, (round(width * left), round(height * top), round(width * right), round(height * bottom)))
            strips.append(mask)
        masks = IPAdapterMaskProcessor().preprocess(strips, height=height, width=width)
        return [masks.reshape(1, count, height, width).to(self.device)]

    def _portrait_size(self) -> tuple[int, int]:
        side = self.settings.size_for("1:1")[0]
        return side, side

    def batch_size(self, width: int = 1024, height: int = 1024) -> int:
        """Panels per pipeline call: one by one off CUDA, else as many as free memory allows."""
        mode = self.settings.batch_panels
        if mode == "off" or (mode == "auto" and self.device != "cuda"):
            return 1
        if mode == "on" or self.device != "cuda":
            return self.settings.max_batch
        import torch

        free, _ = torch.cuda.mem_get_info()
        per_panel = PANEL_BYTES_PER_MEGAPIXEL * width * height / 1e6
        return max(1, min(self.settings.max_batch, int(free * 0.8 // per_panel)))

    def _batches(self, panels: Sequence[PanelJob], width: int, height: int, key: Callable = lambda job: None):
        """Panels in calls of at most batch_size, only panels of one ``key`` (their cast) per
        call: per-panel IP-Adapter embeddings in one call mix across the batch (diffusers
        issue #9813), so panels never share a call unless they share their embeddings. One
        by one, the panels keep their order."""
        size = self.batch_size(width, height)
        if size > 1 and self.settings.first_panel_alone and len(panels) > 1:
            # The first panel shows after one panel's time; the rest are batched after it.
            yield [panels[0]]
            panels = panels[1:]
        groups: dict = {}
        for job in panels:
            groups.setdefault(key(job) if size > 1 else len(groups), []).append(job)
        for group in groups.values():
            for start in range(0, len(group), size):
                yield group[start : start + size]

    def _redo_if_drifted(self, result: PanelResult, run: "_Run", references: tuple, judge) -> PanelResult:
        best = result
        best.identity = judge(references, result.image)
        attempts = 1
        for attempt in range(1, self.settings.identity_retries + 1):
            if best.identity.get("status") != "drift":
                break
            job = next(p for p in run.request.panels if p.index == result.index)
            # A retry never reuses another panel's seed (board_params.retry_seed).
            retry = self._draw([dataclasses.replace(job, seed=retry_seed(job.seed, attempt))], run)[0]
            attempts += 1
            if retry.status != "done":
                continue
            retry.identity = judge(references, retry.image)
            if closer(retry.identity, best.identity):
                best = retry
        best.attempts = attempts
        return best

    # -- the pieces --

    def _encode_text(self, prompts: list[str]):
        """Prompt embeddings for a list of prompts in one call of each text encoder."""
        self.text_encoder_calls += 1
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return embeds, pooled

    def _condition(self, run: "_Run", jobs: Sequence[PanelJob]) -> None:
        """Text embeddings for ``jobs`` (one encoder call) and each distinct negative (once;
        none without CFG, which never reads them)."""
        import torch

        embeds, pooled = self._encode_text([job.prompt for job in jobs])
        for i, job in enumerate(jobs):
            if not run.cfg:
                run.conditioning[job.prompt] = (embeds[i : i + 1], pooled[i : i + 1], None, None)
                continue
            negative = job.negative_prompt
            if negative not in run.negatives:
                if not negative and self.pipe.config.force_zeros_for_empty_prompt:
                    run.negatives[negative] = (torch.zeros_like(embeds[:1]), torch.zeros_like(pooled[:1]))
                else:
                    run.negatives[negative] = self._encode_text([negative])
            run.conditioning[job.prompt] = (embeds[i : i + 1], pooled[i : i + 1], *run.negatives[negative])

    def _encode_reference(self, reference, run: "_Run"):
        """The reference image's IP-Adapter embeddings, once per board and cast: [negative;
        positive] with CFG, only the positive without (the pipeline then reads them unsplit);
        a list of images (a cast) goes to the one adapter as its several images."""
        self.image_encoder_calls += 1
        self._set_ip_scale(run.request.preset.ip_adapter_scale)
        return self.pipe.prepare_ip_adapter_image_embeds(
            ip_adapter_image=[list(reference)] if isinstance(reference, list) else reference,
            ip_adapter_image_embeds=None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=run.cfg,
        )

    def _draw(self, batch: list[PanelJob], run: "_Run") -> list[PanelResult]:
        """Run the pipeline for one batch of panels; on out-of-memory retry them one by one."""
        try:
            return self._draw_batch(batch, run)
        except GenerationCancelled:
            raise
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled here
            if not _is_out_of_memory(error):
                raise
            free_device_memory(self.device)
            if len(batch) > 1:
                log.warning("out of memory with %d panels at once; drawing them one by one", len(batch))
                return [result for job in batch for result in self._draw([job], run)]
            log.warning("out of memory on panel %d", batch[0].index)
            return [PanelResult.of(batch[0], "failed", error=OOM_MESSAGE)]

    def _draw_batch(self, batch: list[PanelJob], run: "_Run") -> list[PanelResult]:
        """One pipeline call for ``batch`` (panels of one cast, or one portrait), then each
        panel decoded on its own."""
        import torch

        started = time.perf_counter()
        with torch.inference_mode():
            # 1. The call's inputs: each panel's text embeddings and seed, the cast's IP-Adapter
            # embeddings and region masks.
            width, height = run.size or (run.request.width, run.request.height)
            inputs = self._call_inputs(batch, run)
            # 2. Guidance up to the cutoff (settings.cfg_cutoff), one UNet pass a step after it;
            # a layout's adapter pipeline has no step-end callback to cut it with: guided throughout.
            layout = batch[0].layout is not None and batch[0].init_image is None
            guidance = _CfgCutoff(run, batch, 1.0 if layout else self.settings.cfg_cutoff)
            # 3. The denoising loop, to latents, through the compiled UNet once its graph is.
            run.check_cancel()
            with self._unet_for(run, width, height, layout) as eager, self._folding(eager), \
                    guidance.hooked(self.pipe.unet, run.image_embeds is not None), \
                    guidance.estimating(self.pipe.scheduler), self._sharing(batch, run, width, height):
                pipe, start, adapter_run = self._start_from(batch, run, width, height)
                latents = pipe(
                    **start,
                    num_inference_steps=run.request.num_steps,
                    guidance_scale=run.request.preset.guidance_scale,
                    output_type="latent",
                    **guidance.callbacks(pipe, layout),
                    **inputs,
                ).images
                # 4. Each panel decoded, with what really drew it.
                ran = self._ran(run, adapter_run)
                per_panel = (time.perf_counter() - started) / len(batch)
                return [self._decoded(job, latent, per_panel, ran) for job, latent in zip(batch, latents)]

    def _start_from(self, batch: list[PanelJob], run: "_Run", width: int, height: int) -> tuple:
        """The pipeline, where it starts and how a layout steers it (t2i_adapter.AdapterRun, or
        None): SDXL from noise at the size; with a layout, its T2I-Adapter twin (t2i_adapter.py);
        for a refine its img2img twin from each panel's picture, at the refine's strength, which
        keeps that picture's composition without an adapter (diffusers has no SDXL adapter
        img2img). The twins share the loaded components (diffusers' from_pipe: no second copy
        of any model in memory)."""
        if batch[0].init_image is None and batch[0].layout is not None:
            layouts = [job.layout for job in batch]
            arguments, adapter_run = self.layouts.call_arguments(self.pipe, layouts, width, height, run.steps_of(batch))
            return self.layouts.pipeline(self.pipe, layouts[0].adapter), {"width": width, "height": height,
                                                                          **arguments}, adapter_run
        if batch[0].init_image is None:  # drawn afresh, or a refine's portrait
            return self.pipe, {"width": width, "height": height}, None
        from diffusers import StableDiffusionXLImg2ImgPipeline

        img2img = twin(StableDiffusionXLImg2ImgPipeline, self.pipe)
        img2img.set_progress_bar_config(disable=True)
        images = [job.init_image.convert("RGB").resize((width, height)) for job in batch]
        return img2img, {"image": images, "strength": run.request.strength}, None

    def _call_inputs(self, batch: list[PanelJob], run: "_Run") -> dict:
        import torch

        parts = [run.conditioning[job.prompt] for job in batch]
        inputs = {
            "prompt_embeds": torch.cat([p[0] for p in parts]),
            "pooled_prompt_embeds": torch.cat([p[1] for p in parts]),
            "generator": [torch.Generator("cpu").manual_seed(job.seed) for job in batch],
        }
        if run.cfg:
            inputs["negative_prompt_embeds"] = torch.cat([p[2] for p in parts])
            inputs["negative_pooled_prompt_embeds"] = torch.cat([p[3] for p in parts])
        if run.image_embeds is not None:
            repeat = _repeat_cfg_pairs if run.cfg else _repeat_batch
            inputs["ip_adapter_image_embeds"] = [repeat(e, len(batch)) for e in run.image_embeds]
        if run.ip_masks is not None:
            inputs["cross_attention_kwargs"] = {"ip_adapter_masks": run.ip_masks}
        family = run.request.preset.family
        if family is not None and DISTILLED_FAMILIES[family].eta is not None:
            inputs["eta"] = DISTILLED_FAMILIES[family].eta  # TCD's gamma, as the draft's card sets it
        return inputs

    def _sharing(self, batch: list[PanelJob], run: "_Run", width: int, height: int):
        """The consistent look for this call (consistent_look.Sharing), hooked on the UNet it runs
        (after the cutoff's hook: it extends what that one passes); nothing for a call without it."""
        from consistent_look import Sharing, encode_reference
        from unet_compile import mark_batch_dynamic

        if not run.look or batch[0].index is None:
            return contextlib.nullcontext()
        latents = [run.look_latents.get((i, width, height)) for i in run.look]
        for n, i in enumerate(run.look):
            if latents[n] is None:  # once per request, character and size
                latents[n] = run.look_latents[i, width, height] = encode_reference(
                    self.pipe, run.references[i], width, height, self.device, self.pipe.unet.dtype)
        sharing = Sharing(self._look, self.pipe.scheduler, latents, self.settings.look_sampling_rate,
                          mark_batch_dynamic if self.compiled else None, run.look_regions)
        return sharing.hooked(self.pipe.unet)

    def _ran(self, run: "_Run", adapter_run=None) -> PanelRun:
        scheduler = type(self.pipe.scheduler).__name__
        refine = run.request.strength is not None
        look = tuple(i + 1 for i in run.look) if run.look else None
        return PanelRun(scheduler, A1111_SAMPLERS.get(scheduler, scheduler), run.request.num_steps,
                        run.request.preset.guidance_scale, run.ip_scale, self._family, run.request.preset.decoder,
                        strength=run.request.strength, denoising_steps=run.request.denoising_steps if refine else None,
                        layout=adapter_run.to_json() if adapter_run is not None else None,
                        look_references=look, look_sampling_rate=self.settings.look_sampling_rate if look else None)

    def _decoded(self, job: PanelJob, latent, seconds: float, ran: PanelRun) -> PanelResult:
        started = time.perf_counter()
        image, array, error, upcast = self._decode_checked(latent[None], self._decoder(ran.decoder))
        return PanelResult.of(job, "done" if error is None else "failed", image=image, pixels=array, error=error,
                              seconds=seconds + time.perf_counter() - started, vae_fp32_retry=upcast, ran=ran)

    def _decoder(self, name: str):
        """The module that decodes for ``name`` (config.DECODERS): SDXL's VAE, or TAESDXL (the
        previews' one, loaded on first use; a module of its own, so SDXL's VAE stays as it is for
        every other mode)."""
        if name == "vae":
            return self.pipe.vae
        return self.previews.model()

    def _decode_checked(self, latents, vae):
        """Decode with ``vae``; a NaN or all-black image is decoded again with it in fp32.

        Returns (PIL image, float pixels in 0..1, error, retried in fp32).
        """
        for force_fp32 in (False, True):
            image = self._decode(latents, vae, force_fp32=force_fp32)
            if not _is_bad(image):
                array = self.pipe.image_processor.postprocess(image, output_type="np")[0]
                return self.pipe.image_processor.numpy_to_pil(array)[0], array, None, force_fp32
            if not force_fp32:
                log.warning("panel decoded to NaN or black; decoding again with the VAE in fp32")
        return None, None, "The image came out blank (NaN or black) even with the VAE in fp32; try another seed.", True

    def _decode(self, latents, vae, force_fp32: bool):
        """SDXL's VAE undoes its scaling (and mean, where its config has one); TAESDXL's
        scaling factor is 1.0: it decodes the UNet's latents as they are."""
        import torch

        original = vae.dtype
        upcast = original != torch.float32 and (force_fp32 or vae.config.force_upcast)
        if upcast:
            vae.to(torch.float32)
        try:
            latents = latents.to(device=vae.device, dtype=vae.dtype)
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
                std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
                latents = latents * std / vae.config.scaling_factor + mean
            else:
                latents = latents / vae.config.scaling_factor
            return vae.decode(latents, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(original)


CFG_TENSORS = ("prompt_embeds", "add_text_embeds", "add_time_ids")


class _CfgCutoff:
    """Classifier-free guidance for the first ``cutoff`` of the steps, none after: at the cutoff
    the unconditional half of the guided tensors is dropped, so each later step is one UNet pass
    instead of two. Also the step callback: cancel, progress and the preview of each job of the call."""

    def __init__(self, run: "_Run", jobs: list[PanelJob], cutoff: float):
        self.run, self.jobs, self.steps = run, jobs, run.steps_of(jobs)
        self.at = round(self.steps * cutoff) if run.cfg and cutoff < 1 else None  # None: guided throughout
        self.guided = True
        self._positive: dict = {}  # the [negative; positive] IP embeddings last seen, and their positive half
        self._x0 = None  # the scheduler's estimate of the finished latents at the last step, if it gives one

    def callbacks(self, pipe, layout: bool) -> dict:
        """The call's step callback: diffusers' step-end one; the adapter pipeline's older
        ``callback`` (latents only, nothing returned: no cutoff, see _draw_batch) for a layout."""
        if layout:
            return {"callback": lambda step, timestep, latents: self.step_end(pipe, step, timestep,
                                                                              {"latents": latents})}
        return {"callback_on_step_end": self.step_end,
                "callback_on_step_end_tensor_inputs": ["latents", *CFG_TENSORS]}

    def step_end(self, pipe, step, timestep, kwargs):
        self.run.check_cancel()
        if self.run.on_progress:
            for job in self.jobs:
                self.run.on_progress(job, step + 1, self.steps)
        if self.run.on_preview:
            self._preview(step + 1, kwargs["latents"])
        if self.at is not None and self.guided and step + 1 >= self.at:
            self.guided = False
            pipe._guidance_scale = 0.0
            return {name: kwargs[name].chunk(2)[1] for name in CFG_TENSORS}
        return {}

    def _preview(self, step: int, latents) -> None:
        # The finished image as the scheduler estimates it (x0), not the step's x_t: an early x_t
        # is mostly noise, its x0 already shows the composition; at the last step they are equal.
        shown = [(i, job) for i, job in enumerate(self.jobs) if job.index is not None]  # not portraits
        if not shown:
            return
        estimate = self._x0 if self._x0 is not None else latents
        images = self.run.previews.decode(estimate[[i for i, _ in shown]])
        for (_, job), image in zip(shown, images):
            self.run.on_preview(job, step, self.steps, image)

    @contextlib.contextmanager
    def estimating(self, scheduler):
        """With previews on, keep each step's x0 estimate: the second output of the scheduler's
        step (Euler, DDIM, LCM: x0; TCD: x0 noised to the next step). One that gives none
        (DPM++) leaves the step's x_t. On the scheduler instance, only for this call."""
        if self.run.on_preview is None:
            yield
            return
        step = scheduler.step

        def keeping(*args, **kwargs):
            out = step(*args, **kwargs)
            self._x0 = out[1] if isinstance(out, tuple) and len(out) > 1 else getattr(out, "pred_original_sample", None)
            return out

        scheduler.step = keeping
        try:
            yield
        finally:
            del scheduler.step  # the class's own again

    @contextlib.contextmanager
    def hooked(self, unet, image_embeds: bool):
        """With IP-Adapter embeddings and a cutoff, a hook on ``unet`` that passes only their
        positive half once guidance stops. On the UNet itself (the compiled wrapper, outside
        the graph: inside, the hook's state would be guarded and every batch would recompile)."""
        if self.at is None or not image_embeds:
            yield
            return
        hook = unet.register_forward_pre_hook(self._positive_image_embeds, with_kwargs=True)
        try:
            yield
        finally:
            hook.remove()

    def _positive_image_embeds(self, module, args, kwargs):
        # The same tensors every step, so the fold keeps their halves: split once per call.
        embeds = (kwargs.get("added_cond_kwargs") or {}).get("image_embeds")
        if self.guided or embeds is None:
            return None
        if self._positive.get("of") is not embeds:
            self._positive = {"of": embeds, "half": [e.chunk(2)[1] for e in embeds]}
        added = {**kwargs["added_cond_kwargs"], "image_embeds": self._positive["half"]}
        return args, {**kwargs, "added_cond_kwargs": added}


@dataclass
class _Run:
    """What one generate call carries from step to step."""

    request: StoryboardRequest
    on_progress: ProgressFn | None
    cancel: threading.Event | None
    cfg: bool = True  # classifier-free guidance: two UNet passes a step, negative prompts read
    on_preview: PreviewFn | None = None
    previews: PreviewDecoder | None = None
    size: tuple[int, int] | None = None  # overrides the request's size (the portrait)
    image_embeds: list | None = None  # the IP-Adapter embeddings of the panels being drawn
    cast_size: int = 0  # ... how many characters they lock (0: the lock off)
    ip_masks: list | None = None  # ... their region masks (several characters)
    ip_scale: float | None = None  # ... and the scale they are held at (None: no one held)
    references: list = field(default_factory=list)  # each character's reference image
    cast_embeds: dict = field(default_factory=dict)  # cast -> its IP-Adapter embeddings
    look: tuple[int, ...] = ()  # the characters whose references the call's panels share (consistent look)
    look_latents: dict = field(default_factory=dict)  # (character, width, height) -> its reference's latents
    look_regions: tuple | None = None  # ... each one's box in the picture (a posed panel's); None: strips
    negatives: dict = field(default_factory=dict)
    conditioning: dict = field(default_factory=dict)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise GenerationCancelled()

    def steps_of(self, jobs: Sequence[PanelJob]) -> int:
        """The steps one call for ``jobs`` runs: a refine's share for panels it starts from a
        picture, all of them for the rest (a portrait drawn during a refine)."""
        return self.request.denoising_steps if jobs[0].init_image is not None else self.request.num_steps

    def cast_of(self, job: PanelJob) -> tuple[int, ...]:
        """Who the identity lock holds in ``job``: its cast, or no one with the lock off."""
        return job.characters if self.request.identity_lock else ()

    def call_of(self, job: PanelJob) -> tuple:
        """What panels sharing a call must share: the cast's embeddings and masks (its
        skeletons' regions, if posed) and, with a layout, its adapter and strength (one scale a
        call): layout panels are drawn in calls of their own."""
        layout = job.layout
        regions = job.regions if self.cast_of(job) else None
        return self.cast_of(job), regions, (layout.adapter, layout.strength) if layout is not None else None


def _repeat_cfg_pairs(embeds, count: int):
    """[negative; positive] for one image -> [negative x count; positive x count]."""
    import torch

    negative, positive = embeds.chunk(2)
    return torch.cat([negative.repeat(count, *([1] * (negative.dim() - 1))),
                      positive.repeat(count, *([1] * (positive.dim() - 1)))])


def _repeat_batch(embeds, count: int):
    """Positive-only embeddings for one image -> the same for ``count`` panels."""
    return embeds.repeat(count, *([1] * (embeds.dim() - 1)))



def _is_bad(image) -> bool:
    """NaN anywhere, or every pixel black (decoded range is -1..1)."""
    import torch

    image = image.float()
    return bool(torch.isnan(image).any()) or bool(((image + 1) / 2).amax() < 0.02)
