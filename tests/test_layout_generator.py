"""A panel's layout on the tiny models: the T2I-Adapter twins loaded under their real hub ids,
run through diffusers' SDXL adapter pipeline on the loaded SDXL's components."""

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from config import PRESETS
from layouts import Layout, Pose
from local_image_generator import CharacterLock, PanelJob, StoryboardGenerator, StoryboardRequest
from tests.test_layouts import standing

FAST = PRESETS["fast"]


def pose(*xs, strength=1.0) -> Layout:
    return Layout("pose", strength, tuple(Pose(str(i), tuple(tuple(p) if p else None for p in standing(x)))
                                          for i, x in enumerate(xs)))


def sketch(strength=0.9) -> Layout:
    import io

    image = Image.new("L", (160, 96), 0)
    ImageDraw.Draw(image).line((10, 90, 80, 10, 150, 90), fill=255, width=4)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Layout("sketch", strength, sketch=buffer.getvalue())


def job(index=1, layout=None, cast=None, regions=None, seed=100, init_image=None):
    return PanelJob(index, f"two people, scene {index}", "blurry", seed + index, f"scene {index}", cast=cast,
                    layout=layout, regions=regions, init_image=init_image)


def request(*jobs, preset=FAST, references=("red",), steps=2, **kw):
    locks = tuple(CharacterLock(Image.new("RGB", (64, 64), colour)) for colour in references)
    return StoryboardRequest(tuple(jobs), 80, 48, preset, characters=locks,
                             steps=None if preset.distilled else steps, **kw)


def pixels(result, i=0):
    return result.panels[i].pixels.astype(np.float64)


def diff(a, b):
    return float(np.abs(a - b).max())


def unet_calls(generator, fn):
    calls = []

    def record(module, args, kwargs):
        cross = kwargs.get("cross_attention_kwargs") or {}
        calls.append({"batch": args[0].shape[0], "masks": cross.get("ip_adapter_masks"),
                      "adapter": kwargs.get("down_intrablock_additional_residuals") is not None})

    hook = generator.pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        return calls, fn()
    finally:
        hook.remove()


def test_a_layout_free_panel_is_drawn_as_before_beside_layout_panels(tiny_generator):
    # The same board without layouts and with them on the other panels: panel 1 bit for bit.
    alone = tiny_generator.generate(request(job(2), job(1), job(3)))
    among = tiny_generator.generate(request(job(2, pose(0.5)), job(1), job(3, sketch())))
    assert [p.index for p in among.panels] == [2, 1, 3]
    assert np.array_equal(alone.panels[1].pixels, among.panels[1].pixels)
    assert alone.panels[1].ran.to_json() == among.panels[1].ran.to_json()
    assert "layout" not in alone.panels[1].ran.to_json()  # a layout-free panel's metadata is as it was


def test_the_adapter_changes_the_panel_and_follows_its_layout(tiny_generator):
    plain = pixels(tiny_generator.generate(request(job())))
    left = pixels(tiny_generator.generate(request(job(layout=pose(0.25)))))
    right = pixels(tiny_generator.generate(request(job(layout=pose(0.75)))))
    drawn = pixels(tiny_generator.generate(request(job(layout=sketch()))))
    assert min(diff(plain, left), diff(left, right), diff(plain, drawn)) > 1e-3
    assert "TencentARC/t2i-adapter-openpose-sdxl-1.0" in tiny_generator.layouts.loaded


def test_strength_zero_is_the_plain_panel(tiny_generator):
    plain = pixels(tiny_generator.generate(request(job())))
    off = pixels(tiny_generator.generate(request(job(layout=pose(0.3, strength=0.0)))))
    assert diff(plain, off) < 1e-5


