"""Full-size SDXL base 1.0 + the plus-face IP-Adapter with RANDOM weights, built offline.

A benchmark of the real architecture without the 10 GB download: every shape below is the
published config of ``stabilityai/stable-diffusion-xl-base-1.0`` (unet/, vae/,
text_encoder/, text_encoder_2/) and ``h94/IP-Adapter`` (models/image_encoder, the ViT-H
encoder, and ip-adapter-plus-face_sdxl_vit-h), written out in code. Only the weights are
random, so speed and memory are those of the real model; the pictures are noise.

* Each part is built directly on the target device in the target dtype (``torch.device``
  context + default dtype): no fp32 copy on the CPU first.
* The UNet's parameter count is checked against the real model's (2,567,463,684).
* The pipeline is a plain ``StableDiffusionXLPipeline``, and :func:`build_generator`
  returns the app's own ``StoryboardGenerator`` around it, so a benchmark runs the same
  generation code as the studio. The only difference: the IP-Adapter weights come from an
  in-memory state dict (original key format, loaded by diffusers' own ``load_ip_adapter``
  converters) instead of the hub, and so do the lightning mode's LoRA weights (rank 64, the
  kohya key format, loaded by diffusers' ``load_lora_weights``).
* FLOPs are counted on the META device (no memory, no compute) with
  ``torch.utils.flop_counter.FlopCounterMode``: each part (:func:`count_flops`, TAESDXL
  ``madebyollin/taesdxl`` included) and a whole panel in each speed mode (:func:`panel_flops`:
  FAST, lightning, and the one-pass draft decoded with TAESDXL).

Importing this module does nothing; torch and diffusers are imported inside functions.

    python bench/sdxl_random.py [--size 1024x1024]   # parameter count + FLOPs, meta device only
    python test_speed.py --model sdxl-random   # the benchmark (see BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

# --- Published configs ------------------------------------------------------------------

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json
UNET_CONFIG: dict = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": (5, 10, 20),
    "block_out_channels": (320, 640, 1280),
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,  # 6 time ids x 256 + 1280 pooled text
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": (1, 2, 10),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "upcast_attention": None,
    "use_linear_projection": True,
}
UNET_PARAMETERS = 2_567_463_684  # the real unet/diffusion_pytorch_model.safetensors
PARAMETER_TOLERANCE = 0.005

# stabilityai/stable-diffusion-xl-base-1.0, vae/config.json (the fp16-fix VAE has the same
# architecture with force_upcast False)
VAE_CONFIG: dict = {
    "act_fn": "silu",
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}

# madebyollin/taesdxl, config.json: diffusers' AutoencoderTiny with its default architecture.
# Checked: this config's state dict written as safetensors (header {"format": "pt"}) is
# 9,793,292 bytes, the size of the real diffusion_pytorch_model.safetensors; its decoder has
# 1.22M parameters. scaling_factor 1.0: it decodes the UNet's latents as they are.
TAESDXL_CONFIG: dict = {
    "act_fn": "relu",
    "decoder_block_out_channels": (64, 64, 64, 64),
    "encoder_block_out_channels": (64, 64, 64, 64),
    "force_upcast": False,
    "in_channels": 3,
    "latent_channels": 4,
    "latent_magnitude": 3,
    "latent_shift": 0.5,
    "num_decoder_blocks": (3, 3, 3, 1),
    "num_encoder_blocks": (1, 3, 3, 3),
    "out_channels": 3,
    "scaling_factor": 1.0,
    "upsampling_scaling_factor": 2,
}
_CLIP_TEXT_COMMON = {
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-05,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "bos_token_id": 0,  # the legacy ids of the real configs: pooled output at argmax(ids)
    "eos_token_id": 2,
    "pad_token_id": 1,
}
# text_encoder/config.json: OpenAI CLIP ViT-L/14 text tower
TEXT_ENCODER_CONFIG: dict = {
    **_CLIP_TEXT_COMMON,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
# text_encoder_2/config.json: OpenCLIP ViT-bigG/14 text tower, with its projection
TEXT_ENCODER_2_CONFIG: dict = {
    **_CLIP_TEXT_COMMON,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
# h94/IP-Adapter, models/image_encoder/config.json: OpenCLIP ViT-H/14 vision tower
IMAGE_ENCODER_CONFIG: dict = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-05,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
}
# ip-adapter-plus-face_sdxl_vit-h: a Resampler from the encoder's penultimate hidden states
# (257 x 1280) to 16 tokens of the UNet's cross-attention width. diffusers' converter fixes
# depth 4, head size 64 (so 20 heads) and feed-forward ratio 4.
RESAMPLER = {"dim": 1280, "queries": 16, "depth": 4, "heads": 20, "ff_mult": 4, "output": 2048}


class ParameterCountError(RuntimeError):
    """The built UNet is not SDXL's: a config value is wrong."""


