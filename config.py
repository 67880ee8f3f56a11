"""Every setting of the storyboard studio, declared once.

This is the only module that reads the environment. Settings are a frozen dataclass
built by :func:`load_settings` from a mapping (``os.environ``, CLI flags, or a dict in a
test); each field carries its own help text and allowed values, and a bad value raises
:class:`SettingsError` naming the setting. docs/settings.md documents every field (a test checks).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

from errors import InputError

ENV_PREFIX = "STORYBOARD_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{ENV_PREFIX}{name.upper()} ({name}): {message}")
        self.setting = name


# --- Speed presets --------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedPreset:
    """A speed mode as a board is drawn with it. It travels whole (a board's parameters, a
    job's spec) and is read back as stored, never rebuilt from PRESETS by name."""

    name: str
    label: str
    steps: int
    guidance_scale: float
    ip_adapter_scale: float
    family: str | None = None  # the distilled LoRA family (DISTILLED_FAMILIES) it runs with; None: SDXL alone
    decoder: str = "vae"  # what turns its latents into pixels (DECODERS)

    @property
    def distilled(self) -> bool:
        """Drawn with a few-step distilled LoRA (the lightning and draft modes)."""
        return self.family is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "SpeedPreset":
        """Read what :meth:`to_dict` wrote, checked as any input is: an InputError names the
        first wrong key (``steps``)."""
        if not isinstance(data, dict):
            raise InputError(None, "a speed preset must be an object")
        for key, low, high, whole in (("steps", 1, 200, True), ("guidance_scale", 0.0, 30.0, False),
                                      ("ip_adapter_scale", 0.0, 1.0, False)):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) \
                    or not low <= value <= high:
                raise InputError(key, f"a {'whole ' if whole else ''}number from {low} to {high} expected")
        for key in ("name", "label"):
            if not isinstance(data.get(key), str) or not 0 < len(data[key]) <= 64:
                raise InputError(key, "text of at most 64 characters expected")
        family = data.get("family")
        if family is not None and family not in DISTILLED_FAMILIES:
            raise InputError("family", f"one of {', '.join(DISTILLED_FAMILIES)} or null expected")
        decoder = data.get("decoder", "vae")  # a board stored before drafts decoded with SDXL's VAE
        if decoder not in DECODERS:
            raise InputError("decoder", f"one of {', '.join(DECODERS)} expected")
        return cls(data["name"], data["label"], data["steps"], float(data["guidance_scale"]),
                   float(data["ip_adapter_scale"]), family, decoder)

    @property
    def uses_cfg(self) -> bool:
        """diffusers runs classifier-free guidance (two UNet passes a step) only above 1."""
        return self.guidance_scale > 1

    @property
    def unet_passes(self) -> int:
        return self.steps * (2 if self.uses_cfg else 1)

    @property
    def description(self) -> str:
        """The real cost, in words: what the page shows beside the mode."""
        guidance = " with CFG" if self.uses_cfg else ", no CFG"
        steps = f"{self.steps} step{'s' if self.steps > 1 else ''}"
        passes = f"{self.unet_passes} UNet pass{'es' if self.unet_passes > 1 else ''}"
        decoder = ", TAESDXL decode" if self.decoder == "taesdxl" else ""
        return f"{steps}{guidance}{decoder} ({passes} a panel)"

    def panel_flops(self, parts: Mapping[str, int] | None = None, identity: bool = True) -> int:
        """A one-panel board's FLOPs in this mode from the counted ``parts`` (PANEL_PART_FLOPS,
        or bench/sdxl_random.count_flops at another size): the prompt (and its negative under
        CFG), the reference through ViT-H when the identity lock is on (and the zero image under
        CFG), every UNet pass, the decode. In a bigger board the encodes are shared."""
        parts = PANEL_PART_FLOPS if parts is None else parts
        per_step = 2 if self.uses_cfg else 1
        unet = parts["unet_forward_identity" if identity else "unet_forward"]
        encodes = per_step * (parts["text_prompt"] + (parts["image"] if identity else 0))
        return encodes + self.unet_passes * unet + parts[DECODERS[self.decoder]]

    @property
    def tflops_per_panel(self) -> float:
        """What a panel costs at 1024x1024 with the identity lock on, in TFLOP (0.1 exact)."""
        return round(self.panel_flops() / 1e12, 1)

    @property
    def look_passes(self) -> int:
        """UNet passes the consistent look adds to a pipeline call for each character the call's
        panels show: that character's reference row, at every step and under CFG as the panels
        are (consistent_look.py); none below LOOK_MIN_STEPS (the one-step draft draws without it)."""
        return self.unet_passes if self.steps >= LOOK_MIN_STEPS else 0

    @property
    def passes_per_panel(self) -> float:
        """A panel's whole cost in UNet passes (its decode and encodes included): the unit a
        measured step time turns into a board's time (step_time.py)."""
        return self.panel_flops() / PANEL_PART_FLOPS["unet_forward_identity"]