def test_the_adapter_runs_once_and_steers_every_step_of_its_share(tiny_generator):
    calls, result = unet_calls(tiny_generator, lambda: tiny_generator.generate(request(job(layout=sketch()),
                                                                                         steps=10)))
    ran = result.panels[0].ran.layout
    assert ran == {"kind": "sketch", "adapter": "TencentARC/t2i-adapter-sketch-sdxl-1.0", "strength": 0.9,
                   "factor": 0.9, "adapter_steps": 9}
    assert [c["adapter"] for c in calls] == [True] * 9 + [False]


def test_loading_an_adapter_warns_of_nothing(tiny_settings_factory, recwarn):
    import torch

    from t2i_adapter import LayoutAdapters

    LayoutAdapters(tiny_settings_factory(), "cpu", torch.float32).adapter(sketch().adapter)
    assert [str(w.message) for w in recwarn] == []


def test_one_sdxl_in_memory_the_adapter_pipeline_shares_its_components(tiny_generator):
    adapter_pipe = tiny_generator.layouts.pipeline(tiny_generator.pipe, sketch().adapter)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "image_encoder", "scheduler"):
        assert getattr(adapter_pipe, name) is getattr(tiny_generator.pipe, name)


@pytest.fixture(scope="module")
def distilled_generator(tiny_settings_factory):
    """A generator of this file's own for the distilled modes: switching the shared one to a
    LoRA and back leaves its weights a rounding (~1e-6) from a fresh one's, which other files'
    exact comparisons would see."""
    return StoryboardGenerator.load(tiny_settings_factory())


@pytest.mark.parametrize("preset", ["lightning", "draft", "ultra_fast"])
def test_every_speed_mode_follows_a_layout(distilled_generator, preset):
    result = distilled_generator.generate(request(job(layout=pose(0.3)), preset=PRESETS[preset]))
    ran = result.panels[0].ran
    assert result.panels[0].status == "done" and ran.layout["adapter_steps"] >= 1
    assert ran.lora == PRESETS[preset].family


def test_a_one_step_draft_is_still_steered(distilled_generator):
    calls, result = unet_calls(distilled_generator, lambda: distilled_generator.generate(
        request(job(layout=sketch()), preset=PRESETS["draft"])))
    assert [c["adapter"] for c in calls] == [True] and result.panels[0].ran.layout["adapter_steps"] == 1


def test_each_posed_characters_mask_follows_its_skeleton(tiny_generator):
    layout = pose(0.2, 0.7)
    regions = layout.regions(["0", "1"])
    calls, result = unet_calls(tiny_generator, lambda: tiny_generator.generate(
        request(job(layout=layout, cast=(0, 1), regions=regions), references=("red", "blue"))))
    masks = calls[0]["masks"][0]
    assert result.panels[0].status == "done" and tuple(masks.shape) == (1, 2, 48, 80)
    for k, (left, top, right, bottom) in enumerate(regions):
        mask = masks[0, k].numpy()
        columns = np.flatnonzero(mask.max(axis=0))
        assert abs(columns[0] - left * 80) <= 1 and abs(columns[-1] + 1 - right * 80) <= 1
    assert masks[0, 0, :, 60:].max() == 0 and masks[0, 1, :, :20].max() == 0  # each in its own place


def test_panels_with_different_layouts_are_batched_apart_and_mix_nothing(tiny_settings_factory):
    batched = StoryboardGenerator.load(tiny_settings_factory(batch_panels="on", first_panel_alone=False))
    single = StoryboardGenerator.load(tiny_settings_factory(batch_panels="off"))
    jobs = [job(1), job(2, sketch()), job(3), job(4, sketch()), job(5, pose(0.4)), job(6, sketch(strength=0.5))]
    calls, together = unet_calls(batched, lambda: batched.generate(request(*jobs)))
    # Calls: the two plain panels, the two sketches at 0.9, the pose, the sketch at 0.5 (x2 for CFG, 2 steps).
    assert [c["batch"] for c in calls[::2]] == [4, 4, 2, 2]
    alone = single.generate(request(*jobs))
    for a, b in zip(together.panels, alone.panels):
        assert a.index == b.index and diff(a.pixels, b.pixels) < 1e-4


