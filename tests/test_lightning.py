"""The lightning mode: SDXL + a distilled LoRA, on tiny random models through the real loading calls.

The tiny HF cache holds random LoRAs under the real hub ids and file names
(ByteDance/SDXL-Lightning/sdxl_lightning_4step_lora.safetensors, in the kohya key format of
the real file), so diffusers' own load_lora_weights, key converters and fuse_lora run.
"""

import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from config import PRESETS, SpeedPreset, load_settings
from helpers import unet_batches
from local_image_generator import (
    GenerationCancelled,
    ModelNotAvailable,
    PanelJob,
    StoryboardGenerator,
    StoryboardRequest,
)
from serializers import preset_json

LIGHTNING_REPO = "models--ByteDance--SDXL-Lightning"


def panels(count=3, seed=100):
    return tuple(PanelJob(i, f"a girl with red hair, scene {i}", "blurry", seed + i - 1, f"scene {i}")
                 for i in range(1, count + 1))


def request(preset, count=3, lock=True, reference="red", seed=100, **kw):
    ref = Image.new("RGB", (64, 64), reference) if lock and reference else None
    return StoryboardRequest(panels(count, seed), kw.pop("width", 48), kw.pop("height", 48), preset,
                             identity_lock=lock, reference=ref, **kw)


def pixels(result):
    return np.stack([p.pixels.astype(np.float64) for p in result.panels])


def max_diff(a, b):
    return float(np.abs(pixels(a) - pixels(b)).max())


@pytest.fixture(scope="module")
def make(tiny_settings_factory):
    def build(**overrides):
        return StoryboardGenerator.load(tiny_settings_factory(**overrides))

    return build


@pytest.fixture(scope="module")
def lightning(make):
    """A generator of its own: the shared one must stay untouched by LoRAs."""
    return make()


@pytest.fixture(scope="module")
def presets(lightning):
    return lightning.settings.preset_for("lightning"), lightning.settings.preset_for("fast")


def lora_layers(generator):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [name for name, module in generator.pipe.unet.named_modules() if isinstance(module, BaseTunerLayer)]


# --- the mode itself -----------------------------------------------------------------------


def test_lightning_is_four_steps_without_cfg_and_says_so():
    preset = load_settings({}).preset_for("lightning")
    assert (preset.steps, preset.guidance_scale, preset.distilled, preset.unet_passes) == (4, 0.0, True, 4)
    assert preset_json(preset)["description"] == "4 steps, no CFG (4 UNet passes a panel)"
    assert preset_json(PRESETS["fast"])["description"] == "12 steps with CFG (24 UNet passes a panel)"


def test_the_workers_positional_preset_is_recognised(lightning):
    # worker.py rebuilds the preset from a board's stored options, by position.
    stored = SpeedPreset("lightning", "lightning", 4, 0.0, 0.6)
    batches, result = unet_batches(lightning, lambda: lightning.generate(request(stored, count=1)))
    assert batches == [1, 1, 1, 1] and result.panels[0].status == "done"


def test_the_real_file_loads_through_diffusers_and_fuses(lightning, presets, hf_cache):
    import torch
    from safetensors.torch import load_file

    lightning.generate(request(presets[0], count=1))
    path = next((hf_cache / LIGHTNING_REPO).glob("snapshots/*/sdxl_lightning_4step_lora.safetensors"))
    tensors = load_file(path)
    assert all(key.startswith("lora_unet_") for key in tensors)  # the kohya format
    downs = [key for key in tensors if key.endswith(".lora_down.weight")]
    assert len(lora_layers(lightning)) == len(downs)  # every layer of the file found its module
    # One fused layer is exactly W + alpha/rank * up @ down: the keys reached the right weights.
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    layer = lightning.pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k
    up, down, alpha = tensors[f"{key}.lora_up.weight"], tensors[f"{key}.lora_down.weight"], tensors[f"{key}.alpha"]
    fused = layer.get_base_layer().weight.detach().clone()
    lightning.generate(request(presets[1], count=1, steps=1))  # FAST: unfused again
    original = layer.get_base_layer().weight
    assert torch.allclose(fused, original + alpha / down.shape[0] * up @ down, atol=1e-6)


