"""Tiny random SDXL, IP-Adapter and distilled-LoRA repositories in the hub layout, built offline.

Nothing can be downloaded from the Hugging Face hub in tests or CI, so this module writes
small random models with the same folder layout, file formats and weight-key formats as
``stabilityai/stable-diffusion-xl-base-1.0``, ``h94/IP-Adapter``, the tiny decoder
``madebyollin/taesdxl`` and the distilled LoRAs of the lightning and draft modes
(``ByteDance/SDXL-Lightning`` and the others in ``LORA_REPOS``) into an HF cache folder,
under the real hub ids. The generator then loads them through its normal code
path (``from_pretrained`` + ``load_ip_adapter`` + ``load_lora_weights``), so what the tests
exercise is what users run.

The tokenizers are the real CLIP BPE tokenizer (vocabulary rebuilt from the merges file
that ships in the ``clip-anytorch`` package), so the 77-token prompt budget is counted as on
the real model.

    python tiny_models.py --cache-dir DIR     # build (or rebuild) the tiny repos
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SDXL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
IP_ADAPTER_REPO = "h94/IP-Adapter"
FP16_FIX_VAE_REPO = "madebyollin/sdxl-vae-fp16-fix"  # the tiny VAE again, with force_upcast off
# TAESDXL: a diffusers AutoencoderTiny (config.json + diffusion_pytorch_model.safetensors at the
# repo root) that decodes SDXL's latents as they are (scaling_factor 1.0), for drafts and previews.
TAESDXL_REPO = "madebyollin/taesdxl"
# The distilled LoRAs of the lightning and draft modes: hub id -> files. All of them ship kohya
# keys (lora_unet_<module>.lora_down/lora_up/alpha) over the same 788 UNet layers: the safetensors
# header of that layout, computed for the full-size UNet, gives the real files' sizes to the byte
# (SDXL-Lightning 393,854,592 at rank 64 in fp16; every Hyper-SDXL LoRA 787,359,648 at rank 64
# in fp32 or rank 128 in fp16, header {"format": "pt"}); the PEFT layout would be 122 KB smaller.
LORA_REPOS = {
    "ByteDance/SDXL-Lightning": [f"sdxl_lightning_{n}step_lora.safetensors" for n in (2, 4, 8)],
    # The 1-step file is the "unified" LoRA (any step count, with TCDScheduler); note "1step".
    "ByteDance/Hyper-SD": ["Hyper-SDXL-1step-lora.safetensors"]
                          + [f"Hyper-SDXL-{n}steps-lora.safetensors" for n in (2, 4, 8)],
    "latent-consistency/lcm-lora-sdxl": ["pytorch_lora_weights.safetensors"],
}
# The T2I-Adapters of a panel's layout (layouts.LAYOUT_KINDS): a diffusers T2IAdapter each
# (config.json + diffusion_pytorch_model.safetensors at the repo root), seeded apart.
T2I_ADAPTER_REPOS = {"TencentARC/t2i-adapter-sketch-sdxl-1.0": 7, "TencentARC/t2i-adapter-openpose-sdxl-1.0": 8}
REPOS = (SDXL_REPO, IP_ADAPTER_REPO, FP16_FIX_VAE_REPO, TAESDXL_REPO, *LORA_REPOS, *T2I_ADAPTER_REPOS)
# The UNet layers an SDXL distillation LoRA adapts: the defaults of diffusers'
# train_lcm_distill_lora_sdxl.py (attention, feed-forward, resnets, resamplers).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
# SDXL-Lightning's LoRA: rank 64 with alpha 8 (a 1/8 scale; refiners loads it at scale 1/8).
LORA_RANK, LORA_ALPHA = 64, 8.0
TINY_LORA_RANK = 4  # same 1/8 scale: alpha 0.5
# Bump when the tiny architecture changes, so stale caches are rebuilt.
TINY_VERSION = "7"

# Widths chosen so that a transposed or misplaced weight fails loudly: the cross-attention
# width (32 + 40 = 72) differs from every UNet width (32, 64).
TEXT_HIDDEN = (32, 40)
CROSS_DIM = sum(TEXT_HIDDEN)
UNET_WIDTHS = (32, 64)
TIME_EMBED_DIM = 8
VIT_H = {"hidden": 32, "projection": 24}  # stand-in for models/image_encoder (ViT-H)
BIG_G = {"hidden": 48, "projection": 40}  # stand-in for sdxl_models/image_encoder (bigG)
RESAMPLER = {"dim": 64, "queries": 4, "depth": 4}  # diffusers' converter fixes depth 4, head 64
TAESD_WIDTH = 16  # every stage of AutoencoderTiny has one width (the real one: 64)

SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


class MissingVocabulary(RuntimeError):
    pass


# --- Tokenizer ---------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's (and GPT-2's) reversible byte -> printable character table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_bpe_merges() -> list[str]:
    """The real CLIP BPE merges, read from the clip-anytorch package without importing it."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("clip-anytorch")
    except importlib.metadata.PackageNotFoundError:
        raise MissingVocabulary(
            "The tiny models need CLIP's BPE vocabulary from the clip-anytorch package: "
            "pip install --no-deps clip-anytorch==2.6.0 (make installs it)."
        ) from None
    path = Path(dist.locate_file("clip/bpe_simple_vocab_16e6.txt.gz"))
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    return lines[1 : 49152 - 256 - 2 + 1]  # the slice CLIP itself uses