# --- Building ---------------------------------------------------------------------------


@contextlib.contextmanager
def building_on(device, dtype):
    """Create every tensor on ``device`` in ``dtype`` (random init included)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_unet(device="meta", dtype=None):
    """SDXL's UNet with random weights; on the meta device by default (no memory at all)."""
    import torch
    from diffusers import UNet2DConditionModel

    with building_on(device, dtype or torch.float32):
        return UNet2DConditionModel(**UNET_CONFIG).eval()


def check_unet_parameters(unet) -> int:
    """Fail loudly unless the UNet has SDXL's 2.567 billion parameters (+-0.5%)."""
    count = count_parameters(unet)
    if abs(count - UNET_PARAMETERS) > PARAMETER_TOLERANCE * UNET_PARAMETERS:
        raise ParameterCountError(
            f"the random UNet has {count:,} parameters, SDXL base 1.0 has {UNET_PARAMETERS:,} "
            f"(off by {100 * (count / UNET_PARAMETERS - 1):+.2f}%, more than {100 * PARAMETER_TOLERANCE}%): "
            "a config value in sdxl_random.UNET_CONFIG is wrong"
        )
    return count


# TencentARC/t2i-adapter-{sketch,openpose}-sdxl-1.0, config.json (the two share the architecture)
T2I_ADAPTER_CONFIG: dict = {"in_channels": 3, "channels": [320, 640, 1280, 1280], "num_res_blocks": 2,
                            "downscale_factor": 16, "adapter_type": "full_adapter_xl"}
T2I_ADAPTER_PARAMETERS = (77_000_000, 79_500_000)  # "77/79 M" by the model cards


def build_t2i_adapter(device="meta", dtype=None):
    import torch
    from diffusers import T2IAdapter

    with building_on(device, dtype or torch.float32):
        adapter = T2IAdapter(**T2I_ADAPTER_CONFIG).eval()
    count = count_parameters(adapter)
    low, high = T2I_ADAPTER_PARAMETERS
    if not low <= count <= high:
        raise ParameterCountError(f"the random T2I-Adapter has {count:,} parameters, the cards say 77/79M: "
                                  "a value in sdxl_random.T2I_ADAPTER_CONFIG is wrong")
    return adapter


def t2i_adapter_flops(width: int = 1024, height: int = 1024) -> int:
    """FLOPs of one run of a layout's T2I-Adapter on a ``width`` x ``height`` picture: once a panel
    (its features are added to the UNet's at each step it steers, a few additions each)."""
    import torch

    adapter = build_t2i_adapter("meta")
    with torch.device("meta"):
        image = torch.randn(1, 3, height, width)
        return _count_flops(lambda: adapter(image))


def build_vae(device="meta", dtype=None, force_upcast: bool = True):
    import torch
    from diffusers import AutoencoderKL

    with building_on(device, dtype or torch.float32):
        return AutoencoderKL(**{**VAE_CONFIG, "force_upcast": force_upcast}).eval()


def build_taesdxl(device="meta", dtype=None):
    import torch
    from diffusers import AutoencoderTiny

    with building_on(device, dtype or torch.float32):
        return AutoencoderTiny(**TAESDXL_CONFIG).eval()