# The consistent look needs at least this many steps: a one-step draft's only step is at the top
# of the schedule, where a reference is noise (consistent_look.py).
LOOK_MIN_STEPS = 2

# The lightning mode's IP-Adapter scale, between FAST's 0.50 and BALANCED's 0.65: without
# CFG nothing amplifies the reference's pull, and 4 steps give it few chances to act, so not
# below FAST; the high end (0.8) lets the reference override pose and scene, which few-step
# models already follow less well. A judgement, not a measurement (docs/how-it-works.md, "The lightning mode").
LIGHTNING_IP_ADAPTER_SCALE = 0.60

# What decodes a mode's latents -> its part in PANEL_PART_FLOPS. vae: SDXL's own (or the fp16-fix
# one); taesdxl: madebyollin/taesdxl, 18.5x fewer FLOPs, "fudges fine details" (its card): drafts only.
DECODERS = {"vae": "vae_decode", "taesdxl": "taesdxl_decode"}
TAESDXL_HUB_ID = "madebyollin/taesdxl"

# The FLOPs of a panel's parts at 1024x1024 on the full-size models, as bench/sdxl_random.count_flops
# counts them (FlopCounterMode on the meta device; tests/test_draft.py counts them again and
# compares): kept here because counting takes ~20 s, too long for a request.
PANEL_PART_FLOPS: dict[str, int] = {
    "unet_forward": 6_761_236_398_080,
    "unet_forward_identity": 6_789_121_638_400,
    "vae_decode": 10_470_392_594_432,
    "taesdxl_decode": 565_400_567_808,
    "text_prompt": 111_161_610_240,
    "image": 334_590_279_680,
}

LIGHTNING = "lightning"
DRAFT_FAMILY = "hyper-sd-1step"

PRESETS: dict[str, SpeedPreset] = {
    p.name: p
    for p in (
        SpeedPreset("ultra_fast", "Ultra fast", 10, 6.0, 0.40),
        SpeedPreset("fast", "Fast", 12, 6.5, 0.50),
        SpeedPreset("balanced", "Balanced", 15, 7.0, 0.65),
        SpeedPreset("quality", "Quality", 20, 7.5, 0.80),
        # SDXL + a distilled LoRA; steps and family come from the settings (preset_for).
        SpeedPreset(LIGHTNING, "Lightning", 4, 0.0, LIGHTNING_IP_ADAPTER_SCALE, family="lightning"),
        # One pass of Hyper-SD's 1-step LoRA, decoded by TAESDXL: 7.8 TFLOP a panel, 22x fewer than
        # FAST (docs/how-it-works.md, "The draft mode", says why this LoRA). Its IP-Adapter scale is
        # the lightning mode's, for the same reasons (no CFG, few chances to act).
        SpeedPreset("draft", "Draft", 1, 0.0, LIGHTNING_IP_ADAPTER_SCALE, family=DRAFT_FAMILY, decoder="taesdxl"),
    )
}
DEFAULT_PRESET = "fast"
# What a take can be refined to: SDXL's own modes (a refine is img2img at the preset's steps
# and scales); the distilled modes are for drafting, not for finishing.
REFINE_PRESETS = ("fast", "balanced", "quality")
REFINE_DEFAULT_PRESET = "quality"  # a refine that names no mode: the keeper's finish

# SDXL's trained resolutions. The tiny offline model divides them by TINY_SIZE_DIVISOR.
ASPECTS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
}
DEFAULT_ASPECT = "16:9"
TINY_SIZE_DIVISOR = 16

MAX_FRAMES = 8

# Face first, then clothing, in 26 of CLIP's 77 tokens: with the style and the longest shot
# that leaves 30+ tokens for each panel's scene (a test checks), which a scene in a
# language other than English needs (a Russian word costs 3-6 tokens).
CHARACTER_TRAITS = (
    "young woman, oval face, green almond eyes, light freckles, "
    "wavy auburn shoulder-length hair, dark green hooded jacket"
)
STYLE = "cinematic storyboard frame, clean lines, soft lighting, detailed"
NEGATIVE_PROMPT = (
    "different face, changing face, inconsistent character, different hair color, "
    "different eye color, extra people, deformed face, disfigured, blurry, lowres, "
    "bad anatomy, extra fingers, watermark, text, signature, style change"
)