def write_clip_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """Write vocab.json, merges.txt and configs as in the SDXL repo's tokenizer folders."""
    merges = clip_bpe_merges()
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


# --- Models ------------------------------------------------------------------------------


def _text_config(hidden: int, projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,  # SDXL reads the penultimate hidden state
        num_attention_heads=4,
        vocab_size=49408,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
        hidden_act="gelu",
        bos_token_id=0,  # the legacy ids of the real configs: pooled output at argmax(ids)
        eos_token_id=2,
        pad_token_id=1,
    )


def _vision_encoder(hidden: int, projection: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=projection,
        hidden_act="gelu",
    )
    return CLIPVisionModelWithProjection(config).eval()


def build_sdxl_pipeline(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=UNET_WIDTHS,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=CROSS_DIM,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=TIME_EMBED_DIM * 6 + TEXT_HIDDEN[1],
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 16, 32, 32),  # 4 levels: scale factor 8, as in SDXL
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.13025,
        force_upcast=True,
    )
    text_encoder = CLIPTextModel(_text_config(TEXT_HIDDEN[0])).eval()
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(TEXT_HIDDEN[1])).eval()
    scheduler = EulerDiscreteScheduler.from_config(SCHEDULER_CONFIG)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=None,
        unet=unet,
        scheduler=scheduler,
    )


def build_taesdxl(seed: int = 5):
    """TAESDXL's architecture (diffusers' AutoencoderTiny defaults, as the real config.json has
    them: 4 latent channels, 3 upsamplings so the scale factor is 8, scaling_factor 1.0), narrower
    and with one block a stage."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(
        encoder_block_out_channels=(TAESD_WIDTH,) * 4,
        decoder_block_out_channels=(TAESD_WIDTH,) * 4,
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
        scaling_factor=1.0,
    ).eval()


def build_t2i_adapter(seed: int):
    """A T2I-Adapter for the tiny UNet, in SDXL's layout ("full_adapter_xl": pixels unshuffled
    by 16, one feature map per UNet width, added after the first down block and inside the
    second as in SDXL), one residual block a level where the real one has two."""
    import torch
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    return T2IAdapter(in_channels=3, channels=list(UNET_WIDTHS), num_res_blocks=1, downscale_factor=16,
                      adapter_type="full_adapter_xl")


def _cross_attention_widths(unet) -> list[int]:
    """Hidden width of each cross-attention layer, in the order diffusers numbers them."""
    widths = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            widths.append(unet.config.block_out_channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])])
        else:
            widths.append(unet.config.block_out_channels[int(name[len("down_blocks.")])])
    return widths


def _adapter_layers(widths: list[int], generator) -> dict:
    import torch

    # The original files number every attention layer, self-attention included, so the
    # cross-attention layers that carry IP weights are 1, 3, 5, ...
    tensors = {}
    for i, width in enumerate(widths):
        key = 2 * i + 1
        for name in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key}.{name}.weight"] = torch.randn(width, CROSS_DIM, generator=generator) * 0.05
    return tensors


def plain_adapter_tensors(widths: list[int], seed: int = 1) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    embed = BIG_G["projection"]
    return {
        "image_proj.proj.weight": torch.randn(4 * CROSS_DIM, embed, generator=g) * 0.05,
        "image_proj.proj.bias": torch.zeros(4 * CROSS_DIM),
        "image_proj.norm.weight": torch.ones(CROSS_DIM),
        "image_proj.norm.bias": torch.zeros(CROSS_DIM),
        **_adapter_layers(widths, g),
    }


def plus_adapter_tensors(widths: list[int], seed: int = 2) -> dict:
    """A Resampler ("plus") adapter in the original IP-Adapter key layout."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dim, embed = RESAMPLER["dim"], VIT_H["hidden"]

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    t = {
        "image_proj.latents": rand(1, RESAMPLER["queries"], dim),
        "image_proj.proj_in.weight": rand(dim, embed),
        "image_proj.proj_in.bias": torch.zeros(dim),
        "image_proj.proj_out.weight": rand(CROSS_DIM, dim),
        "image_proj.proj_out.bias": torch.zeros(CROSS_DIM),
        "image_proj.norm_out.weight": torch.ones(CROSS_DIM),
        "image_proj.norm_out.bias": torch.zeros(CROSS_DIM),
    }
    for i in range(RESAMPLER["depth"]):
        p = f"image_proj.layers.{i}"
        for norm in ("norm1", "norm2"):
            t[f"{p}.0.{norm}.weight"] = torch.ones(dim)
            t[f"{p}.0.{norm}.bias"] = torch.zeros(dim)
        t[f"{p}.0.to_q.weight"] = rand(dim, dim)  # one head of 64
        t[f"{p}.0.to_kv.weight"] = rand(2 * dim, dim)
        t[f"{p}.0.to_out.weight"] = rand(dim, dim)
        t[f"{p}.1.0.weight"] = torch.ones(dim)
        t[f"{p}.1.0.bias"] = torch.zeros(dim)
        t[f"{p}.1.1.weight"] = rand(4 * dim, dim)
        t[f"{p}.1.3.weight"] = rand(dim, 4 * dim)
    t.update(_adapter_layers(widths, g))
    return t