def build_identity_unet(device="meta", dtype=None):
    """SDXL's UNet with the plus-face IP-Adapter, loaded by diffusers' own ``load_ip_adapter``
    (its processors and Resampler), as the generator runs it when the identity lock is on."""
    import torch
    import tiny_models
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    dtype = dtype or torch.float32
    unet = build_unet(device, dtype)
    holder = StableDiffusionXLPipeline(vae=None, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                       tokenizer_2=None, unet=unet,
                                       scheduler=EulerDiscreteScheduler.from_config(tiny_models.SCHEDULER_CONFIG))
    holder.load_ip_adapter(plus_face_adapter_state_dict(unet, device, dtype), subfolder="sdxl_models",
                           weight_name="ip-adapter-plus-face_sdxl_vit-h.safetensors", image_encoder_folder=None)
    return unet


def build_text_encoders(device="meta", dtype=None):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with building_on(device, dtype or torch.float32):
        first = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG)).eval()
        second = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_ENCODER_2_CONFIG)).eval()
    return first, second


def build_image_encoder(device="meta", dtype=None):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with building_on(device, dtype or torch.float32):
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG)).eval()


def build_tokenizers():
    """The real CLIP BPE tokenizer twice (tokenizer_2 pads with "!"), from a temp folder."""
    import tiny_models
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="sdxl-random-tok-") as folder:
        tiny_models.write_clip_tokenizer(Path(folder) / "tokenizer")
        tiny_models.write_clip_tokenizer(Path(folder) / "tokenizer_2", pad_token="!")
        return (CLIPTokenizer.from_pretrained(Path(folder) / "tokenizer"),
                CLIPTokenizer.from_pretrained(Path(folder) / "tokenizer_2"))


