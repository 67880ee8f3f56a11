"""Loading the generator's parts: SDXL (with its VAE), the IP-Adapter, the distilled LoRAs and TAESDXL.

Every load goes through the same two rules: only safetensors weights are read (a pickle file
can run code), and a load is offline when the settings say so or the model is the tiny demo
(:func:`hub_options`). A failed load becomes :class:`ModelNotAvailable` with words that say
what to do. Also here: the device and precision a pipeline runs in, and where it is placed.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

from config import FP16_FIX_VAE_HUB_ID, TAESDXL_HUB_ID, DistilledFamily, Settings
from prompt_enhancer import shorten, split_sentences

log = logging.getLogger(__name__)


class ModelNotAvailable(RuntimeError):
    """The weights cannot be loaded; the message says what to do."""


# --- Device and precision -----------------------------------------------------------------


def resolve_device(setting: str) -> str:
    import torch

    if setting != "auto":
        if setting == "mps" and not torch.backends.mps.is_available():
            raise ModelNotAvailable("STORYBOARD_DEVICE=mps, but this machine has no usable Apple GPU (MPS).")
        if setting == "cuda" and not torch.cuda.is_available():
            raise ModelNotAvailable("STORYBOARD_DEVICE=cuda, but torch sees no CUDA GPU.")
        return setting
    if torch.backends.mps.is_available():
        return "mps"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_dtype(setting: str, device: str):
    import torch

    if setting == "auto":
        setting = "fp32" if device == "cpu" else "fp16"
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[setting]


def apply_cpu_threads(settings: Settings) -> None:
    """Give torch the configured CPU threads (process-wide: one generator per process)."""
    import torch

    threads = settings.torch_threads
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        log.info("torch uses %d CPU thread(s)", threads)


def channels_last(settings: Settings, device: str) -> bool:
    """channels_last on MPS (asked for there); on CUDA only when asked, since it measured slower."""
    return (device == "mps" and settings.enable_channels_last) or (device == "cuda" and settings.cuda_channels_last)


def offloaded(settings: Settings, device: str) -> bool:
    """Whether the pipeline is offloaded to the CPU between models (a small GPU), not whole on ``device``."""
    return device == "cuda" and settings.cpu_offload in ("model", "sequential")


def place(pipe, settings: Settings, device: str):
    """The pipeline on its device: whole, or offloaded to the CPU between models on a small GPU."""
    if offloaded(settings, device):
        if settings.cpu_offload == "model":
            pipe.enable_model_cpu_offload()
        else:
            pipe.enable_sequential_cpu_offload()
        return pipe
    return pipe.to(device)


class _KnownDevice:
    """A pipeline that names its execution device instead of searching for it.

    diffusers' ``_execution_device`` looks through every module of every component for
    offload hooks each time a pipeline call reads it: a fixed cost per call, whatever the
    model's work (on the tiny models, a third of a one-step draft board). A pipeline placed
    whole on one device (no offload hooks) runs there, so it is simply said.
    """

    _studio_device = None

    @property
    def _execution_device(self):
        return self._studio_device


_KNOWN_DEVICE_CLASSES: dict[type, type] = {}


def known_device(pipe, device):
    """``pipe`` answering ``device`` as its execution device. Only for a pipeline placed whole
    on ``device`` (not offloaded: there the hooks decide where a model runs)."""
    import torch

    cls = type(pipe)
    if not issubclass(cls, _KnownDevice):
        if cls not in _KNOWN_DEVICE_CLASSES:  # one subclass per pipeline class, named as it is
            _KNOWN_DEVICE_CLASSES[cls] = type(cls.__name__, (_KnownDevice, cls), {"__module__": cls.__module__})
        pipe.__class__ = _KNOWN_DEVICE_CLASSES[cls]
    pipe._studio_device = torch.device(device)
    return pipe


def twin(pipeline_class, like, **components):
    """A ``pipeline_class`` on ``like``'s loaded components (diffusers' ``from_pipe``: no second
    copy of any model), with ``components`` added (an adapter), answering the device ``like``
    does when it names one.

    In their own dtype: told none, ``from_pipe`` casts every component to float32, in place,
    so the studio's half-precision SDXL (fp16 on a GPU or a Mac, bf16 on a CPU) became a
    float32 one, twice its memory and slower for every later panel, at its first refine or
    layout (the full-size model ran out of memory on a 24 GB machine)."""
    pipe = pipeline_class.from_pipe(like, dtype=like.unet.dtype, **components)
    device = getattr(like, "_studio_device", None)
    return known_device(pipe, device) if device is not None else pipe


# Library messages that say nothing to a studio user: torchvision is not installed on purpose
# (transformers falls back to the PIL image processors, which IP-Adapter uses anyway), and
# diffusers warns about an empty list of fp32 modules when a pipeline is moved with .to().
HARMLESS_LIBRARY_MESSAGES = ("requires torchvision", "should be kept in float32: []")
# ... and these, dropped on the logger that emits them (before any handler sees them): the
# studio counts a prompt's tokens uncut in order to cut it itself (prompt_enhancer's budget), so
# the tokenizer's warning about indexing errors is not for it; the distilled LoRAs carry UNet keys
# only, so the text encoders are meant to get none (a UNet without keys is still reported).
HARMLESS_AT_SOURCE = {
    "transformers.tokenization_utils_base": "Token indices sequence length is longer than the specified maximum",
    "diffusers.loaders.lora_base": "No LoRA keys associated to CLIPTextModel",
}


class _DropHarmless(logging.Filter):
    def __init__(self, texts=HARMLESS_LIBRARY_MESSAGES):
        super().__init__()
        self.texts = tuple(texts)

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.texts)


def quiet_library_logs(progress_bars: bool = True) -> None:
    """Drop the known-harmless messages of diffusers and transformers (process-wide).

    ``progress_bars=False`` also hides their progress bars, e.g. for the tiny models,
    which load in a fraction of a second and download nothing.
    """
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        for handler in library.get_logger().handlers:  # the library's root logger and its handler
            if not any(isinstance(f, _DropHarmless) for f in handler.filters):
                handler.addFilter(_DropHarmless())
        if not progress_bars:
            library.disable_progress_bar()
    for name, text in HARMLESS_AT_SOURCE.items():
        source = logging.getLogger(name)
        if not any(isinstance(f, _DropHarmless) for f in source.filters):
            source.addFilter(_DropHarmless((text,)))
    if not progress_bars:
        hub_utils.disable_progress_bars()


# --- The two rules of every load ------------------------------------------------------------

_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")


def hub_options(settings: Settings) -> dict:
    """Where every load looks, and whether it may download: never offline or for the tiny demo
    (its models are built locally under the real hub ids)."""
    return {"cache_dir": settings.cache_dir, "local_files_only": settings.offline or settings.model == "tiny"}


def weight_file(name: str, setting: str) -> str:
    """``name``, a weight file to load by name, if it is safetensors."""
    if not name.endswith(".safetensors"):
        raise ModelNotAvailable(f"{setting}={name}: only .safetensors weights are loaded (pickle can run code).")
    return name


def check_source(source: str, setting: str) -> str:
    """A hub id, or a local folder that exists; never a pickle file."""
    if source.endswith(_PICKLE_SUFFIXES):
        raise ModelNotAvailable(f"{setting}={source}: only safetensors weights are loaded (pickle can run code).")
    if _looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise ModelNotAvailable(
                f"{setting}={source}: no such folder. Point it at a folder in the diffusers layout, "
                f"or use a hub id such as stabilityai/stable-diffusion-xl-base-1.0."
            )
        return str(folder)
    return source


def _looks_like_path(source: str) -> bool:
    # Hub ids are "owner/name"; anything else with a slash, a dot start or a ~ is a folder.
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source or Path(source).exists()


_MISSING_HINTS = ("not fully cached", "does not appear to have", "no such file", "not found", "cannot find",
                  "outgoing traffic has been disabled", "connect", "localentrynotfound", "is not a local folder")


def _first_sentences(text: str, limit: int = 300, most: int = 600) -> str:
    """The error's first line in whole sentences, as many as fit in ``limit`` characters (at
    least one, cut only past ``most``): a fix the library names must not be cut mid-sentence."""
    line = (text.splitlines() or [""])[0].strip()
    kept = ""
    for sentence in split_sentences(line) or [line]:
        if kept and len(kept) + 1 + len(sentence) > limit:
            break
        kept = f"{kept} {sentence}".strip()
    return shorten(kept, most)


def load_failure_message(what: str, source: str, setting: str, cache_dir: str | None, error: Exception,
                         size: str = "SDXL + IP-Adapter are about 10 GB") -> str:
    """Words for a failed load: missing weights and damaged weights need different fixes."""
    where = cache_dir or "the Hugging Face cache (HF_HUB_CACHE, ~/.cache/huggingface/hub)"
    detail = f"{type(error).__name__}: {_first_sentences(str(error))}"
    if any(hint in f"{type(error).__name__} {error}".lower() for hint in _MISSING_HINTS):
        return (
            f"Cannot load {what} '{source}': it is not in {where} and could not be downloaded. "
            f"To fix: run once with network access so it downloads ({size}); "
            f"or set {setting} to a local folder that holds it; "
            f"or try the offline demo on tiny models: make demo (STORYBOARD_MODEL=tiny). ({detail})"
        )
    return (
        f"Cannot load {what} '{source}': its files are there but could not be read; they are probably "
        f"truncated or corrupt (an interrupted download?). To fix: delete that model's folder in {where} "
        f"and run once with network access to download it again, or set {setting} to a folder with a "
        f"good copy. ({detail})"
    )


# --- The loads --------------------------------------------------------------------------------


def load_pipeline(settings: Settings, device: str, dtype):
    """SDXL from ``settings.sdxl_model`` with its VAE (the fp16-fix one in half precision
    when it is there), not yet placed on ``device``."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    options = {**hub_options(settings), "use_safetensors": True}
    extra = {}
    vae_source, optional = settings.vae_model, settings.vae_model == "auto"
    if optional:  # the fp16-fix VAE is worth having only in half precision
        vae_source = FP16_FIX_VAE_HUB_ID if dtype != torch.float32 else ""
    if vae_source:
        source = check_source(vae_source, "STORYBOARD_VAE_MODEL")
        try:
            extra["vae"] = AutoencoderKL.from_pretrained(source, dtype=dtype, **options)
        except Exception as error:  # noqa: BLE001 - any load failure becomes words for the user
            if not optional:
                raise ModelNotAvailable(
                    load_failure_message("the VAE", source, "STORYBOARD_VAE_MODEL", settings.cache_dir, error)
                ) from error
            log.info("the fp16-fix VAE is not available (%s); SDXL's own VAE decodes in fp32",
                     shorten(str(error).splitlines()[0] if str(error) else type(error).__name__, 120))
    source = check_source(settings.sdxl_model, "STORYBOARD_SDXL_MODEL")
    try:
        return _from_pretrained_half_first(StableDiffusionXLPipeline, source, dtype, **options, **extra)
    except Exception as error:  # noqa: BLE001 - any load failure becomes words for the user
        raise ModelNotAvailable(
            load_failure_message("SDXL", source, "STORYBOARD_SDXL_MODEL", settings.cache_dir, error)
        ) from error