SDXL_HUB_ID = "stabilityai/stable-diffusion-xl-base-1.0"
IP_ADAPTER_HUB_ID = "h94/IP-Adapter"
# SDXL's VAE retrained to decode in fp16 without NaNs: no fp32 upcast (measured on an H100:
# a decode 95 ms instead of 135 ms, and 1.6 GB less memory on a board).
FP16_FIX_VAE_HUB_ID = "madebyollin/sdxl-vae-fp16-fix"

# The two IP-Adapter variants for SDXL and the image encoder each one was trained with.
IP_ADAPTER_VARIANTS: dict[str, tuple[str, str]] = {
    "plus-face": ("ip-adapter-plus-face_sdxl_vit-h.safetensors", "models/image_encoder"),
    "plain": ("ip-adapter_sdxl.safetensors", "sdxl_models/image_encoder"),
}


@dataclass(frozen=True)
class DistilledFamily:
    """A few-step distilled LoRA for SDXL base 1.0 and the scheduler its authors use with it."""

    name: str
    repo: str  # hub id
    weight: str  # file name; {steps} is the step count (the few-step families have 2, 4 and 8)
    scheduler: str  # a diffusers scheduler class, built from SDXL's scheduler config
    timestep_spacing: str | None  # None = keep SDXL's
    eta: float | None = None  # the scheduler's eta (TCD's gamma) as the card passes it; None: the pipeline's

    def weight_for(self, steps: int) -> str:
        return self.weight.format(steps=steps)


# Each model card's recipe: guidance 0 (or 1: the same, no CFG) and these schedulers.
DISTILLED_FAMILIES: dict[str, DistilledFamily] = {
    f.name: f
    for f in (
        DistilledFamily("lightning", "ByteDance/SDXL-Lightning", "sdxl_lightning_{steps}step_lora.safetensors",
                        "EulerDiscreteScheduler", "trailing"),
        DistilledFamily("hyper-sd", "ByteDance/Hyper-SD", "Hyper-SDXL-{steps}steps-lora.safetensors",
                        "DDIMScheduler", "trailing"),
        DistilledFamily("lcm", "latent-consistency/lcm-lora-sdxl", "pytorch_lora_weights.safetensors",
                        "LCMScheduler", None),
        # The draft mode's: Hyper-SD's unified 1-step LoRA (one file for any step count; the family
        # above names its N-steps files), with TCD and eta 1.0 as its card runs it.
        DistilledFamily(DRAFT_FAMILY, "ByteDance/Hyper-SD", "Hyper-SDXL-1step-lora.safetensors",
                        "TCDScheduler", None, eta=1.0),
    )
}
# The families the lightning mode may run with (STORYBOARD_LIGHTNING_FAMILY): the draft's is the draft's.
LIGHTNING_FAMILIES = tuple(name for name in DISTILLED_FAMILIES if name != DRAFT_FAMILY)


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