def plus_face_adapter_state_dict(unet, device, dtype, seed: int = 0) -> dict:
    """Random ip-adapter-plus-face_sdxl_vit-h weights in the ORIGINAL key format.

    ``{"image_proj": {...}, "ip_adapter": {"1.to_k_ip.weight": ...}}`` as
    ``load_ip_adapter`` builds it from the hub file: the cross-attention layers are
    numbered 1, 3, 5, ... in ``unet.attn_processors`` order (70 of them in SDXL).
    """
    import torch
    import tiny_models

    meta = torch.device(device).type == "meta"  # shapes only, to count FLOPs
    g = None if meta else torch.Generator(device=device).manual_seed(seed)
    dim, out, embed = RESAMPLER["dim"], RESAMPLER["output"], IMAGE_ENCODER_CONFIG["hidden_size"]
    cross = UNET_CONFIG["cross_attention_dim"]

    def rand(*shape):
        if meta:
            return torch.empty(*shape, device=device, dtype=dtype)
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(dtype)

    def ones(n):
        return torch.ones(n, device=device, dtype=dtype)

    def zeros(n):
        return torch.zeros(n, device=device, dtype=dtype)

    proj = {
        "latents": rand(1, RESAMPLER["queries"], dim),
        "proj_in.weight": rand(dim, embed),
        "proj_in.bias": zeros(dim),
        "proj_out.weight": rand(out, dim),
        "proj_out.bias": zeros(out),
        "norm_out.weight": ones(out),
        "norm_out.bias": zeros(out),
    }
    inner = 64 * RESAMPLER["heads"]
    for i in range(RESAMPLER["depth"]):
        p = f"layers.{i}"
        for norm in ("norm1", "norm2"):
            proj[f"{p}.0.{norm}.weight"] = ones(dim)
            proj[f"{p}.0.{norm}.bias"] = zeros(dim)
        proj[f"{p}.0.to_q.weight"] = rand(inner, dim)
        proj[f"{p}.0.to_kv.weight"] = rand(2 * inner, dim)
        proj[f"{p}.0.to_out.weight"] = rand(dim, inner)
        proj[f"{p}.1.0.weight"] = ones(dim)
        proj[f"{p}.1.0.bias"] = zeros(dim)
        proj[f"{p}.1.1.weight"] = rand(RESAMPLER["ff_mult"] * dim, dim)
        proj[f"{p}.1.3.weight"] = rand(dim, RESAMPLER["ff_mult"] * dim)
    layers = {}
    for i, width in enumerate(tiny_models._cross_attention_widths(unet)):
        for name in ("to_k_ip", "to_v_ip"):
            layers[f"{2 * i + 1}.{name}.weight"] = rand(width, cross)
    return {"image_proj": proj, "ip_adapter": layers}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def build_pipeline(device: str, dtype, force_upcast: bool = True):
    """A StableDiffusionXLPipeline of full-size random parts on ``device`` in ``dtype``.

    Returns ``(pipe, info)``; ``info`` holds per-part parameter counts and build seconds.
    The pipeline's ``load_ip_adapter`` is wrapped so that whatever repository it is asked
    for, it loads random plus-face weights from memory (built then, on the device); its
    ``load_lora_weights`` likewise loads a random rank-64 LoRA in SDXL-Lightning's format.
    """
    import torch
    import tiny_models
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPImageProcessor

    info: dict = {"seconds": {}, "parameters": {}}

    def part(name, make):
        _sync(device)
        started = time.perf_counter()
        torch.manual_seed(len(info["seconds"]))
        module = make()
        _sync(device)
        info["seconds"][name] = time.perf_counter() - started
        info["parameters"][name] = count_parameters(module) if hasattr(module, "parameters") else 0
        return module

    unet = part("unet", lambda: build_unet(device, dtype))
    check_unet_parameters(unet)
    vae = part("vae", lambda: build_vae(device, dtype, force_upcast))
    text_encoder, text_encoder_2 = part("text_encoders", lambda: build_text_encoders(device, dtype))
    info["parameters"]["text_encoder"] = count_parameters(text_encoder)
    info["parameters"]["text_encoder_2"] = count_parameters(text_encoder_2)
    del info["parameters"]["text_encoders"]
    image_encoder = part("image_encoder", lambda: build_image_encoder(device, dtype))
    tokenizer, tokenizer_2 = build_tokenizers()
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(tiny_models.SCHEDULER_CONFIG),
        image_encoder=image_encoder,
        feature_extractor=CLIPImageProcessor(size=224, crop_size=224),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    original = pipe.load_ip_adapter

    def load_ip_adapter_from_memory(_source, subfolder, weight_name, **_ignored):
        # Same converters as the hub file goes through; only the source differs.
        started = time.perf_counter()
        state = plus_face_adapter_state_dict(pipe.unet, device, dtype)
        info["parameters"]["ip_adapter"] = sum(t.numel() for d in state.values() for t in d.values())
        original(state, subfolder=subfolder, weight_name=weight_name, image_encoder_folder=None)
        del state
        _sync(device)
        info["seconds"]["ip_adapter"] = time.perf_counter() - started

    pipe.load_ip_adapter = load_ip_adapter_from_memory
    original_lora = pipe.load_lora_weights

    def load_lora_weights_from_memory(_source, weight_name=None, adapter_name=None, **_ignored):
        # A random LoRA of SDXL-Lightning's rank and key format, through diffusers' converters.
        started = time.perf_counter()
        state = tiny_models.kohya_lora_tensors(pipe.unet, tiny_models.LORA_RANK, tiny_models.LORA_ALPHA,
                                               std=0.02, dtype=dtype)
        info["parameters"]["lora"] = sum(t.numel() for k, t in state.items() if not k.endswith(".alpha"))
        info["lora_layers"] = len(state) // 3
        original_lora(state, weight_name=weight_name, adapter_name=adapter_name)
        del state
        _sync(device)
        info["seconds"]["lora"] = time.perf_counter() - started

    pipe.load_lora_weights = load_lora_weights_from_memory
    return pipe, info