def _from_pretrained_half_first(pipeline_class, source: str, dtype, **kwargs):
    """Load the fp16 weight files when running in half precision (SDXL's are half the size
    of the fp32 ones: ~7 GB instead of ~14 GB to download); folders without them load as they are."""
    import torch

    if dtype == torch.float32:
        return pipeline_class.from_pretrained(source, dtype=dtype, **kwargs)
    try:
        return pipeline_class.from_pretrained(source, dtype=dtype, variant="fp16", **kwargs)
    except ValueError as error:
        if "variant" not in str(error):
            raise
        log.info("no fp16 weight files in %s; loading the full-precision ones", source)
        return pipeline_class.from_pretrained(source, dtype=dtype, **kwargs)


def load_ip_adapter(pipe, settings: Settings) -> None:
    """The IP-Adapter of ``settings`` into ``pipe`` (its image encoder with it), on SDPA
    self-attention (attention.use_sdpa), not the classic processors diffusers would pick."""
    from attention import use_sdpa

    s = settings
    repo = check_source(s.ip_adapter_repo, "STORYBOARD_IP_ADAPTER_REPO")
    weight = weight_file(s.adapter_weight, "STORYBOARD_IP_ADAPTER_WEIGHT")
    use_sdpa(pipe.unet)
    try:
        pipe.load_ip_adapter(repo, subfolder=s.ip_adapter_subfolder, weight_name=weight,
                             image_encoder_folder=s.adapter_image_encoder, **hub_options(s))
    except Exception as error:  # noqa: BLE001 - any load failure becomes words for the user
        raise ModelNotAvailable(
            load_failure_message(f"the IP-Adapter {s.ip_adapter_subfolder}/{weight}", repo,
                                 "STORYBOARD_IP_ADAPTER_REPO", s.cache_dir, error)
        ) from error