# --- Settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """One field per setting; ``metadata['help']`` is what docs/settings.md says about it."""

    model: str = field(
        default="sdxl",
        metadata={"help": "sdxl: real SDXL base 1.0 from the hub (about 10 GB on first run). "
                  "tiny: tiny random models built offline, for the demo and tests.",
                  **_choices("sdxl", "tiny")},
    )
    preset: str = field(
        default=DEFAULT_PRESET,
        metadata={"help": "Default speed mode for new storyboards.", **_choices(*PRESETS)},
    )
    aspect: str = field(
        default=DEFAULT_ASPECT,
        metadata={"help": "Default aspect ratio (SDXL's trained sizes).", **_choices(*ASPECTS)},
    )
    character_traits: str = field(
        default=CHARACTER_TRAITS,
        metadata={"help": "Default character description, face first; leads every prompt."},
    )
    style: str = field(default=STYLE, metadata={"help": "Default style appended to every prompt."})
    negative_prompt: str = field(
        default=NEGATIVE_PROMPT,
        metadata={"help": "Negative prompt against face and style drift."},
    )
    use_identity_lock: bool = field(
        default=True,
        metadata={"help": "Default for the IP-Adapter identity lock (new storyboards can override)."},
    )
    consistent_look: bool = field(
        default=False,
        metadata={"help": "Default for the consistent look (new storyboards can override): with the identity "
                  "lock, each panel's up-block self-attention also attends to its characters' reference "
                  "pictures, so clothes and hair carry across panels (StoryDiffusion's Consistent Self-"
                  "Attention). Costs one more UNet row a step per character in each call: off by default."},
    )
    look_sampling_rate: float = field(
        default=0.5,
        metadata={"help": "The consistent look's share of each reference's tokens a panel attends to (StoryDiffusion's "
                  "sa32/sa64, 0.5 there): higher holds the look more strongly and costs more attention "
                  "(BENCHMARKS.md has the counts).", "range": (0.01, 1.0)},
    )
    ip_adapter_scale: float | None = field(
        default=None,
        metadata={"help": "Override the preset's IP-Adapter scale (0.0-1.0); empty = use the preset.",
                  "range": (0.0, 1.0)},
    )
    ip_adapter_variant: str = field(
        default="plus-face",
        metadata={"help": "plus-face: ip-adapter-plus-face_sdxl_vit-h with the ViT-H encoder "
                  "(made for faces). plain: ip-adapter_sdxl with the bigG encoder. Sets the two "
                  "settings below unless they are given.",
                  **_choices(*IP_ADAPTER_VARIANTS)},
    )
    sdxl_model: str = field(
        default=SDXL_HUB_ID,
        metadata={"help": "SDXL base: a hub id or a local folder in the diffusers layout."},
    )
    ip_adapter_repo: str = field(
        default=IP_ADAPTER_HUB_ID,
        metadata={"help": "IP-Adapter repository: a hub id or a local folder."},
    )
    ip_adapter_subfolder: str = field(
        default="sdxl_models", metadata={"help": "Folder of the adapter weights inside the repository."}
    )
    ip_adapter_weight: str = field(
        default="",
        metadata={"help": "Adapter weight file (.safetensors only); empty = the variant's file."},
    )
    image_encoder: str = field(
        default="",
        metadata={"help": "Image encoder folder inside the repository; empty = the variant's encoder."},
    )
    vae_model: str = field(
        default="auto",
        metadata={"help": "auto: in half precision (GPU, Mac) madebyollin/sdxl-vae-fp16-fix when it can be "
                  "loaded (decodes in fp16, no fp32 upcast; ~160 MB once), else SDXL's own VAE (upcast "
                  "to fp32); a NaN or black panel is decoded again in fp32 either way. Empty: always "
                  "SDXL's own. Or a hub id or folder."},
    )
    hf_cache_dir: str = field(
        default="",
        metadata={"help": "Hugging Face cache folder; empty = the hub's default (HF_HUB_CACHE). "
                  "With model=tiny, defaults to DATA_DIR/tiny-models."},
    )
    offline: bool = field(
        default=False,
        metadata={"help": "Never contact the hub; load only cached or local weights."},
    )
    device: str = field(
        default="auto",
        metadata={"help": "auto prefers mps, then cuda, then cpu.", **_choices("auto", "mps", "cuda", "cpu")},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto = fp16 on mps/cuda, fp32 on cpu.", **_choices("auto", "fp16", "bf16", "fp32")},
    )
    fp16_autocast: bool = field(
        default=True, metadata={"help": "Wrap generation in torch.autocast(float16) on MPS."}
    )
    enable_channels_last: bool = field(
        default=True, metadata={"help": "Put the UNet in channels_last memory format on MPS."}
    )
    cuda_channels_last: bool = field(
        default=False,
        metadata={"help": "Also on CUDA. Off: measured on an H100, an eager UNet step took 136-149 ms in "
                  "channels_last and 76 ms contiguous (BENCHMARKS.md)."},
    )
    enable_attention_slicing: bool = field(
        default=True,
        metadata={"help": "Attention slicing on MPS (saves memory). Never on CUDA unless "
                  "force_attention_slicing. Skipped while the identity lock is active, because "
                  "diffusers 0.42 slicing replaces the IP-Adapter processors."},
    )
    force_attention_slicing: bool = field(
        default=False, metadata={"help": "Also slice attention on CUDA and CPU (slower; saves memory)."}
    )
    batch_panels: str = field(
        default="auto",
        metadata={"help": "Generate panels in one batched call (on), one by one (off), or auto: "
                  "batched on CUDA, one by one elsewhere so each panel shows as it finishes.",
                  **_choices("auto", "on", "off")},
    )
    max_batch: int = field(
        default=8, metadata={"help": "Most panels in one batched call.", "range": (1, MAX_FRAMES)}
    )
    first_panel_alone: bool = field(
        default=True,
        metadata={"help": "When panels are batched, draw a board's first panel on its own, so it shows "
                  "after one panel's time rather than after the whole first batch."},
    )
    cpu_offload: str = field(
        default="off",
        metadata={"help": "CUDA with little memory (8-12 GB): model = diffusers' model CPU offload (each "
                  "model on the GPU only while it runs; slower), sequential = layer by layer (slowest, "
                  "least memory). Ignored elsewhere.", **_choices("off", "model", "sequential")},
    )
    cfg_cutoff: float = field(
        default=1.0,
        metadata={"help": "Fraction of the steps that use classifier-free guidance; after it, "
                  "one UNet pass per step. 1.0 = CFG on every step.", "range": (0.0, 1.0)},
    )
    fold_cross_attention: bool = field(
        default=True,
        metadata={"help": "Project the text and reference-image tokens to attention keys and values (and run "
                  "the plus-face resampler) once per pipeline call instead of in every step: they do not "
                  "change between steps. Same images; fewer kernel launches. Not for a compiled UNet."},
    )
    live_previews: bool = field(
        default=True,
        metadata={"help": "Show each panel forming: after every step a small preview (TAESDXL, about 2% of a "
                  "UNet pass) goes to the page's placeholder. Never stored. Off: no previews, the same "
                  "pixels, TAESDXL never loaded."},
    )
    compile_unet: bool = field(
        default=False,
        metadata={"help": "torch.compile the UNet on CUDA. Off until measured faster on a GPU. Each graph "
                  "(size, characters locked, LoRA) compiles once (minutes; cached in DATA_DIR/compile-cache "
                  "for restarts) while the worker is idle; until then its panels are drawn without compile, "
                  "and /api/health says warming_up."},
    )
    compile_mode: str = field(
        default="reduce-overhead",
        metadata={"help": "torch.compile mode: reduce-overhead captures CUDA graphs (a UNet step is "
                  "bound by kernel launches on a fast GPU); max-autotune-no-cudagraphs tunes kernels "
                  "(measured: still autotuning after 200 s on an H100); default.",
                  **_choices("reduce-overhead", "max-autotune-no-cudagraphs", "default")},
    )
    cpu_threads: int = field(
        default=0,
        metadata={"help": "torch's CPU threads. 0 = auto: 1 for the tiny models (their ops are too small "
                  "to share, and on a busy machine extra threads only wait for each other: about 20x "
                  "slower measured), torch's default (one per core) for SDXL.", "range": (0, 1024)},
    )
    lightning_family: str = field(
        default="lightning",
        metadata={"help": "The distilled LoRA behind the lightning mode. lightning: ByteDance/SDXL-Lightning "
                  "(Euler, trailing timesteps). hyper-sd: ByteDance/Hyper-SD's Hyper-SDXL-Nsteps-lora "
                  "(DDIM, trailing). lcm: latent-consistency/lcm-lora-sdxl (LCMScheduler). All without CFG. "
                  "Sets the two settings below unless they are given.",
                  **_choices(*LIGHTNING_FAMILIES)},
    )
    lightning_lora_repo: str = field(
        default="",
        metadata={"help": "LoRA repository: a hub id or a local folder; empty = the family's hub id "
                  "(ByteDance/SDXL-Lightning for lightning)."},
    )
    lightning_lora_weight: str = field(
        default="",
        metadata={"help": "LoRA file in that repository (.safetensors only); empty = the family's file "
                  "for lightning_steps."},
    )
    lightning_steps: int = field(
        default=4,
        metadata={"help": "Steps of the lightning mode; picks the LoRA file made for them "
                  "(e.g. sdxl_lightning_4step_lora.safetensors).", "choices": (2, 4, 8)},
    )
    lightning_lora_mode: str = field(
        default="fuse",
        metadata={"help": "How the lightning mode switches on one loaded SDXL. fuse: the LoRA is fused into "
                  "the UNet's weights (fastest board; a switch rewrites those weights). adapter: it stays "
                  "a LoRA adapter switched on and off (instant, exact switch; every lightning step "
                  "computes the LoRA too).",
                  **_choices("fuse", "adapter")},
    )
    data_dir: str = field(
        default="",
        metadata={"help": "Where storyboards, images and the database are kept; one studio at a time. "
                  "Empty = data, or data/demo with model=tiny (the demo's boards stay apart from real ones)."},
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to listen on. Anything but loopback is reachable by others, "
                  "and there is no login."},
    )
    port: int = field(default=8080, metadata={"help": "Port to listen on.", "range": (1, 65535)})
    allowed_hosts: str = field(
        default="",
        metadata={"help": "Host names the studio answers to, comma-separated, whatever address it listens "
                  "on; a request naming another host gets 403 (a site whose name is pointed at this machine "
                  "must not drive it: DNS rebinding). Empty = localhost, 127.0.0.1, [::1] and the HOST "
                  "address. Behind a proxy: the public name, e.g. studio.example.com."},
    )
    trusted_proxies: int = field(
        default=0,
        metadata={"help": "Reverse proxies (nginx, Caddy) in front of the studio whose X-Forwarded-For, "
                  "-Proto, -Host, -Port and -Prefix headers are believed (werkzeug's ProxyFix); 0 = none: "
                  "those headers are dropped. 1 behind one proxy; never more than there are, and 0 when "
                  "clients can reach the studio directly (they could claim any host).", "range": (0, 10)},
    )
    server_threads: int = field(
        default=32,
        metadata={"help": "Threads serving requests (each open page's live updates hold one).",
                  "range": (2, 512)},
    )
    max_connections: int = field(
        default=100,
        metadata={"help": "Most open connections; more wait until one closes.", "range": (4, 10000)},
    )
    request_timeout: int = field(
        default=60,
        metadata={"help": "Seconds a connection may stay silent (sending nothing, receiving "
                  "nothing) before it is closed. A request being answered (live updates "
                  "included) is never cut.", "range": (1, 3600)},
    )
    dev_server: bool = field(
        default=False,
        metadata={"help": "Serve with Werkzeug's development server instead of waitress (for "
                  "debugging only: no connection limit, no timeout)."},
    )
    preload: bool = field(
        default=False, metadata={"help": "Load the model when the server starts, not on first use."}
    )
    queue_limit: int = field(
        default=20, metadata={"help": "Most storyboards waiting at once; more get 429.", "range": (1, 10000)}
    )
    refine_strength: float = field(
        default=0.35,
        metadata={"help": "How far a refine may move from its take, 0-1 (img2img strength; it runs strength x "
                  "steps steps): the default when a refine does not say (docs/how-it-works.md, \"Takes and refine\").",
                  "range": (0.05, 1.0)},
    )
    takes_per_panel: int = field(
        default=10,
        metadata={"help": "Most takes a panel keeps (each redraw or refine adds one); past it the oldest "
                  "unchosen take goes, with its file.", "range": (1, 1000)},
    )
    max_upload_mb: float = field(
        default=10.0, metadata={"help": "Largest accepted request (reference upload), in MB.",
                                "range": (0.1, 200.0)}
    )
    max_project_mb: float = field(
        default=200.0, metadata={"help": "Largest accepted Storyboarder project (its folder zipped, POST "
                                 "/api/storyboards/import), in MB; it is read where the upload is spooled, never unpacked.",
                                 "range": (1.0, 1000.0)}
    )
    export_concurrency: int = field(
        default=2,
        metadata={"help": "Most exports written at once (PDF, ZIP, animatic MP4, timelines, Storyboarder: each "
                  "to a file in DATA_DIR, then streamed); another is answered 429 (busy) at once.", "range": (1, 64)},
    )
    max_story_chars: int = field(
        default=4000, metadata={"help": "Longest accepted story text.", "range": (1, 100000)}
    )
    max_screenplay_chars: int = field(
        default=300000,
        metadata={"help": "Longest accepted screenplay (POST /api/screenplays), in characters: a feature "
                  "script is about 180000.", "range": (1000, 10000000)}
    )
    identity_threshold: float = field(
        default=0.6,
        metadata={"help": "Face distance above which a panel counts as drifted (dlib: 0.6).",
                  "range": (0.0, 2.0)},
    )
    identity_retries: int = field(
        default=2,
        metadata={"help": "Extra attempts for a drifted panel (next seeds); 0 = off.", "range": (0, 10)},
    )
    identity_scoring: bool = field(
        default=True, metadata={"help": "Score every panel's face against the reference."}
    )
    planner_url: str = field(
        default="",
        metadata={"help": "Base URL of an OpenAI-compatible LLM server that plans boards from a premise, e.g. "
                  "http://localhost:11434/v1 (Ollama) or http://127.0.0.1:8081/v1 (llama.cpp's server). "
                  "Empty = no planner: the built-in splitter plans. Nothing is sent anywhere else."},
    )
    planner_model: str = field(
        default="",
        metadata={"help": "The model the planner server should use, e.g. qwen2.5:7b-instruct on Ollama "
                  "(llama.cpp's server accepts any name). Required with a planner URL."},
    )
    queue_url: str = field(
        default="",
        metadata={"help": "Empty: the embedded worker (one process). redis://HOST:6379/0: jobs go to "
                  "Redis, drawn by `.venv/bin/python worker.py` processes (one per GPU, any machine); the studio "
                  "stays the one writer of the database and images. No password in the URL: see below."},
    )
    queue_password: str = field(
        default="",
        repr=False,
        metadata={"help": "The Redis password (requirepass). Environment only: no flag sets it, and it "
                  "is never logged.", "environment_only": True},
    )
    # repr=False: the key must not reach a log line or a traceback through repr(settings).
    planner_api_key: str = field(
        default="",
        repr=False,
        metadata={"help": "Key sent as 'Authorization: Bearer' to the planner URL only; empty = none "
                  "(local servers need none). Environment only: no flag sets it, and it is never "
                  "logged, stored or exported.", "environment_only": True},
    )
    planner_timeout_s: float = field(
        default=120.0,
        metadata={"help": "Seconds each answer of the planner may take, all of it (connecting, waiting, "
                  "reading; a local model's first answer includes loading it); past it the built-in "
                  "splitter plans.", "range": (0.1, 3600.0)},
    )
    planner_concurrency: int = field(
        default=2,
        metadata={"help": "Most plans asked of the planner at once; another is answered 429 (busy) at once "
                  "instead of holding one of the server's threads while it waits.", "range": (1, 64)},
    )
    planner_json_mode: str = field(
        default="json_schema",
        metadata={"help": "How the planner is asked for JSON: json_schema (structured output; Ollama, "
                  "llama.cpp, LM Studio, vLLM, OpenAI), json_object (older servers), off (the prompt "
                  "alone; for servers that refuse both).",
                  **_choices("json_schema", "json_object", "off")},
    )

    # --- derived values ---

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir or ("data/demo" if self.model == "tiny" else "data"))

    @property
    def cache_dir(self) -> str | None:
        if self.hf_cache_dir:
            return self.hf_cache_dir
        if self.model == "tiny":
            return str(self.data_path / "tiny-models")
        return None

    @property
    def host_names(self) -> frozenset[str]:
        """The host names requests may name (lower case, IPv6 without brackets)."""
        names = [name for name in self.allowed_hosts.split(",") if name.strip()]
        if not names:
            names = ["localhost", "127.0.0.1", "::1", self.host]
        return frozenset(host_name(name) for name in names)

    @property
    def adapter_weight(self) -> str:
        return self.ip_adapter_weight or IP_ADAPTER_VARIANTS[self.ip_adapter_variant][0]

    @property
    def adapter_image_encoder(self) -> str:
        return self.image_encoder or IP_ADAPTER_VARIANTS[self.ip_adapter_variant][1]

    @property
    def distilled_family(self) -> DistilledFamily:
        return DISTILLED_FAMILIES[self.lightning_family]

    @property
    def lora_repo(self) -> str:
        return self.lightning_lora_repo or self.distilled_family.repo

    @property
    def lora_weight(self) -> str:
        return self.lightning_lora_weight or self.distilled_family.weight_for(self.lightning_steps)

    def lora_source(self, family: str) -> tuple[str, str, str]:
        """Where ``family``'s LoRA is loaded from: (repo, weight file, the setting that names the
        repo). The lightning mode's family as its settings say; the draft's from its hub id."""
        if family == self.lightning_family:
            return self.lora_repo, self.lora_weight, "STORYBOARD_LIGHTNING_LORA_REPO"
        chosen = DISTILLED_FAMILIES[family]
        return chosen.repo, chosen.weight, "STORYBOARD_HF_CACHE_DIR"

    @property
    def size_divisor(self) -> int:
        return TINY_SIZE_DIVISOR if self.model == "tiny" else 1

    def size_for(self, aspect: str) -> tuple[int, int]:
        """Width and height in pixels for an aspect ratio, on this model (multiples of 8)."""
        width, height = ASPECTS[aspect]
        return _round8(width / self.size_divisor), _round8(height / self.size_divisor)

    @property
    def torch_threads(self) -> int | None:
        """The CPU threads to give torch, or None to keep torch's own choice."""
        if self.cpu_threads:
            return self.cpu_threads
        return 1 if self.model == "tiny" else None

    def preset_for(self, name: str | None = None) -> SpeedPreset:
        preset = PRESETS[name or self.preset]
        if preset.name == LIGHTNING:
            preset = dataclasses.replace(preset, steps=self.lightning_steps, family=self.lightning_family)
        if self.ip_adapter_scale is not None:
            return dataclasses.replace(preset, ip_adapter_scale=self.ip_adapter_scale)
        return preset