def build_generator(settings, device: str | None = None, dtype=None, force_upcast: bool = True):
    """The app's StoryboardGenerator around a random full-size pipeline.

    ``StoryboardGenerator.from_pipeline`` does what ``load`` does after ``from_pretrained``
    (attention setup, IP-Adapter when the identity lock is on by default, channels_last and
    torch.compile on CUDA). Its TAESDXL, the draft mode's and the previews' decoder, is random
    too (:func:`random_previews`). ``generator.build_info`` holds the parameter counts and
    per-part build seconds.
    """
    from local_image_generator import StoryboardGenerator, resolve_device, resolve_dtype

    started = time.perf_counter()
    device = device or resolve_device(settings.device)
    dtype = dtype or resolve_dtype(settings.precision, device)
    pipe, info = build_pipeline(device, dtype, force_upcast=force_upcast)
    generator = StoryboardGenerator.from_pipeline(pipe, settings, device, dtype)
    generator.previews = random_previews(settings, device, dtype, info)
    _sync(device)
    generator.load_seconds = time.perf_counter() - started
    generator.build_info = info
    return generator


def random_previews(settings, device: str, dtype, info: dict | None = None):
    """The generator's TAESDXL (previews.PreviewDecoder) with random weights of the real
    architecture on ``device``, instead of ``madebyollin/taesdxl`` from the hub, which the
    benchmark never downloads; ``info`` (build_pipeline's) gets its parameters and seconds."""
    import torch
    from previews import PreviewDecoder

    started = time.perf_counter()
    torch.manual_seed(5)
    taesd = build_taesdxl(device, dtype)
    if info is not None:
        info["parameters"]["taesdxl"] = count_parameters(taesd)
        info["seconds"]["taesdxl"] = time.perf_counter() - started
    return PreviewDecoder(settings, device, dtype, taesd=taesd)


# --- FLOPs on the meta device -------------------------------------------------------------


