"""The folded cross-attention (attention.py) on the tiny models: the same pixels as diffusers'
own processors, each per-board constant computed once per pipeline call, fewer operators a
step, and a UNet that compiles as one graph with the identity lock on."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import MultiIPAdapterImageProjection

from attention import FoldedAttnProcessor
from local_image_generator import StoryboardGenerator
from bench.sdxl_random import count_ops

from test_generator import cast_request, request


def diffusers_processors(processors: dict) -> dict:
    """diffusers' own processors with the same weights and the same (shared) scale."""
    stock = {}
    for name, processor in processors.items():
        if isinstance(processor, FoldedAttnProcessor) and len(processor.to_k_ip):
            original = IPAdapterAttnProcessor2_0(processor.hidden_size, processor.cross_attention_dim,
                                                 processor.num_tokens)
            original.to_k_ip, original.to_v_ip, original.scale = processor.to_k_ip, processor.to_v_ip, processor.scale
            processor = original
        elif isinstance(processor, FoldedAttnProcessor):
            processor = AttnProcessor2_0()
        stock[name] = processor
    return stock


def with_diffusers_attention(generator: StoryboardGenerator) -> StoryboardGenerator:
    generator._ensure_adapter()
    generator._set_identity_mode(False)
    generator._ip_processors = diffusers_processors(generator._ip_processors)
    generator._plain_processors = diffusers_processors(generator._plain_processors)
    generator._ip_projection = MultiIPAdapterImageProjection(list(generator._ip_projection.image_projection_layers))
    generator.pipe.unet.set_attn_processor(dict(generator._plain_processors))
    return generator


def pixels(result):
    return [panel.pixels for panel in result.panels]


REQUESTS = {
    "one character": lambda: request(count=2, steps=3),
    "a cast, region masks": lambda: cast_request([(0, 1), (1,)]),
    "lock off": lambda: request(count=1, lock=False, reference=None, steps=2),
}


@pytest.mark.parametrize("cutoff", [1.0, 0.5])
@pytest.mark.parametrize("kind", REQUESTS)
def test_the_folded_processors_draw_what_diffusers_draws(tiny_settings_factory, kind, cutoff):
    ours = StoryboardGenerator.load(tiny_settings_factory(cfg_cutoff=cutoff))
    theirs = with_diffusers_attention(StoryboardGenerator.load(tiny_settings_factory(cfg_cutoff=cutoff)))
    expected = pixels(theirs.generate(REQUESTS[kind]()))
    assert all(np.array_equal(a, b) for a, b in zip(pixels(ours.generate(REQUESTS[kind]())), expected))


class Calls:
    """How often each per-board constant is computed while the hooks are on."""

    def __init__(self, unet):
        self.counts = {"unet": 0, "text": 0, "image": 0, "projection": 0}
        self.handles = [unet.register_forward_pre_hook(self.counter("unet"))]
        cross = [m for name, m in unet.named_modules() if name.endswith(".attn2")]
        self.handles += [m.to_k.register_forward_pre_hook(self.counter("text")) for m in cross]
        self.handles += [m.processor.to_k_ip[0].register_forward_pre_hook(self.counter("image"))
                         for m in cross if len(getattr(m.processor, "to_k_ip", ()))]
        self.layers = len(cross)
        self.ip_layers = len(self.handles) - 1 - len(cross)
        resampler = unet.encoder_hid_proj.image_projection_layers[0]
        self.handles.append(resampler.register_forward_pre_hook(self.counter("projection")))

    def counter(self, key):
        def count(module, args):
            self.counts[key] += 1
        return count

    def remove(self):
        for handle in self.handles:
            handle.remove()

    @classmethod
    def during(cls, generator, request) -> "Calls":
        """The counts while ``generator`` draws ``request``, identity lock on."""
        generator._set_identity_mode(True)
        calls = cls(generator.pipe.unet)
        try:
            generator.generate(request)
        finally:
            calls.remove()
        return calls