# --- Distilled LoRAs ---------------------------------------------------------------------


def lora_target_modules(unet) -> list:
    """(name, module) of every UNet layer a distillation LoRA adapts, in model order."""
    found = []
    for name, module in unet.named_modules():
        if not name.startswith(("down_blocks.", "mid_block.", "up_blocks.")):
            continue
        if any(name.endswith("." + target) for target in LORA_TARGETS):
            found.append((name, module))
    return found


def _lora_pair(module, rank: int, generator, std: float, dtype):
    """Random (down, up) weights for one layer: Linear [r, in] / [out, r]; Conv2d as kohya
    writes it, down with the layer's kernel [r, in, kh, kw] and up 1x1 [out, r, 1, 1]."""
    import torch

    def rand(*shape):
        return (torch.randn(*shape, generator=generator, device=generator.device) * std).to(dtype)

    module = getattr(module, "base_layer", module)  # a layer another LoRA already wraps (peft): its own shape
    if isinstance(module, torch.nn.Conv2d):
        return rand(rank, module.in_channels, *module.kernel_size), rand(module.out_channels, rank, 1, 1)
    return rand(rank, module.in_features), rand(module.out_features, rank)


def kohya_lora_tensors(unet, rank: int, alpha: float, seed: int = 3, std: float = 0.1, dtype=None) -> dict:
    """A random LoRA in the kohya key format: lora_unet_<module path with _>.lora_down.weight,
    .lora_up.weight and .alpha, as SDXL-Lightning's and LCM-LoRA's files are written."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator(device=next(unet.parameters()).device).manual_seed(seed)
    tensors = {}
    for name, module in lora_target_modules(unet):
        key = "lora_unet_" + name.replace(".", "_")
        down, up = _lora_pair(module, rank, g, std, dtype)
        tensors[f"{key}.lora_down.weight"] = down
        tensors[f"{key}.lora_up.weight"] = up
        tensors[f"{key}.alpha"] = torch.tensor(alpha, dtype=dtype)
    return tensors


# --- Hub cache layout --------------------------------------------------------------------


def _repo(cache_dir: Path, repo_id: str) -> tuple[Path, str]:
    """The repo's folder in an HF cache and the snapshot id of this version of the twins."""
    return (Path(cache_dir) / ("models--" + repo_id.replace("/", "--")),
            hashlib.sha1(f"{repo_id}@tiny-{TINY_VERSION}".encode()).hexdigest())


