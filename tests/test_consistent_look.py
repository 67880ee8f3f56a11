"""The consistent look (consistent_look.py): its processor on its own, then on the tiny models
through the generator: off draws what it drew before, on a panel follows its characters'
references and no one else's, the same board whatever the batching, one graph compiled."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from config import PRESETS
from consistent_look import (Look, LookProcessor, Sharing, bank_bytes, extra_flops, region_mask, strips,
                             token_sample, up_self_attention_layers)
from drawing import JobSpec
from local_image_generator import StoryboardGenerator

from test_generator import cast_request, request

# --- The processor on one layer --------------------------------------------------------------


def layer_and_look(ghosts: int, rows: int = 2, columns: int = 4, rate: float = 0.5, regions=None):
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4)
    look = Look()
    tokens = rows * columns
    look.ghosts = ghosts
    look.samples = {tokens: token_sample(tokens, rate, 500.0)}
    look.regions = {tokens: region_mask(rows, columns, regions or strips(ghosts), len(look.samples[tokens]), "cpu")}
    return attn, look, tokens


def test_without_reference_rows_the_processor_is_the_one_it_wraps():
    attn, look, tokens = layer_and_look(ghosts=0)
    states = torch.randn(3, tokens, 8)
    assert torch.equal(LookProcessor(look, AttnProcessor2_0())(attn, states), AttnProcessor2_0()(attn, states))


def test_a_panel_row_follows_its_reference_row_and_the_reference_only_itself():
    attn, look, tokens = layer_and_look(ghosts=1)
    processor = LookProcessor(look, AttnProcessor2_0())
    panels, reference = torch.randn(2, tokens, 8), torch.randn(1, tokens, 8)
    out = processor(attn, torch.cat([panels, reference]))
    changed = processor(attn, torch.cat([panels, reference + 1]))
    assert not torch.allclose(out[:2], changed[:2])  # the panels read the reference
    assert torch.allclose(out[2:], AttnProcessor2_0()(attn, reference))  # which reads no one
    alone = processor(attn, torch.cat([panels[:1], reference]))
    assert torch.allclose(alone[0], out[0], atol=1e-6)  # a panel never reads another panel


def test_with_two_characters_each_strip_reads_only_its_characters_reference():
    attn, look, tokens = layer_and_look(ghosts=2, rows=2, columns=4)
    processor = LookProcessor(look, AttnProcessor2_0())
    panel, mara, ivan = torch.randn(1, tokens, 8), torch.randn(1, tokens, 8), torch.randn(1, tokens, 8)
    out = processor(attn, torch.cat([panel, mara, ivan]))[0].view(2, 4, 8)
    new_ivan = processor(attn, torch.cat([panel, mara, ivan * 3]))[0].view(2, 4, 8)
    new_mara = processor(attn, torch.cat([panel, mara * 3, ivan]))[0].view(2, 4, 8)
    assert torch.equal(out[:, :2], new_ivan[:, :2]) and not torch.allclose(out[:, 2:], new_ivan[:, 2:])
    assert torch.equal(out[:, 2:], new_mara[:, 2:]) and not torch.allclose(out[:, :2], new_mara[:, :2])


def test_with_a_posed_panels_boxes_a_token_reads_the_references_of_the_boxes_it_is_in():
    # Mara's box: the top-left quarter; Ivan's: the whole right half; the bottom-left is no one's.
    boxes = ((0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 1.0))
    attn, look, tokens = layer_and_look(ghosts=2, rows=2, columns=4, regions=boxes)
    processor = LookProcessor(look, AttnProcessor2_0())
    panel, mara, ivan = torch.randn(1, tokens, 8), torch.randn(1, tokens, 8), torch.randn(1, tokens, 8)
    out = processor(attn, torch.cat([panel, mara, ivan]))[0].view(2, 4, 8)
    new_mara = processor(attn, torch.cat([panel, mara * 3, ivan]))[0].view(2, 4, 8)
    new_ivan = processor(attn, torch.cat([panel, mara, ivan * 3]))[0].view(2, 4, 8)
    assert not torch.allclose(out[0, :2], new_mara[0, :2]) and torch.equal(out[1], new_mara[1])
    assert torch.equal(out[:, :2], new_ivan[:, :2]) and not torch.allclose(out[:, 2:], new_ivan[:, 2:])
    alone = AttnProcessor2_0()(attn, panel)[0].view(2, 4, 8)
    assert torch.allclose(out[1, :2], alone[1, :2], atol=1e-6)  # in no one's box: its own tokens only


def test_the_token_sample_is_the_steps_own():
    assert torch.equal(token_sample(1024, 0.5, 999.0), token_sample(1024, 0.5, 999.0))
    assert not torch.equal(token_sample(1024, 0.5, 999.0), token_sample(1024, 0.5, 749.0))
    assert len(token_sample(1024, 0.25, 1.0)) == 256 and len(token_sample(4096, 0.5, 1.0)) == 2048


# --- Cost, counted ---------------------------------------------------------------------------


def sdxl_unet_config():
    return {"up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "block_out_channels": (320, 640, 1280), "transformer_layers_per_block": (1, 2, 10),
            "layers_per_block": 2}


def test_sdxl_has_30_shared_layers_at_32x32_and_6_at_64x64():
    layers = up_self_attention_layers(sdxl_unet_config())
    assert layers.count((2, 1280)) == 30 and layers.count((1, 640)) == 6 and len(layers) == 36


def test_the_counted_cost_is_what_the_processor_does(tiny_generator):
    # FLOPs of the UNet with the look on, minus the same UNet plainly drawing the same rows,
    # are exactly what extra_flops counts.
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    unet = tiny_generator._unet_module()
    tiny_generator._set_identity_mode(False)
    config, rate, rows = unet.config, 0.5, 3
    latents = torch.randn(rows + 1, 4, 8, 12)
    kwargs = {"encoder_hidden_states": torch.randn(rows + 1, 77, config.cross_attention_dim),
              "added_cond_kwargs": {"text_embeds": torch.randn(rows + 1, tiny_generator.pipe.text_encoder_2.config.projection_dim),
                                    "time_ids": torch.randn(rows + 1, 6)}}

    def flops(ghosts: int) -> int:
        look = tiny_generator._look
        look.ghosts = ghosts
        look.samples = {n * m: token_sample(n * m, rate, 10.0) for n, m in ((8, 12), (4, 6), (2, 3), (1, 2))}
        look.regions = dict.fromkeys(look.samples)
        counter = FlopCounterMode(display=False)
        # The math kernel, whose matrix products the counter sees (not CPU's fused one).
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
            unet(latents, torch.tensor(10.0), **kwargs)
        look.ghosts = 0
        return counter.get_total_flops()

    assert flops(1) - flops(0) == extra_flops(config, 64, 96, rate, panel_rows=rows)["total"]


def test_a_reference_kept_for_a_step_is_too_big_to_keep_with_a_board():
    step = bank_bytes(sdxl_unet_config(), 1024, 1024, 0.5)
    assert 50e6 < step < 60e6  # ~56 MB a step and a reference, fp16: 12 steps with CFG over a GB


# --- On the tiny models ----------------------------------------------------------------------

NO_FACE = dataclasses.replace(PRESETS["fast"], ip_adapter_scale=0.0)  # the lock holds no face: what remains is the look


def pixels(result):
    return [panel.pixels for panel in result.panels]


def looked(req, on=True):
    return dataclasses.replace(req, consistent_look=on)


def unwrapped(generator: StoryboardGenerator) -> StoryboardGenerator:
    """The generator with the processors it had before the look wrapped them."""
    def inner(processors):
        return {name: p.inner if isinstance(p, LookProcessor) else p for name, p in processors.items()}

    generator._plain_processors = inner(generator._plain_processors)
    generator._ensure_adapter()
    generator._ip_processors = inner(generator._ip_processors)
    generator._identity_mode = None
    return generator


@pytest.mark.parametrize("req", [lambda: request(count=2), lambda: cast_request([(0, 1), (1,)])])
def test_off_draws_what_it_drew_before(tiny_settings_factory, req):
    before = unwrapped(StoryboardGenerator.load(tiny_settings_factory()))
    ours = StoryboardGenerator.load(tiny_settings_factory())
    result = ours.generate(looked(req(), on=False))
    assert all(np.array_equal(a, b) for a, b in zip(pixels(result), pixels(before.generate(req()))))
    assert all(panel.ran.look_references is None and "look_references" not in panel.ran.to_json()
               for panel in result.panels)


def test_on_a_panel_follows_its_characters_reference(tiny_generator):
    def drawn(colour, on):
        req = dataclasses.replace(request(count=1, reference=colour), preset=NO_FACE)
        return pixels(tiny_generator.generate(looked(req, on)))[0]

    assert np.array_equal(drawn("red", on=False), drawn("green", on=False))  # no face held: the reference unused
    assert not np.array_equal(drawn("red", on=True), drawn("green", on=True))  # on: it is read
    result = tiny_generator.generate(looked(request(count=1)))
    assert result.panels[0].ran.look_references == (1,)
    assert result.panels[0].ran.to_json()["look_references"] == [1]


def test_a_panel_never_follows_another_characters_reference(tiny_generator):
    def drawn(ivan):
        req = cast_request([(0,), (0, 1)], references=("red", ivan))
        return tiny_generator.generate(looked(req))

    red, green = drawn("blue"), drawn("green")
    assert np.array_equal(red.panels[0].pixels, green.panels[0].pixels)  # Mara alone: Ivan's never read
    assert not np.array_equal(red.panels[1].pixels, green.panels[1].pixels)
    assert red.panels[0].ran.look_references == (1,) and red.panels[1].ran.look_references == (1, 2)


@pytest.mark.parametrize("req", [lambda: request(count=4), lambda: cast_request([(0,), (0, 1), (0,), (0, 1)])])
def test_the_same_board_whatever_the_batching(tiny_settings_factory, req):
    batched = StoryboardGenerator.load(tiny_settings_factory(batch_panels="on", first_panel_alone=False))
    single = StoryboardGenerator.load(tiny_settings_factory(batch_panels="off"))
    a, b = batched.generate(looked(req())), single.generate(looked(req()))
    assert max(float(np.abs(x - y).max()) for x, y in zip(pixels(a), pixels(b))) < 1e-4


def test_guidance_cut_off_halfway_still_shares(tiny_settings_factory):
    generator = StoryboardGenerator.load(tiny_settings_factory(cfg_cutoff=0.5))
    result = generator.generate(looked(request(count=2, steps=4)))
    assert all(panel.status == "done" and panel.ran.look_references == (1,) for panel in result.panels)


def test_identity_is_still_scored(tiny_generator):
    seen = []

    def judge(references, image):
        seen.append(references)
        return {"status": "ok", "score": 0.9}

    result = tiny_generator.generate(looked(request(count=2)), judge=judge)
    assert len(seen) == 2 and all(panel.identity["score"] == 0.9 for panel in result.panels)


@pytest.fixture(scope="module")
def distilled_generator(tiny_settings_factory):
    """A generator of its own for the distilled modes: switching the session's one to a LoRA and
    back leaves its weights a rounding away from a fresh one's, which other tests compare with."""
    return StoryboardGenerator.load(tiny_settings_factory())