def test_four_unet_passes_a_panel_and_the_scheduler_is_restored(lightning, presets):
    lightning.generate(request(presets[1], count=1, steps=1))
    scheduler = lightning.pipe.scheduler
    batches, result = unet_batches(lightning, lambda: lightning.generate(request(presets[0], count=2)))
    assert batches == [1] * 8 and [p.status for p in result.panels] == ["done", "done"]
    assert type(lightning.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert lightning.pipe.scheduler.config.timestep_spacing == "trailing"
    lightning.generate(request(presets[1], count=1, steps=1))
    assert lightning.pipe.scheduler is scheduler and scheduler.config.timestep_spacing == "leading"


def test_same_inputs_and_seed_give_the_same_images(lightning, presets):
    assert max_diff(lightning.generate(request(presets[0])), lightning.generate(request(presets[0]))) == 0


def test_the_lora_changes_the_images(lightning, presets):
    fast_4_steps = lightning.generate(request(presets[1], steps=4))
    assert max_diff(lightning.generate(request(presets[0])), fast_4_steps) > 0.01


def test_no_negative_prompts_are_encoded_without_cfg(lightning, presets):
    lightning.generate(request(presets[0], count=1))
    text, image = lightning.text_encoder_calls, lightning.image_encoder_calls
    lightning.generate(request(presets[0], count=4))
    assert (lightning.text_encoder_calls - text, lightning.image_encoder_calls - image) == (1, 1)


def test_the_identity_lock_steers_the_lightning_panels(lightning, presets):
    red = lightning.generate(request(presets[0], count=1, reference="red"))
    blue = lightning.generate(request(presets[0], count=1, reference="blue"))
    assert max_diff(red, blue) > 0
    assert any(getattr(p, "to_k_ip", None) for p in lightning.pipe.unet.attn_processors.values())


def test_batched_equals_one_by_one(make, presets):
    batched, single = make(batch_panels="on"), make(batch_panels="off")
    assert max_diff(batched.generate(request(presets[0], count=4)), single.generate(request(presets[0], count=4))) < 1e-4


# --- switching on one loaded pipeline ------------------------------------------------------


@pytest.mark.parametrize("mode", ["fuse", "adapter"])
def test_switching_back_and_forth_equals_a_fresh_pipeline(make, presets, mode, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    lightning_preset, fast = presets
    switching = make(lightning_lora_mode=mode)
    fresh_lightning = make(lightning_lora_mode=mode).generate(request(lightning_preset))
    fresh_fast = make(lightning_lora_mode=mode).generate(request(fast, steps=3))
    loads = []
    monkeypatch.setattr(StableDiffusionXLPipeline, "from_pretrained", lambda *a, **k: loads.append(a))
    unet = switching.pipe.unet
    for _ in range(2):
        assert max_diff(switching.generate(request(lightning_preset)), fresh_lightning) < 1e-5
        after = switching.generate(request(fast, steps=3))
        if mode == "adapter":
            assert max_diff(after, fresh_fast) == 0  # the weights were never touched
        else:
            assert max_diff(after, fresh_fast) < 1e-5  # fused and unfused again: rounding only
    assert loads == [] and switching.pipe.unet is unet  # SDXL was never reloaded


def test_the_identity_adapter_survives_the_lora_whichever_loads_first(make, presets):
    lightning_preset, _ = presets
    ip_first = make()
    lora_first = make(use_identity_lock=False)
    lora_first.generate(request(lightning_preset, lock=False))  # the LoRA, before any IP-Adapter
    assert lora_first._ip_processors is None
    assert max_diff(lora_first.generate(request(lightning_preset)), ip_first.generate(request(lightning_preset))) < 1e-5


# --- cancel and identity scoring in this mode ----------------------------------------------


def test_cancel_stops_mid_storyboard_and_the_next_board_is_right(lightning, presets):
    cancel, finished = threading.Event(), []

    def progress(job, step, steps):
        if job.index == 2 and step == 1:
            cancel.set()

    expected = lightning.generate(request(presets[0], count=1))
    with pytest.raises(GenerationCancelled):
        lightning.generate(request(presets[0], count=4), on_progress=progress, on_panel=finished.append,
                           cancel=cancel)
    assert [p.index for p in finished] == [1]
    assert max_diff(lightning.generate(request(presets[0], count=1)), expected) == 0


def test_progress_counts_the_lightning_steps(lightning, presets):
    seen = []
    lightning.generate(request(presets[0], count=1), on_progress=lambda job, *a: seen.append((job.index, *a)))
    assert seen == [(1, 1, 4), (1, 2, 4), (1, 3, 4), (1, 4, 4)]


def test_drifted_panels_are_redrawn_in_lightning_mode(lightning, presets):
    distances = iter([0.9, 0.7, 0.5])
    judge = lambda ref, image: {"status": "drift" if (d := next(distances)) > 0.6 else "match", "distance": d}
    batches, result = unet_batches(lightning, lambda: lightning.generate(request(presets[0], count=1), judge=judge))
    panel = result.panels[0]
    assert panel.attempts == 3 and panel.identity["distance"] == 0.5 and panel.seed == 100 + 2 * 8
    assert batches == [1] * 12  # three attempts of four single passes


def test_clip_similarity_works_in_lightning_mode(lightning, presets):
    result = lightning.generate(request(presets[0], count=1))
    score = lightning.clip_similarity(result.reference, result.panels[0].image)
    assert -1.0 <= score <= 1.0


# --- settings: steps, families, sources ----------------------------------------------------


def test_the_lora_loads_with_sdxl_only_when_lightning_is_the_default(make):
    assert make(preset="lightning").describe()["lora"] == "sdxl_lightning_4step_lora.safetensors"
    assert make().describe()["lora"] is None


def test_two_steps_load_the_two_step_file(make):
    generator = make(lightning_steps=2)
    preset = generator.settings.preset_for("lightning")
    batches, _ = unet_batches(generator, lambda: generator.generate(request(preset, count=1)))
    assert batches == [1, 1] and generator.describe()["lora"] == "sdxl_lightning_2step_lora.safetensors"


@pytest.mark.parametrize("family,scheduler,spacing", [
    ("hyper-sd", "DDIMScheduler", "trailing"),  # kohya keys, as the real files
    ("lcm", "LCMScheduler", "leading"),
])
def test_other_distilled_families_run_the_same_code(make, family, scheduler, spacing):
    generator = make(lightning_family=family)
    preset = generator.settings.preset_for("lightning")
    batches, result = unet_batches(generator, lambda: generator.generate(request(preset, count=1)))
    assert batches == [1, 1, 1, 1] and result.panels[0].status == "done"
    assert type(generator.pipe.scheduler).__name__ == scheduler
    assert generator.pipe.scheduler.config.timestep_spacing == spacing
    assert lora_layers(generator)


def test_a_local_lora_folder_is_used(make, hf_cache, tmp_path):
    source = next((hf_cache / LIGHTNING_REPO).glob("snapshots/*/sdxl_lightning_8step_lora.safetensors"))
    shutil.copy(source, tmp_path / "mine.safetensors")
    generator = make(lightning_lora_repo=str(tmp_path), lightning_lora_weight="mine.safetensors")
    preset = generator.settings.preset_for("lightning")
    assert generator.generate(request(preset, count=1)).panels[0].status == "done"


def test_a_missing_lora_says_what_to_do(tiny_settings_factory, hf_cache, tmp_path):
    # A cache with SDXL and the IP-Adapter but not the LoRA: SDXL loads, the lightning board fails.
    for repo in ("models--stabilityai--stable-diffusion-xl-base-1.0", "models--h94--IP-Adapter"):
        (tmp_path / repo).symlink_to(hf_cache / repo)
    generator = StoryboardGenerator.load(tiny_settings_factory(hf_cache_dir=str(tmp_path)))
    with pytest.raises(ModelNotAvailable) as caught:
        generator.generate(request(generator.settings.preset_for("lightning"), count=1))
    message = str(caught.value)
    assert "ByteDance/SDXL-Lightning" in message and "sdxl_lightning_4step_lora.safetensors" in message
    assert "network" in message and "STORYBOARD_LIGHTNING_LORA_REPO" in message and "local folder" in message
    fast = generator.settings.preset_for("fast")
    assert generator.generate(request(fast, count=1, steps=1)).panels[0].status == "done"  # FAST still works


def test_a_mistyped_lora_folder_is_named(make, tmp_path):
    generator = make(lightning_lora_repo=str(tmp_path / "nope"))
    with pytest.raises(ModelNotAvailable, match="no such folder"):
        generator.generate(request(generator.settings.preset_for("lightning"), count=1))


def test_without_peft_the_message_says_so(make, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    generator = make()
    with pytest.raises(ModelNotAvailable, match="pip install peft"):
        generator.generate(request(generator.settings.preset_for("lightning"), count=1))


def test_a_cast_of_two_draws_in_the_lightning_mode_through_the_masks_path(lightning, presets):
    # Without CFG the image embeddings are only the positive half; the region masks still
    # gate each character's reference (one UNet pass a step, batch 1).
    from test_generator import cast_request, unet_calls

    calls, hook = unet_calls(lightning)
    try:
        result = lightning.generate(cast_request([(0, 1), (1,)], preset=presets[0]))
    finally:
        hook.remove()
    assert [p.status for p in result.panels] == ["done", "done"]
    assert [batch for batch, *_ in calls] == [1] * (2 * 2)  # two panels, two steps, no CFG pair
    assert calls[0][1] is not None and tuple(calls[0][1][0].shape) == (1, 2, 48, 80)