def test_a_refine_keeps_its_pictures_composition_without_the_adapter(tiny_generator):
    drawn = tiny_generator.generate(request(job(layout=sketch())))
    refine = job(layout=sketch(), init_image=drawn.panels[0].image)
    result = tiny_generator.generate(request(refine, strength=0.5, steps=4))
    assert result.panels[0].status == "done" and result.panels[0].ran.layout is None
    assert result.panels[0].ran.denoising_steps == 2


def test_a_drifted_layout_panel_is_redrawn_with_its_layout(tiny_generator):
    verdicts = iter([{"status": "drift", "distance": 0.9}, {"status": "ok", "distance": 0.1}])
    settings = tiny_generator.settings
    tiny_generator.settings = dataclasses.replace(settings, identity_retries=1)
    try:
        calls, result = unet_calls(tiny_generator, lambda: tiny_generator.generate(
            request(job(layout=pose(0.5))), judge=lambda refs, image: next(verdicts)))
    finally:
        tiny_generator.settings = settings
    assert result.panels[0].attempts == 2 and all(c["adapter"] for c in calls)


def test_under_compile_a_layout_panel_runs_the_unet_itself_and_queues_no_graph(tiny_settings_factory, tmp_path):
    import torch

    from test_gpu_decisions import CountingBackend

    torch._dynamo.reset()
    generator = StoryboardGenerator.load(tiny_settings_factory(data_dir=str(tmp_path)))
    backend = CountingBackend()
    generator._compile(backend=backend)
    generator.graphs.waiting.clear()
    result = generator.generate(request(job(layout=sketch())))
    assert result.panels[0].status == "done" and result.panels[0].ran.layout is not None
    assert backend.graphs == [] and list(generator.graphs.waiting) == []


def test_the_adapter_pipeline_names_its_device_as_the_others_do(tiny_generator, monkeypatch):
    """The adapter twin is made per call from the loaded components: it answers the generator's
    device as SDXL's own pipeline does, rather than searching every module for offload hooks."""
    from diffusers import DiffusionPipeline

    searches = []
    search = DiffusionPipeline._execution_device.fget
    monkeypatch.setattr(DiffusionPipeline, "_execution_device",
                        property(lambda pipe: searches.append(type(pipe).__name__) or search(pipe)))
    drawn = tiny_generator.generate(request(job(layout=sketch())))
    assert drawn.panels[0].ran.layout is not None and searches == []


def test_a_layout_and_a_refine_leave_a_half_precision_model_in_its_precision(tiny_settings_factory):
    # diffusers' from_pipe casts every shared component to float32 unless told a dtype: the
    # full-size bf16 SDXL grew from 9 to over 18 GB at its first refine and ran out of memory.
    import torch

    generator = StoryboardGenerator.load(tiny_settings_factory(precision="bf16"))
    components = {name: module for name, module in generator.pipe.components.items()
                  if isinstance(module, torch.nn.Module)}

    def dtypes():
        return {name: {p.dtype for p in module.parameters()} for name, module in components.items()}

    assert {d for found in dtypes().values() for d in found} == {torch.bfloat16}
    drawn = generator.generate(request(job(1, layout=sketch()), references=(), identity_lock=False))
    assert drawn.panels[0].status == "done" and drawn.panels[0].ran.layout is not None
    assert all(found == {torch.bfloat16} for found in dtypes().values()), dtypes()
    adapter = next(iter(generator.layouts._adapters.values()))
    assert {p.dtype for p in adapter.parameters()} == {torch.bfloat16}
    refined = generator.generate(request(job(1, init_image=drawn.panels[0].image), references=(),
                                         identity_lock=False, strength=0.5))
    assert refined.panels[0].status == "done" and refined.panels[0].ran.strength == 0.5
    assert all(found == {torch.bfloat16} for found in dtypes().values()), dtypes()