def test_a_one_step_draft_draws_without_the_look(distilled_generator):
    draft = distilled_generator.settings.preset_for("draft")
    result = distilled_generator.generate(looked(dataclasses.replace(request(count=1, steps=None), preset=draft)))
    assert result.panels[0].ran.look_references is None


def test_lightning_shares(distilled_generator):
    lightning = distilled_generator.settings.preset_for("lightning")
    result = distilled_generator.generate(looked(dataclasses.replace(request(count=2, steps=None), preset=lightning)))
    assert result.panels[0].ran.look_references == (1,) and result.panels[0].ran.guidance_scale == 0.0


def test_the_shared_unet_compiles_as_one_graph_for_every_step(tiny_generator):
    # Real dynamo, no graph break allowed (fullgraph), the batch symbolic as the compiled UNet
    # runs it: two steps (two timesteps, two token samples) and two batch sizes, the pixels
    # of the eager UNet, and no compile per step.
    from unet_compile import mark_batch_dynamic

    compiles = []

    def counting(graph, inputs):
        compiles.append(graph)
        return graph.forward

    generator = tiny_generator
    generator._set_identity_mode(False)
    unet, scheduler = generator._unet_module(), generator.pipe.scheduler
    scheduler.set_timesteps(4)
    torch.manual_seed(0)
    reference = torch.randn(1, 4, 6, 6)
    calls = [(torch.randn(rows, 4, 6, 6), scheduler.timesteps[step],
              {"encoder_hidden_states": torch.randn(rows, 77, unet.config.cross_attention_dim),
               "added_cond_kwargs": {"text_embeds": torch.randn(rows, generator.pipe.text_encoder_2.config.projection_dim),
                                     "time_ids": torch.randn(rows, 6)}})
             for rows, step in ((3, 1), (3, 2), (5, 3))]

    def run(module) -> list:
        sharing = Sharing(generator._look, scheduler, [reference], 0.5, mark_batch_dynamic)
        outputs = []
        with torch.inference_mode(), sharing.hooked(module):
            for sample, t, kwargs in calls:
                scheduler._step_index = None  # as at each step of a call: found from the timestep
                outputs.append(module(sample, t, **kwargs).sample)
        return outputs

    expected = run(unet)
    torch._dynamo.reset()
    compiled = torch.compile(unet, backend=counting, fullgraph=True)
    compiled.register_forward_pre_hook(mark_batch_dynamic, with_kwargs=True)
    got = run(compiled)
    assert [out.shape[0] for out in got] == [3, 3, 5]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, expected))
    assert len(compiles) == 1