@pytest.mark.parametrize("fold,cutoff,per_call", [
    (True, 1.0, 1),  # once per pipeline call
    (True, 0.5, 2),  # once with guidance, once more for the positive half after the cutoff
    (False, 1.0, 4),  # the setting off: every step, as diffusers does
])
def test_each_constant_is_computed_once_per_pipeline_call(tiny_settings_factory, fold, cutoff, per_call):
    generator = StoryboardGenerator.load(tiny_settings_factory(fold_cross_attention=fold, cfg_cutoff=cutoff))
    calls = Calls.during(generator, request(count=1, steps=4))
    assert calls.counts == {"unet": 4, "text": per_call * calls.layers, "image": per_call * calls.ip_layers,
                            "projection": per_call}
    assert generator._fold._memo is None  # nothing kept after the call


def test_through_a_compiled_graph_everything_is_computed_inline(tiny_settings_factory):
    generator = StoryboardGenerator.load(tiny_settings_factory())
    generator.compiled = True  # as after _compile, with this board's graph compiled: it would guard on kept values
    generator.graphs.warm.add((48, 48, 1, None, False))  # (width, height, characters locked, no LoRA, no look)
    calls = Calls.during(generator, request(count=1, steps=2))
    assert calls.counts["projection"] == 2 and generator._fold.computed == 0


def unet_inputs(generator, cast: int = 1):
    generator._set_identity_mode(True)
    pipe, unet = generator.pipe, generator.pipe.unet
    embeds = torch.randn(2, cast, 17, pipe.image_encoder.config.hidden_size)
    if cast == 1:
        embeds = embeds[:, 0]
    generator._set_ip_scale(0.5)
    kwargs = {"encoder_hidden_states": torch.randn(2, 77, unet.config.cross_attention_dim),
              "added_cond_kwargs": {"text_embeds": torch.randn(2, pipe.text_encoder_2.config.projection_dim),
                                    "time_ids": torch.randn(2, 6), "image_embeds": [embeds[:, None] if cast == 1
                                                                                     else embeds]}}
    if cast > 1:
        kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": generator._region_masks(cast, 64, 64)}
    return (torch.randn(2, 4, 8, 8), torch.tensor(10.0)), kwargs


def test_a_folded_step_dispatches_fewer_operators(tiny_settings_factory):
    generator = StoryboardGenerator.load(tiny_settings_factory())
    args, kwargs = unet_inputs(generator)
    calls = Calls(generator.pipe.unet)
    calls.remove()
    unet = generator.pipe.unet
    with torch.inference_mode():
        inline = count_ops(lambda: unet(*args, **kwargs))
        with generator._fold.scope():
            unet(*args, **kwargs)
            folded = count_ops(lambda: unet(*args, **kwargs))
    # At least the four projections (text and image keys and values) of every IP layer.
    assert folded <= inline - 4 * calls.ip_layers


@pytest.mark.parametrize("cast", [1, 2])
def test_the_locked_unet_compiles_as_one_graph(tiny_settings_factory, cast):
    generator = StoryboardGenerator.load(tiny_settings_factory())
    args, kwargs = unet_inputs(generator, cast)
    torch._dynamo.reset()
    compiled = torch.compile(generator.pipe.unet, backend="eager", fullgraph=True)  # a break raises
    with torch.inference_mode():
        expected = generator.pipe.unet(*args, **kwargs).sample
        assert torch.equal(compiled(*args, **kwargs).sample, expected)


def test_diffusers_processors_with_a_scale_tensor_break_the_graph(tiny_settings_factory):
    # Why attention.py branches on no tensor: the check above fails with diffusers' processor.
    generator = with_diffusers_attention(StoryboardGenerator.load(tiny_settings_factory()))
    args, kwargs = unet_inputs(generator)
    torch._dynamo.reset()
    compiled = torch.compile(generator.pipe.unet, backend="eager", fullgraph=True)
    with torch.inference_mode(), pytest.raises(Exception, match="[Dd]ata-dependent"):
        compiled(*args, **kwargs)
