"""The draft mode: one pass of Hyper-SD's 1-step LoRA on the same loaded SDXL, decoded by TAESDXL.

On the tiny twins, through the real loading calls (tests/test_draft_models.py shows them alone);
the last tests check the cost /api/presets serves against bench/sdxl_random's counter.
"""

import functools
import io

import numpy as np
import pytest
from PIL import Image

from config import DRAFT_FAMILY, PANEL_PART_FLOPS, PRESETS, SettingsError, SpeedPreset, load_settings
from errors import InputError
from helpers import unet_batches
from local_image_generator import PanelJob, StoryboardGenerator, StoryboardRequest


def request(preset, count=2, lock=True, steps=None):
    panels = tuple(PanelJob(i, f"a girl with red hair, scene {i}", "blurry", 40 + i, f"scene {i}")
                   for i in range(1, count + 1))
    reference = Image.new("RGB", (64, 64), "red") if lock else None
    return StoryboardRequest(panels, 48, 48, preset, identity_lock=lock, reference=reference, steps=steps)


def pixels(result):
    return np.stack([p.pixels.astype(np.float64) for p in result.panels])


@pytest.fixture(scope="module")
def make(tiny_settings_factory):
    return lambda **overrides: StoryboardGenerator.load(tiny_settings_factory(**overrides))


@pytest.fixture(scope="module")
def drafter(make):
    """A generator of its own: the shared one must stay untouched by LoRAs."""
    return make()


def preset(generator, name):
    return generator.settings.preset_for(name)


# --- the preset ----------------------------------------------------------------------------


def test_draft_is_one_step_without_cfg_on_the_one_step_lora_decoded_by_taesdxl():
    draft = load_settings({}).preset_for("draft")
    assert (draft.steps, draft.uses_cfg, draft.unet_passes) == (1, False, 1)
    assert (draft.family, draft.decoder) == (DRAFT_FAMILY, "taesdxl")
    assert draft.description == "1 step, no CFG, TAESDXL decode (1 UNet pass a panel)"


def test_the_lightning_settings_leave_the_draft_alone():
    settings = load_settings({}, {"lightning_family": "hyper-sd", "lightning_steps": 8})
    assert settings.preset_for("draft") == PRESETS["draft"]
    assert settings.preset_for("lightning").family == "hyper-sd"


def test_the_draft_family_is_not_a_lightning_family():
    with pytest.raises(SettingsError, match="lightning_family"):
        load_settings({}, {"lightning_family": DRAFT_FAMILY})


def test_a_preset_stored_before_drafts_decodes_with_the_vae_and_a_bad_decoder_is_named():
    stored = {k: v for k, v in PRESETS["fast"].to_dict().items() if k != "decoder"}
    assert SpeedPreset.from_dict(stored) == PRESETS["fast"]
    assert SpeedPreset.from_dict(PRESETS["draft"].to_dict()) == PRESETS["draft"]
    with pytest.raises(InputError) as caught:
        SpeedPreset.from_dict({**PRESETS["draft"].to_dict(), "decoder": "vae-large"})
    assert caught.value.field == "decoder"


# --- drawing -------------------------------------------------------------------------------


def test_a_draft_panel_is_one_unet_pass_and_says_what_drew_it(drafter):
    batches, result = unet_batches(drafter, lambda: drafter.generate(request(preset(drafter, "draft"))))
    assert batches == [1, 1]  # two panels, one pass each, no CFG pair
    assert [p.status for p in result.panels] == ["done", "done"]
    ran = result.panels[0].ran
    assert (ran.scheduler, ran.steps, ran.guidance_scale, ran.lora, ran.decoder) == (
        "TCDScheduler", 1, 0.0, DRAFT_FAMILY, "taesdxl")
    assert result.panels[0].image.size == (48, 48)


def test_the_draft_decodes_with_taesdxl_beside_the_vae_which_other_modes_keep(drafter):
    from diffusers import AutoencoderKL, AutoencoderTiny

    drafter.generate(request(preset(drafter, "draft"), count=1))
    assert isinstance(drafter.previews.model(), AutoencoderTiny) and isinstance(drafter.pipe.vae, AutoencoderKL)
    ran = drafter.generate(request(preset(drafter, "fast"), count=1, steps=1)).panels[0].ran
    assert (ran.scheduler, ran.lora, ran.decoder) == ("EulerDiscreteScheduler", None, "vae")


def test_a_drafts_png_says_its_scheduler_lora_and_decoder(drafter):
    from exporting import encode_png, read_png_parameters

    panel = drafter.generate(request(preset(drafter, "draft"), count=1)).panels[0]
    png = encode_png(panel.image, {"seed": panel.seed, **panel.ran.to_json()})
    assert {k: read_png_parameters(png)[k] for k in ("scheduler", "lora", "decoder")} == {
        "scheduler": "TCDScheduler", "lora": DRAFT_FAMILY, "decoder": "taesdxl"}
    text = Image.open(io.BytesIO(png)).text["parameters"]
    assert "Scheduler: TCDScheduler" in text and f"Distilled LoRA: {DRAFT_FAMILY}" in text and "VAE: TAESDXL" in text