def _round8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)


# --- Loading ----------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(f: dataclasses.Field, raw: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name = f.name
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SettingsError(name, f"{raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")
    if kind in ("int", "float", "float | None"):
        if kind == "float | None" and (raw is None or str(raw).strip() == ""):
            return None
        number_type = int if kind == "int" else float
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = number_type(raw) if not isinstance(raw, str) else number_type(raw.strip())
        except (TypeError, ValueError):
            raise SettingsError(name, f"{raw!r} is not a {'whole number' if kind == 'int' else 'number'}") from None
        if value != value:  # NaN
            raise SettingsError(name, "NaN is not allowed")
        low, high = f.metadata.get("range", (None, None))
        if low is not None and not (low <= value <= high):
            raise SettingsError(name, f"{value} is outside {low}..{high}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise SettingsError(name, f"{raw!r} is not one of: {', '.join(map(str, choices))}")
        return value
    value = str(raw).strip()
    choices = f.metadata.get("choices")
    if choices:
        value = value.lower()
        if value not in choices:
            raise SettingsError(name, f"{raw!r} is not one of: {', '.join(choices)}")
    return value


def setting_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(Settings)


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build Settings from ``STORYBOARD_*`` variables, then ``overrides`` (CLI flags, tests).

    ``environ`` defaults to ``os.environ``; unknown ``STORYBOARD_*`` variables and unknown
    override names are errors, so a typo never silently falls back to a default.
    """
    environ = os.environ if environ is None else environ
    known = {f.name: f for f in setting_fields()}
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in known:
            raise SettingsError(name, f"unknown setting {key}")
        values[name] = _parse(known[name], raw)
    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name not in known:
            raise SettingsError(name, "unknown setting")
        if known[name].metadata.get("environment_only"):
            # Flags land in shell history and process lists; a secret must not.
            raise SettingsError(name, f"set it in the environment ({env_name(name)}), not as an option")
        values[name] = _parse(known[name], raw)
    _check_planner(values)
    _check_queue(values)
    _check_hosts(values)
    for name in ("ip_adapter_weight", "vae_model", "sdxl_model", "ip_adapter_repo", "lightning_lora_repo",
                 "lightning_lora_weight"):
        if name in values and values[name].endswith((".bin", ".pt", ".pth", ".ckpt")):
            raise SettingsError(name, "only .safetensors weights are loaded (pickle files can run code)")
    return Settings(**values)


def _check_planner(values: dict[str, Any]) -> None:
    """A planner URL the client can use, and a model to ask for. The messages never repeat
    the URL: it may carry a user name and password."""
    key = values.get("planner_api_key", "")
    if key and not (key.isascii() and key.isprintable() and " " not in key):
        # An HTTP header carries ASCII only: every plan would fail. Never repeat the key.
        raise SettingsError("planner_api_key", "must be printable ASCII without spaces, as keys are; it has "
                                               "other characters (pasted with invisible ones, or quotes?)")
    url = values.get("planner_url", "")
    if not url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("planner_url", "must be an http:// or https:// base URL, such as "
                                           "http://localhost:11434/v1")
    if parts.username or parts.password:
        raise SettingsError("planner_url", "must not carry a user name or password; put the key in "
                                           f"{env_name('planner_api_key')}")
    if not values.get("planner_model"):
        raise SettingsError("planner_model", "name the model the planner should use (e.g. qwen2.5:7b-instruct "
                                             "on Ollama; llama.cpp's server accepts any name)")


def _check_queue(values: dict[str, Any]) -> None:
    url = values.get("queue_url", "")
    if not url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise SettingsError("queue_url", "must be a redis:// (or rediss://) URL, such as redis://localhost:6379/0")
    # redis-py also takes a password from the query string (?password=...).
    credentials = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)} & {"password", "username"}
    if parts.password or parts.username or credentials:
        raise SettingsError("queue_url", "must not carry a user name or password (a command line is visible "
                                         f"to other users); put the password in {env_name('queue_password')}")


def host_name(text: str) -> str | None:
    """A host name as a request's Host header names it (lower case, an IPv6 address without
    brackets), or None when ``text`` is not a bare name or address (a port, a scheme, a path)."""
    text = text.strip().lower()
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address
    try:
        parts = urlsplit(f"//{text}")
        if parts.port is not None or parts.path or parts.query or parts.fragment or parts.username:
            return None
    except ValueError:
        return None
    return parts.hostname or None


def _check_hosts(values: dict[str, Any]) -> None:
    for name in values.get("allowed_hosts", "").split(","):
        if name.strip() and host_name(name) is None:
            raise SettingsError("allowed_hosts", f"{name.strip()!r} is not a host name: list names or addresses "
                                                 "without scheme or port, e.g. studio.example.com,localhost")


def is_loopback(host: str) -> bool:
    """Is ``host`` (a name or an address) this machine's loopback?"""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_markdown() -> str:
    """The settings table of docs/settings.md, generated from the declarations above."""
    rows = ["| Variable | Default | Allowed | What it does |", "| --- | --- | --- | --- |"]
    for f in setting_fields():
        allowed = ", ".join(map(str, f.metadata.get("choices", ()))) or (
            "{}..{}".format(*f.metadata["range"]) if "range" in f.metadata else "")
        default = "(empty)" if f.default in ("", None) else str(f.default)
        if len(default) > 40:
            default = default[:37] + "..."
        rows.append(f"| `{env_name(f.name)}` | `{default}` | {allowed} | {f.metadata.get('help', '')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_markdown())
