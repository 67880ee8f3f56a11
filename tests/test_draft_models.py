"""The draft mode's models, offline: Hyper-SD's 1-step LoRA on SDXL, TAESDXL for drafts and previews.

The tiny HF cache holds random twins under the real hub ids, file names and formats
(madebyollin/taesdxl as a diffusers AutoencoderTiny; ByteDance/Hyper-SD's
Hyper-SDXL-1step-lora.safetensors in the kohya key format of the real file), so these tests run
the loading calls the draft mode will make. The last tests count a panel's FLOPs for the
full-size models on the meta device.
"""

import numpy as np
import pytest

from tiny_models import SDXL_REPO, TAESDXL_REPO

HYPER_SD_REPO = "ByteDance/Hyper-SD"
ONE_STEP_LORA = "Hyper-SDXL-1step-lora.safetensors"
SIZE = 64  # the tiny UNet's default: 8x8 latents


@pytest.fixture(scope="module")
def taesdxl(hf_cache):
    from diffusers import AutoencoderTiny

    return AutoencoderTiny.from_pretrained(TAESDXL_REPO, cache_dir=hf_cache, local_files_only=True)


@pytest.fixture(scope="module")
def draft_pipe(hf_cache):
    """Tiny SDXL with the 1-step LoRA loaded and TCD as its scheduler, as the model card runs it."""
    from diffusers import StableDiffusionXLPipeline, TCDScheduler

    pipe = StableDiffusionXLPipeline.from_pretrained(SDXL_REPO, cache_dir=hf_cache, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(HYPER_SD_REPO, weight_name=ONE_STEP_LORA, adapter_name="draft",
                           cache_dir=hf_cache, local_files_only=True)
    pipe.scheduler = TCDScheduler.from_config(pipe.scheduler.config)
    return pipe


def draw(pipe, steps=1, **kwargs):
    import torch

    return pipe("a girl with red hair", num_inference_steps=steps, guidance_scale=0.0, eta=1.0,
                height=SIZE, width=SIZE, generator=torch.Generator().manual_seed(7), **kwargs)


def unet_batches(pipe, fn):
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        result = fn()
    finally:
        hook.remove()
    return batches, result


# --- TAESDXL -------------------------------------------------------------------------------


def test_taesdxl_loads_offline_and_decodes_sdxl_latents_at_the_panel_size(taesdxl):
    import torch

    assert taesdxl.config.latent_channels == 4
    assert taesdxl.config.scaling_factor == 1.0  # it decodes the UNet's latents as they are
    with torch.no_grad():
        image = taesdxl.decode(torch.randn(1, 4, SIZE // 8, SIZE // 8)).sample
    assert image.shape == (1, 3, SIZE, SIZE)


def test_taesdxl_in_place_of_the_vae_draws_a_panel_of_the_asked_size(draft_pipe, taesdxl):
    vae = draft_pipe.vae
    draft_pipe.vae = taesdxl
    try:
        image = draw(draft_pipe).images[0]
    finally:
        draft_pipe.vae = vae
    assert image.size == (SIZE, SIZE)


# --- Hyper-SD's 1-step LoRA ----------------------------------------------------------------


def test_the_one_step_lora_reaches_every_layer_its_file_names(draft_pipe, hf_cache):
    from peft.tuners.tuners_utils import BaseTunerLayer
    from safetensors import safe_open

    path = next((hf_cache / "models--ByteDance--Hyper-SD").glob(f"snapshots/*/{ONE_STEP_LORA}"))
    with safe_open(path, "pt") as weights:
        downs = [key for key in weights.keys() if key.endswith(".lora_down.weight")]
    adapted = [name for name, module in draft_pipe.unet.named_modules() if isinstance(module, BaseTunerLayer)]
    assert downs and len(adapted) == len(downs)


def test_one_tcd_step_at_guidance_0_is_one_unet_pass_and_draws_a_panel(draft_pipe):
    batches, result = unet_batches(draft_pipe, lambda: draw(draft_pipe))
    assert batches == [1]  # one pass, no CFG
    assert result.images[0].size == (SIZE, SIZE)


def test_the_lora_changes_the_draft(draft_pipe):
    with_lora = np.asarray(draw(draft_pipe).images[0], dtype=np.int16)
    draft_pipe.unet.disable_lora()
    try:
        without = np.asarray(draw(draft_pipe).images[0], dtype=np.int16)
    finally:
        draft_pipe.unet.enable_lora()
    assert np.abs(with_lora - without).max() > 0


def test_each_steps_latents_preview_through_taesdxl_and_the_last_preview_is_the_result(draft_pipe, taesdxl):
    import torch

    previews = []

    def preview(pipe, step, timestep, tensors):
        with torch.no_grad():
            previews.append(taesdxl.decode(tensors["latents"]).sample)
        return tensors

    latents = draw(draft_pipe, steps=2, output_type="latent", callback_on_step_end=preview).images
    assert [p.shape for p in previews] == [(1, 3, SIZE, SIZE)] * 2
    with torch.no_grad():
        final = taesdxl.decode(latents).sample
    assert torch.equal(previews[-1], final)  # a draft needs no decode after its last preview


# --- FLOPs of a panel, full size, meta device ----------------------------------------------


@pytest.fixture(scope="module")
def parts():
    from bench import sdxl_random

    return sdxl_random.count_flops(1024, 1024)


@pytest.mark.slow  # counts every full-size part on the meta device (~20 s on a loaded 2-core VM)
def test_a_draft_panel_costs_at_most_8_tflop_and_a_twentieth_of_fast(parts):
    from bench import sdxl_random

    draft = sdxl_random.panel_flops("draft", parts)
    assert draft <= 8.0e12
    assert sdxl_random.panel_flops("fast", parts) >= 20 * draft


@pytest.mark.slow
def test_a_preview_costs_at_most_a_tenth_of_a_unet_pass(parts):
    full = parts["taesdxl_decode"]  # one step's latents, as they are
    assert full <= 0.1 * parts["unet_forward"]
    assert parts["preview_small"] <= full / 3


@pytest.mark.slow
def test_the_counts_are_the_published_ones(parts):
    from bench import sdxl_random

    assert parts["unet_forward"] / 1e12 == pytest.approx(6.761, abs=5e-4)
    assert parts["unet_forward_identity"] / 1e12 == pytest.approx(6.789, abs=5e-4)
    assert parts["vae_decode"] / 1e12 == pytest.approx(10.470, abs=5e-4)
    assert parts["taesdxl_decode"] / 1e12 == pytest.approx(0.565, abs=5e-4)
    assert sdxl_random.panel_flops("fast", parts) / 1e12 == pytest.approx(174.3, abs=0.05)
    assert sdxl_random.panel_flops("lightning", parts) / 1e12 == pytest.approx(38.1, abs=0.05)