def load_lora(pipe, settings: Settings, family: str) -> None:
    """The distilled ``family``'s LoRA (config.DISTILLED_FAMILIES) into ``pipe`` as an adapter
    of that name, from where the settings say (Settings.lora_source)."""
    s = settings
    source, name, setting = s.lora_source(family)
    repo = check_source(source, setting)
    weight = weight_file(name, "STORYBOARD_LIGHTNING_LORA_WEIGHT")
    if importlib.util.find_spec("peft") is None:
        raise ModelNotAvailable("The lightning and draft modes need the peft package, through which diffusers "
                                "loads LoRAs: pip install peft==0.21.2 (make installs it).")
    try:
        with warnings.catch_warnings():
            # peft warns that a second adapter joins the first: the draft's beside lightning's, by design.
            warnings.filterwarnings("ignore", "Already found a `peft_config` attribute", UserWarning)
            pipe.load_lora_weights(repo, weight_name=weight, adapter_name=family, **hub_options(s))
    except Exception as error:  # noqa: BLE001 - any load failure becomes words for the user
        raise ModelNotAvailable(
            load_failure_message(f"the {family} LoRA {weight}", repo, setting, s.cache_dir, error,
                                 size="the LoRA is a few hundred MB")
        ) from error
    log.info("loaded the %s LoRA %s from %s", family, weight, repo)