# --- Through the studio ----------------------------------------------------------------------


def test_a_board_with_the_look_says_so_in_its_panels_and_pngs(tiny_settings_factory):
    import io

    from app import create_app
    from exporting import read_png_parameters
    from helpers import png_bytes, wait_for
    from studio import studio_of

    app = create_app(tiny_settings_factory(identity_scoring=True))
    client = app.test_client()
    try:
        face = png_bytes((64, 64))
        data = {"story": "One.\nTwo.", "preset": "ultra_fast", "consistent_look": "true",
                "reference": (io.BytesIO(face), "f.png")}
        board = wait_for(client, client.post("/api/storyboards", data=data).get_json()["id"], timeout=120)
        plain = wait_for(client, client.post("/api/storyboards", json={"story": "One.", "preset": "ultra_fast"})
                         .get_json()["id"], timeout=120)
    finally:
        studio_of(app).backend.stop()
    assert board["status"] == "done" and board["settings"]["consistent_look"] is True
    assert [f["consistent_look"] for f in board["frames"]] == [{"characters": [1], "sampling_rate": 0.5}] * 2
    assert all(0 < f["identity"]["clip_similarity"] <= 1 for f in board["frames"])  # still scored
    png = read_png_parameters(client.get(board["frames"][0]["image_url"]).data)
    assert png["look_references"] == [1] and png["look_sampling_rate"] == 0.5
    assert plain["settings"]["consistent_look"] is False and plain["frames"][0]["consistent_look"] is None