def repo_snapshot(cache_dir: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in an HF cache, creating refs/main if needed."""
    repo, sha = _repo(cache_dir, repo_id)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    return repo / "snapshots" / sha


def is_built(cache_dir: Path) -> bool:
    """Whether every twin of this version is there, complete and current; writes nothing (the
    studio's health asks, on a disk that may be full)."""
    def current(repo_id: str) -> bool:
        repo, sha = _repo(cache_dir, repo_id)
        refs = repo / "refs" / "main"
        return (repo / "snapshots" / sha / ".tiny-complete").exists() and refs.exists() and refs.read_text() == sha

    return all(current(repo_id) for repo_id in REPOS)


def build(cache_dir: Path | str, force: bool = False) -> Path:
    """Write the tiny repos into ``cache_dir`` (an HF cache folder) and return it.

    Safe when several processes (two Redis workers started together) build into one cache at
    once, as the hub's own downloads are: one builds under an OS lock (released if it dies)
    while the others wait and then find the models built; each repo is written aside and
    renamed into place whole.
    """
    from filelock import FileLock

    cache_dir = Path(cache_dir)
    if is_built(cache_dir) and not force:
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(cache_dir / ".tiny-build.lock"):
        if is_built(cache_dir) and not force:
            return cache_dir
        for stale in cache_dir.glob(".tiny-build-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=cache_dir))
        try:
            _write(staging)
            for repo in REPOS:
                final = repo_snapshot(cache_dir, repo)
                shutil.rmtree(final, ignore_errors=True)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(repo_snapshot(staging, repo), final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("tiny models written to %s", cache_dir)
    return cache_dir


def _write(cache_dir: Path) -> None:
    """Every tiny repo, complete, into a fresh HF cache folder."""
    from safetensors.torch import save_file

    sdxl = repo_snapshot(cache_dir, SDXL_REPO)
    adapters = repo_snapshot(cache_dir, IP_ADAPTER_REPO)
    loras = {repo: repo_snapshot(cache_dir, repo) for repo in LORA_REPOS}
    vae = repo_snapshot(cache_dir, FP16_FIX_VAE_REPO)
    taesdxl = repo_snapshot(cache_dir, TAESDXL_REPO)

    pipe = build_sdxl_pipeline()
    pipe.save_pretrained(sdxl, safe_serialization=True)
    # save_pretrained rewrites tokenizers in a newer format: write the hub layout ourselves.
    write_clip_tokenizer(sdxl / "tokenizer")
    write_clip_tokenizer(sdxl / "tokenizer_2", pad_token="!")
    index = json.loads((sdxl / "model_index.json").read_text())
    for absent in ("image_encoder", "feature_extractor"):  # the real index does not list them
        index.pop(absent, None)
    index.update(tokenizer=["transformers", "CLIPTokenizer"], tokenizer_2=["transformers", "CLIPTokenizer"])
    (sdxl / "model_index.json").write_text(json.dumps(index, indent=2))

    # The real fp16-fix repo: a diffusers AutoencoderKL at its root, force_upcast off.
    pipe.vae.register_to_config(force_upcast=False)
    pipe.vae.save_pretrained(vae, safe_serialization=True)
    pipe.vae.register_to_config(force_upcast=True)

    widths = _cross_attention_widths(pipe.unet)
    (adapters / "sdxl_models").mkdir(parents=True)
    save_file(plus_adapter_tensors(widths), adapters / "sdxl_models" / "ip-adapter-plus-face_sdxl_vit-h.safetensors")
    save_file(plain_adapter_tensors(widths), adapters / "sdxl_models" / "ip-adapter_sdxl.safetensors")
    _vision_encoder(**VIT_H).save_pretrained(adapters / "models" / "image_encoder", safe_serialization=True)
    _vision_encoder(**BIG_G).save_pretrained(adapters / "sdxl_models" / "image_encoder", safe_serialization=True)

    for seed, (repo, files) in enumerate(LORA_REPOS.items()):
        loras[repo].mkdir(parents=True)
        for i, file in enumerate(files):
            tensors = kohya_lora_tensors(pipe.unet, TINY_LORA_RANK, TINY_LORA_RANK / 8, seed=10 * seed + i)
            save_file(tensors, loras[repo] / file)

    build_taesdxl().save_pretrained(taesdxl, safe_serialization=True)
    layout_adapters = [repo_snapshot(cache_dir, repo) for repo in T2I_ADAPTER_REPOS]
    for folder, seed in zip(layout_adapters, T2I_ADAPTER_REPOS.values()):
        build_t2i_adapter(seed).save_pretrained(folder, safe_serialization=True)

    for folder in (sdxl, adapters, vae, taesdxl, *loras.values(), *layout_adapters):
        (folder / ".tiny-complete").write_text(TINY_VERSION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", default="data/tiny-models", help="HF cache folder to write into")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.cache_dir, force=args.force)
    print(args.cache_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