def _count_flops(fn) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def unet_flops(width: int = 1024, height: int = 1024, batch: int = 1, unet=None) -> int:
    """FLOPs of one UNet forward (batch 2 = one classifier-free-guidance step); with the
    IP-Adapter loaded (:func:`build_identity_unet`), the reference's ViT-H hidden states go in too."""
    import torch

    unet = unet if unet is not None else build_unet("meta")
    with torch.device("meta"):
        sample = torch.randn(batch, 4, height // 8, width // 8)
        context = torch.randn(batch, 77, UNET_CONFIG["cross_attention_dim"])
        added = {"text_embeds": torch.randn(batch, TEXT_ENCODER_2_CONFIG["projection_dim"]),
                 "time_ids": torch.randn(batch, 6)}
        if unet.config.encoder_hid_dim_type == "ip_image_proj":
            patches = (IMAGE_ENCODER_CONFIG["image_size"] // IMAGE_ENCODER_CONFIG["patch_size"]) ** 2
            added["image_embeds"] = [torch.randn(batch, 1, patches + 1, IMAGE_ENCODER_CONFIG["hidden_size"])]
        timestep = torch.tensor(999.0)
        return _count_flops(lambda: unet(sample, timestep, context, added_cond_kwargs=added))


def decode_flops(vae, width: int = 1024, height: int = 1024) -> int:
    """FLOPs of one latent decoded to a ``width`` x ``height`` image by ``vae`` (SDXL's or TAESDXL)."""
    import torch

    with torch.device("meta"):
        latents = torch.randn(1, 4, height // 8, width // 8)
        return _count_flops(lambda: vae.decode(latents))


def encoder_flops() -> dict:
    """FLOPs of one prompt through both text encoders and of one image through ViT-H."""
    import torch

    first, second = build_text_encoders("meta")
    image = build_image_encoder("meta")
    with torch.device("meta"):
        ids = torch.zeros(1, 77, dtype=torch.long)
        pixels = torch.randn(1, 3, 224, 224)
        text = _count_flops(lambda: (first(ids, output_hidden_states=True), second(ids, output_hidden_states=True)))
        vision = _count_flops(lambda: image(pixels, output_hidden_states=True))
    return {"text_prompt": text, "image": vision}


# --- Device measurements ------------------------------------------------------------------


def matmul_rate(device: str, dtype, size: int | None = None, runs: int = 5) -> float:
    """FLOP/s of a big square matmul in ``dtype`` on ``device`` (median of ``runs``)."""
    import torch

    size = size or (8192 if device != "cpu" else 2048)
    repeat = 10 if device != "cpu" else 1
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(runs):
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeat):
            a @ b
        _sync(device)
        times.append((time.perf_counter() - started) / repeat)
    return 2 * size**3 / statistics.median(times)


def peak_memory_bytes(device: str) -> int:
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    if device == "mps":
        return int(torch.mps.driver_allocated_memory())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def reset_peak_memory(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def component_timings(generator, reference, width: int, height: int, prompt: str, repeat: int = 1) -> dict:
    """Median seconds of each part of a panel, timed one by one with device sync.

    text_encode_s: one prompt through both text encoders; image_encode_s: the reference
    through ViT-H (with the zero image for CFG, as the pipeline does); unet_step_*_s: one
    CFG step (batch 2) with the identity lock off (plain processors) and on (IP-Adapter
    processors, as the generator sets them); vae_decode_*_s: one latent, with the VAE's
    force_upcast on and off (they differ only in half precision).
    """
    import torch

    pipe, device, dtype = generator.pipe, generator.device, generator.dtype

    def median_time(fn):
        times = []
        for _ in range(max(1, repeat)):
            _sync(device)
            started = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    out: dict = {}
    with torch.inference_mode():
        out["text_encode_s"] = median_time(lambda: pipe.encode_prompt(
            prompt=[prompt], device=device, num_images_per_prompt=1, do_classifier_free_guidance=False))
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=[prompt], device=device, num_images_per_prompt=1, do_classifier_free_guidance=False)
        generator._set_identity_mode(True)
        image_embeds = pipe.prepare_ip_adapter_image_embeds(reference, None, device, 1, True)
        out["image_encode_s"] = median_time(
            lambda: pipe.prepare_ip_adapter_image_embeds(reference, None, device, 1, True))
        g = torch.Generator("cpu").manual_seed(0)
        sample = torch.randn(2, 4, height // 8, width // 8, generator=g).to(device, dtype)
        context = torch.cat([embeds, embeds]).to(dtype)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2, device=device, dtype=dtype)
        added = {"text_embeds": torch.cat([pooled, pooled]).to(dtype), "time_ids": time_ids}
        timestep = torch.tensor(999.0, device=device)

        def step(ip: bool):
            kwargs = {**added, "image_embeds": image_embeds} if ip else added
            return pipe.unet(sample, timestep, context, added_cond_kwargs=kwargs, return_dict=False)[0]

        for lock, name in ((True, "ip"), (False, "plain")):
            generator._set_identity_mode(lock)
            step(lock)  # first call after the processor swap (compile: a recompile)
            out[f"unet_step_{name}_s"] = median_time(lambda: step(lock))
            out[f"unet_ops_{name}"] = count_ops(lambda: step(lock))
            if not generator.compiled:
                # As inside a board: the cross-attention constants kept from the first step.
                with generator._fold.scope():
                    step(lock)
                    out[f"unet_step_{name}_folded_s"] = median_time(lambda: step(lock))
                    out[f"unet_ops_{name}_folded"] = count_ops(lambda: step(lock))
        generator._set_identity_mode(True)
        latents = sample[:1]
        vae = pipe.vae
        configured = bool(vae.config.force_upcast)
        for upcast in (configured, not configured):
            if upcast != configured and dtype == torch.float32:
                break  # fp32 never upcasts: nothing to compare
            vae.register_to_config(force_upcast=upcast)
            try:
                generator._decode(latents, vae, force_fp32=False)  # warm-up (and the dtype switch)
                out[f"vae_decode_{'upcast' if upcast else 'no_upcast'}_s"] = median_time(
                    lambda: generator._decode(latents, vae, force_fp32=False))
            finally:
                vae.register_to_config(force_upcast=configured)
        out["vae_decode_s"] = out[f"vae_decode_{'upcast' if configured else 'no_upcast'}_s"]
    out["attention_processors_ip"] = _processor_summary(pipe.unet)
    return out


def count_ops(fn) -> int:
    """How many ATen operators ``fn`` dispatches: on a GPU, about how many kernels it launches
    (an eager SDXL step on an H100 is bound by them, not by FLOPs)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    with Counter() as counter:
        fn()
    return counter.count


def _processor_summary(unet) -> dict:
    summary: dict = {}
    for name, processor in unet.attn_processors.items():
        kind = "self" if name.endswith("attn1.processor") else "cross"
        if ".encoder_hid_proj." in name or name.startswith("encoder_hid_proj"):
            kind = "resampler"
        key = f"{kind}:{type(processor).__name__}"
        summary[key] = summary.get(key, 0) + 1
    return summary


def floor_seconds(flops: dict, rate: float, steps: int, frames: int, cfg: bool = True) -> dict:
    """The time the FLOPs alone would take at the measured matmul rate."""
    step = flops["unet_cfg_step"] if cfg else flops["unet_forward"]
    panel = (steps * step + flops["vae_decode"]) / rate
    shared = (2 * flops["text_prompt"] + 2 * flops["image"]) / rate  # prompts + negative; image + zeros
    return {"panel_s": panel, "board_s": frames * panel + shared, "shared_encode_s": shared}


def count_flops(width: int, height: int) -> dict:
    """FLOPs of each part a panel is made of: a UNet pass (plain, with the plus-face IP-Adapter,
    and a CFG step), a decode by SDXL's VAE and by TAESDXL, a small live preview of one step
    (TAESDXL on the step's latents pooled as previews.py pools them, 512 px for a 1024 px panel; a
    full-size one is ``taesdxl_decode``), one prompt through both text encoders, one image through ViT-H."""
    from previews import PREVIEW_POOL

    unet = build_unet("meta")
    taesdxl = build_taesdxl("meta")
    return {
        "unet_forward": unet_flops(width, height, 1, unet),
        "unet_forward_identity": unet_flops(width, height, 1, build_identity_unet("meta")),
        "unet_cfg_step": unet_flops(width, height, 2, unet),
        "vae_decode": decode_flops(build_vae("meta"), width, height),
        "taesdxl_decode": decode_flops(taesdxl, width, height),
        "preview_small": decode_flops(taesdxl, width // PREVIEW_POOL, height // PREVIEW_POOL),
        **encoder_flops(),
    }


PANEL_MODES = ("fast", "lightning", "draft")  # the modes this script prints


def panel_flops(mode: str, parts: dict, identity: bool = True) -> int:
    """A one-panel board's FLOPs in ``mode`` (a config.PRESETS name, as it stands there), from
    :func:`count_flops`: config.SpeedPreset.panel_flops, the sum the studio serves."""
    from config import PRESETS

    return PRESETS[mode].panel_flops(parts, identity)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SDXL's parameter count and FLOPs, on the meta device.")
    parser.add_argument("--size", default="1024x1024", help="WxH (default 1024x1024)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    unet = build_unet("meta")
    print(f"UNet parameters: {check_unet_parameters(unet):,} (SDXL base 1.0: {UNET_PARAMETERS:,})")
    parts = count_flops(width, height)
    for name, value in parts.items():
        print(f"{name:>21}: {value / 1e12:8.3f} TFLOP")
    for size, value in (("full", parts["taesdxl_decode"]), ("small", parts["preview_small"])):
        share = 100 * value / parts["unet_forward"]
        print(f"a step's preview, {size:>5}: {value / 1e12:6.3f} TFLOP ({share:.1f}% of a UNet pass)")
    from config import PRESETS

    for mode in PANEL_MODES:
        how = PRESETS[mode].description
        for identity in (True, False):
            total = panel_flops(mode, parts, identity) / 1e12
            print(f"a {mode} panel ({how}, identity lock {'on' if identity else 'off'}): {total:.1f} TFLOP")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the studio's modules
    raise SystemExit(main())