def test_a_job_carries_the_look_to_a_worker():
    from test_drawing import spec

    looked_spec = spec(consistent_look=True)
    assert JobSpec.from_json(looked_spec.to_json()).consistent_look is True
    older = {k: v for k, v in spec().to_json().items() if k != "consistent_look"}  # queued before the option
    assert JobSpec.from_json(older).consistent_look is False


def test_a_board_stored_before_the_look_reads_as_without_it():
    from board_params import BoardParams
    from test_board_params import params as board_params

    stored = {k: v for k, v in board_params().to_json().items() if k != "consistent_look"}
    assert BoardParams.from_json(stored).consistent_look is False


def test_a_layouts_residuals_get_none_for_the_reference_row():
    class Scheduler:  # the reference noised as a scheduler would: here, left as it is
        def add_noise(self, latents, noise, t):
            return latents

        def scale_model_input(self, sample, t):
            return sample

    sharing = Sharing(Look(), Scheduler(), [torch.ones(1, 4, 2, 2)], 0.5)
    residuals = [torch.ones(2, 8, 2, 2), torch.ones(2, 8, 1, 1)]
    kwargs = {"encoder_hidden_states": torch.ones(2, 3, 4), "down_intrablock_additional_residuals": residuals,
              "added_cond_kwargs": {"text_embeds": torch.ones(2, 5), "time_ids": torch.ones(2, 6)}}
    with sharing.hooked(torch.nn.Identity()):
        args, kwargs = sharing._append(None, (torch.zeros(2, 4, 2, 2), torch.tensor(500.0)), kwargs)
    assert args[0].shape[0] == 3 and torch.equal(args[0][2], torch.ones(4, 2, 2))
    assert [r.shape[0] for r in kwargs["down_intrablock_additional_residuals"]] == [3, 3]
    assert not kwargs["down_intrablock_additional_residuals"][0][2].any() and len(residuals) == 2
    assert not kwargs["encoder_hidden_states"][2].any() and torch.equal(kwargs["added_cond_kwargs"]["time_ids"][2],
                                                                         torch.ones(6))