def distilled_scheduler(family: DistilledFamily, config):
    """The scheduler ``family``'s card prescribes, from SDXL's scheduler config."""
    import diffusers

    overrides = {"timestep_spacing": family.timestep_spacing} if family.timestep_spacing else {}
    return getattr(diffusers, family.scheduler).from_config(config, **overrides)


def load_taesdxl(settings: Settings, device: str, dtype):
    """TAESDXL (config.TAESDXL_HUB_ID, diffusers' AutoencoderTiny) on ``device``: the live
    previews' and the draft mode's decoder, a module of its own beside SDXL's VAE (~10 MB)."""
    from diffusers import AutoencoderTiny

    try:
        with warnings.catch_warnings():
            # The hub warns that the repo has no model card metadata to read offline: harmless.
            warnings.simplefilter("ignore", UserWarning)
            decoder = AutoencoderTiny.from_pretrained(TAESDXL_HUB_ID, dtype=dtype, use_safetensors=True,
                                                      **hub_options(settings))
    except Exception as error:  # noqa: BLE001 - any load failure becomes words for the user
        raise ModelNotAvailable(
            load_failure_message("TAESDXL, the decoder of previews and drafts", TAESDXL_HUB_ID, "STORYBOARD_HF_CACHE_DIR",
                                 settings.cache_dir, error, size="it is about 10 MB")
        ) from error
    return decoder.to(device)