def test_tcd_runs_with_eta_1_as_the_card_says(drafter):
    drafter.generate(request(preset(drafter, "draft"), count=1))  # its LoRA and scheduler loaded
    scheduler, seen = drafter._schedulers[DRAFT_FAMILY], []
    step = scheduler.step

    @functools.wraps(step)  # the pipeline passes eta only to a step whose signature names it
    def spying(*args, **kwargs):
        seen.append(kwargs.get("eta"))
        return step(*args, **kwargs)

    scheduler.step = spying
    try:
        drafter.generate(request(preset(drafter, "draft"), count=1))
    finally:
        del scheduler.step
    assert seen == [1.0]


def lora_state(generator):
    """Which adapters each LoRA layer of the UNet runs, and which it has fused."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in generator._unet_module().modules() if isinstance(m, BaseTunerLayer)]
    return ({tuple(layer.active_adapters) for layer in layers if not layer.disable_adapters},
            {tuple(layer.merged_adapters) for layer in layers})


@pytest.mark.parametrize("mode", ["fuse", "adapter"])
def test_each_mode_runs_its_own_lora_alone_on_the_same_sdxl(make, mode):
    generator = make(lightning_lora_mode=mode)
    draft, lightning = preset(generator, "draft"), preset(generator, "lightning")
    fused = (lambda family: {(family,)}) if mode == "fuse" else (lambda family: {()})
    alone = generator.generate(request(lightning))  # before the draft's LoRA is loaded
    first_draft = generator.generate(request(draft))
    assert lora_state(generator) == ({(DRAFT_FAMILY,)}, fused(DRAFT_FAMILY))
    again = generator.generate(request(lightning))
    assert lora_state(generator) == ({("lightning",)}, fused("lightning"))
    again_draft = generator.generate(request(draft))
    assert generator.describe()["lora"] == ("sdxl_lightning_4step_lora.safetensors, "
                                            "Hyper-SDXL-1step-lora.safetensors")
    tolerance = 0 if mode == "adapter" else 1e-4  # fusing and unfusing rounds the weights a little
    assert np.abs(pixels(alone) - pixels(again)).max() <= tolerance
    assert np.abs(pixels(first_draft) - pixels(again_draft)).max() <= tolerance
    generator.generate(request(preset(generator, "fast"), steps=1))
    assert lora_state(generator) == (set(), {()}) and type(generator.pipe.scheduler).__name__ == "EulerDiscreteScheduler"


def test_the_draft_lora_changes_the_draft(drafter, monkeypatch):
    draft = preset(drafter, "draft")
    with_lora = pixels(drafter.generate(request(draft, count=1)))
    monkeypatch.setattr(drafter, "_use_preset", lambda preset: None)  # the draft's scheduler without its LoRA
    drafter._unet_module().disable_lora()
    try:
        without = pixels(drafter.generate(request(draft, count=1)))
    finally:
        drafter._unet_module().enable_lora()
    assert np.abs(with_lora - without).max() > 0


def test_draft_as_the_default_loads_its_lora_with_sdxl(make):
    assert make(preset="draft").describe()["lora"] == "Hyper-SDXL-1step-lora.safetensors"


# --- cost ----------------------------------------------------------------------------------


def test_presets_serve_each_modes_tflops_per_panel(make_app):
    app = make_app()
    served = {p["name"]: p for p in app.test_client().get("/api/presets").get_json()["presets"]}
    assert served["draft"]["tflops_per_panel"] == 7.8
    assert served["fast"]["tflops_per_panel"] == 174.3
    assert served["lightning"]["tflops_per_panel"] == 38.1
    assert served["fast"]["tflops_per_panel"] >= 20 * served["draft"]["tflops_per_panel"]


@pytest.fixture(scope="module")
def counted():
    from bench import sdxl_random

    return sdxl_random.count_flops(1024, 1024)


@pytest.mark.slow  # counts every full-size part on the meta device (~20 s on a loaded 2-core VM)
def test_the_stored_part_counts_are_the_counters(counted):
    assert PANEL_PART_FLOPS == {name: counted[name] for name in PANEL_PART_FLOPS}


@pytest.mark.slow
def test_the_served_figures_are_the_counters_sums(counted, make_app):
    from bench import sdxl_random

    app = make_app()
    served = app.test_client().get("/api/presets").get_json()["presets"]
    assert {p["name"] for p in served} == set(PRESETS)
    for p in served:
        assert p["tflops_per_panel"] == round(
            SpeedPreset.from_dict(p).panel_flops(counted) / 1e12, 1), p["name"]
    assert sdxl_random.panel_flops("draft", counted) <= 8.0e12