def test_a_later_job_shares_with_the_portrait_the_board_kept(tiny_generator):
    # A redraw, a resumed board or another worker gets the character's reference back from the
    # board's PNG: its panels share with the very picture the first job drew.
    import io

    from PIL import Image

    first = tiny_generator.generate(looked(request(count=2, reference=None, portrait=True)))
    buffer = io.BytesIO()
    first.reference.save(buffer, format="PNG")
    kept = Image.open(io.BytesIO(buffer.getvalue()))
    later = tiny_generator.generate(looked(dataclasses.replace(request(count=2, reference=None), reference=kept)))
    assert all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(later)))


def test_the_look_without_the_identity_lock_is_refused_on_its_field(make_app):
    from helpers import post_board

    client = make_app().test_client()
    answer = post_board(client, identity_lock=False, consistent_look=True)
    assert answer.status_code == 400 and answer.get_json()["field"] == "consistent_look"
    defaulted = make_app(consistent_look=True).test_client()  # the server's default follows the lock
    assert post_board(defaulted, identity_lock=False).status_code == 202


def test_a_posed_panel_shares_inside_each_characters_skeleton(distilled_generator, monkeypatch):
    # A layout's adapter adds residuals per row (zeros for the reference rows); the look's
    # regions are the posed characters' boxes, as the identity lock's masks are.
    from test_layout_generator import job, pose, sketch
    from test_layout_generator import request as layout_request

    layout = pose(0.2, 0.7)
    regions = layout.regions(["0", "1"])
    seen = []
    original = Sharing.__init__

    def spying(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.regions)

    posed = layout_request(job(layout=layout, cast=(0, 1), regions=regions), references=("red", "blue"),
                           consistent_look=True)
    monkeypatch.setattr(Sharing, "__init__", spying)
    result = distilled_generator.generate(posed)
    assert result.panels[0].status == "done" and result.panels[0].ran.look_references == (1, 2)
    assert seen == [tuple(regions)] and result.panels[0].ran.layout["adapter_steps"] >= 1
    lightning = distilled_generator.generate(layout_request(job(layout=sketch()), preset=PRESETS["lightning"],
                                                       consistent_look=True))
    assert lightning.panels[0].status == "done" and lightning.panels[0].ran.look_references == (1,)
