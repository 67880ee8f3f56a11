"""Refine: SDXL img2img from a take's picture on the generator's own loaded components."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from config import PRESETS
from errors import InputError
from local_image_generator import StoryboardRequest

from test_generator import panels


def refine_request(source, strength, steps=4, preset="quality"):
    jobs = tuple(dataclasses.replace(job, init_image=source) for job in panels(1))
    return StoryboardRequest(jobs, 48, 48, PRESETS[preset], identity_lock=True,
                             reference=Image.new("RGB", (64, 64), "red"), steps=steps, strength=strength)


@pytest.fixture(scope="module")
def source(tiny_generator):
    """A panel the tiny model drew: what a refine starts from."""
    return tiny_generator.generate(StoryboardRequest(panels(1), 48, 48, PRESETS["quality"], identity_lock=True,
                                                     reference=Image.new("RGB", (64, 64), "red"),
                                                     steps=4)).panels[0].image


def unet_batches(generator, call):
    batches = []
    hook = generator.pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: batches.append(args[0].shape[0]),
                                                         with_kwargs=True)
    try:
        return call(), batches
    finally:
        hook.remove()


def test_a_refine_runs_strength_times_steps_and_says_so(tiny_generator, source):
    steps_seen = []
    result, batches = unet_batches(tiny_generator, lambda: tiny_generator.generate(
        refine_request(source, 0.5, steps=4), on_progress=lambda job, step, of: steps_seen.append((step, of))))
    panel = result.panels[0]
    assert panel.status == "done" and len(batches) == 2  # 0.5 x 4 steps: two UNet calls (guided: batch 2)
    assert steps_seen == [(1, 2), (2, 2)]
    assert (panel.ran.strength, panel.ran.denoising_steps, panel.ran.steps) == (0.5, 2, 4)
    assert panel.ran.to_json()["denoising_steps"] == 2


def test_a_refine_starts_from_the_picture(tiny_generator, source):
    """Two pictures refined alike (same prompt, seed and noise) stay as far apart as the pictures
    made them at a small strength, and nearly meet at full strength, where the noise wins. (The
    tiny model's random VAE and UNet keep too little of a picture to compare it with its refine.)"""
    other = Image.fromarray(255 - np.asarray(source))

    def apart(strength):
        a, b = (np.asarray(tiny_generator.generate(refine_request(picture, strength)).panels[0].image, float)
                for picture in (source, other))
        return float(np.abs(a - b).mean())

    assert apart(0.25) > 4 * apart(1.0)


def test_a_refine_uses_no_second_model(tiny_generator, source):
    before = {name: id(part) for name, part in tiny_generator.pipe.components.items()}
    tiny_generator.generate(refine_request(source, 0.5))
    assert {name: id(part) for name, part in tiny_generator.pipe.components.items()} == before


def test_a_panel_drawn_afresh_says_nothing_of_strength(tiny_generator):
    ran = tiny_generator.generate(StoryboardRequest(panels(1), 48, 48, PRESETS["fast"], identity_lock=False,
                                                    steps=2)).panels[0].ran
    assert "strength" not in ran.to_json() and "denoising_steps" not in ran.to_json()


@pytest.mark.parametrize("strength", [0.0, 0.1, 1.5])
def test_a_strength_that_runs_no_step_is_refused(tiny_generator, source, strength):
    with pytest.raises(InputError) as caught:
        tiny_generator.generate(refine_request(source, strength, steps=4))
    assert caught.value.field == "strength"


def test_a_refine_without_a_picture_is_refused(tiny_generator):
    with pytest.raises(InputError, match="picture"):
        tiny_generator.generate(dataclasses.replace(refine_request(None, 0.5), panels=panels(1)))


def test_the_pipelines_name_their_device_instead_of_searching_for_it(tiny_generator, source, monkeypatch):
    """diffusers' ``_execution_device`` searches every module for offload hooks each time a call
    asks where to run (a fixed cost per call: a third of a tiny draft board). The studio's
    pipelines, drawing and refining, are placed whole on one device and say so."""
    import torch
    from diffusers import DiffusionPipeline

    searches = []
    search = DiffusionPipeline._execution_device.fget
    monkeypatch.setattr(DiffusionPipeline, "_execution_device",
                        property(lambda pipe: searches.append(type(pipe).__name__) or search(pipe)))
    drawn = tiny_generator.generate(StoryboardRequest(panels(1), 48, 48, PRESETS["fast"], identity_lock=True,
                                                      reference=Image.new("RGB", (64, 64), "red"), steps=2))
    refined = tiny_generator.generate(refine_request(source, 0.5))
    assert drawn.panels[0].image is not None and refined.panels[0].image is not None
    assert searches == []
    assert tiny_generator.pipe._execution_device == torch.device(tiny_generator.device)
