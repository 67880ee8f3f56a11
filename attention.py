"""Cross-attention for the identity lock, with the per-board constants folded out of the loop.

In every denoising step diffusers' IP-Adapter processor projects the same text tokens and the
same image tokens to keys and values again, in each of SDXL's 70 cross-attention layers, and the
plus-face resampler turns the same CLIP embedding into the same 16 image tokens again. None of
it depends on the latents or the timestep: within one pipeline call it is a constant. On a fast
GPU an eager step is bound by kernel launches (H100: 101 ms with the lock on, 67 ms off), so
these repeated launches are most of the lock's cost.

``Fold`` keeps those constants for one pipeline call (``with fold.scope(): pipe(...)``);
``FoldedAttnProcessor`` and ``FoldedImageProjection`` read them from it. The math is diffusers':
the text and the image tokens stay two attentions with two softmaxes (concatenating the image
tokens to the text keys would make them one softmax, a different model).

The processor also never branches on the scale's value: diffusers' ``if scale == 0`` on a
tensor scale is a data-dependent branch, a graph break in every IP layer of a compiled UNet.
Outside a scope (a compiled UNet, or ``STORYBOARD_FOLD_CROSS_ATTENTION=false``) everything is
computed inline, as diffusers does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers.image_processor import IPAdapterMaskProcessor
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import MultiIPAdapterImageProjection


class Fold:
    """Values that stay the same for every step of one pipeline call, each computed once.

    A value is keyed by its owner and by the identity of the tensors it comes from; the
    tensors are held with it, so an id cannot be reused by another tensor while it is kept.
    Everything is dropped when the scope ends.
    """

    def __init__(self) -> None:
        self._memo: dict | None = None
        self.computed = 0  # values computed inside scopes (tests, benchmarks)

    @contextlib.contextmanager
    def scope(self):
        self._memo = {}
        try:
            yield self
        finally:
            self._memo = None

    def get(self, owner: object, sources: Sequence[torch.Tensor], part: object, compute: Callable):
        if self._memo is None:
            return compute()
        key = (id(owner), tuple(id(source) for source in sources), part)
        kept = self._memo.get(key)
        if kept is not None and all(a is b for a, b in zip(kept[0], sources)):
            return kept[1]
        value = compute()
        self._memo[key] = (tuple(sources), value)
        self.computed += 1
        return value


def _heads(attn: Attention, tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """[batch, tokens, inner] -> [batch, heads, tokens, head_dim], as SDPA takes it."""
    return tensor.view(batch, -1, attn.heads, tensor.shape[-1] // attn.heads).transpose(1, 2)


class FoldedAttnProcessor(IPAdapterAttnProcessor2_0):
    """diffusers' SDPA attention for a cross-attention layer, with or without IP-Adapter image
    tokens (``encoder_hidden_states`` a tuple, as the UNet passes them with an image projection).

    Built from a loaded IP-Adapter processor (its ``to_k_ip``/``to_v_ip`` weights are kept, under
    the same names) or, for the lock off, from nothing (no image tokens). ``scale`` is whatever
    the caller keeps there: a float or a 0-d tensor changed in place.
    """

    def __init__(self, fold: Fold, ip: IPAdapterAttnProcessor2_0 | None = None) -> None:
        torch.nn.Module.__init__(self)
        self.fold = fold
        self.hidden_size = getattr(ip, "hidden_size", None)
        self.cross_attention_dim = getattr(ip, "cross_attention_dim", None)
        self.num_tokens = list(ip.num_tokens) if ip is not None else []
        self.scale = list(ip.scale) if ip is not None else []
        self.to_k_ip = ip.to_k_ip if ip is not None else torch.nn.ModuleList()
        self.to_v_ip = ip.to_v_ip if ip is not None else torch.nn.ModuleList()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        ip_adapter_masks: list | None = None,
        **kwargs,
    ) -> torch.Tensor:
        ip_states: list = []
        if isinstance(encoder_hidden_states, tuple):
            encoder_hidden_states, ip_states = encoder_hidden_states
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        query = _heads(attn, query, batch)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if encoder_hidden_states is None:  # self-attention: nothing is constant
            key, value = self._text_kv(attn, context, batch)
        else:
            key, value = self.fold.get(attn, (context,), "text", lambda: self._text_kv(attn, context, batch))
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                             is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[-1]).to(query.dtype)

        masks = ip_adapter_masks if ip_adapter_masks is not None else [None] * len(ip_states)
        for n, (states, scale, mask) in enumerate(zip(ip_states, self.scale, masks)):
            if isinstance(scale, (int, float)) and scale == 0:  # a Python number only: no tensor branch
                continue
            if mask is None:
                out = out + scale * self._image_attention(attn, query, states, n, None, batch)
                continue
            for i in range(mask.shape[1]):  # one image per character, each gated to its region
                image = self._image_attention(attn, query, states, n, i, batch)
                gate = self.fold.get(mask, (mask,), (i, batch, image.shape[1], image.shape[2], query.dtype),
                                     lambda: _downsampled(mask, i, batch, image, query))
                out = out + (scale[i] if isinstance(scale, list) else scale) * (image * gate)

        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _text_kv(self, attn: Attention, context: torch.Tensor, batch: int):
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = _heads(attn, attn.to_k(context), batch), _heads(attn, attn.to_v(context), batch)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        return key, value

    def _image_attention(self, attn, query, states, n: int, image: int | None, batch: int) -> torch.Tensor:
        def project():
            tokens = states if image is None else states[:, image]
            return _heads(attn, self.to_k_ip[n](tokens), batch), _heads(attn, self.to_v_ip[n](tokens), batch)

        key, value = self.fold.get(attn, (states,), ("image", n, image), project)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False)
        return out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[-1]).to(query.dtype)


def _downsampled(mask: torch.Tensor, i: int, batch: int, image: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    gate = IPAdapterMaskProcessor.downsample(mask[:, i, :, :], batch, image.shape[1], image.shape[2])
    return gate.to(dtype=query.dtype, device=query.device)


class FoldedImageProjection(MultiIPAdapterImageProjection):
    """The IP-Adapter's image projection (the plus-face resampler), run once per pipeline call
    instead of once a step. Same layers, same state-dict names, same class for diffusers."""

    def __init__(self, projection: MultiIPAdapterImageProjection, fold: Fold) -> None:
        super().__init__(list(projection.image_projection_layers))
        self.fold = fold

    def forward(self, image_embeds: list[torch.Tensor]) -> list[torch.Tensor]:
        if not isinstance(image_embeds, list):
            return super().forward(image_embeds)
        project = super().forward
        return self.fold.get(self, image_embeds, "projection", lambda: project(image_embeds))


def fold_processors(processors: dict, fold: Fold) -> dict:
    """The same processors with every cross-attention one (diffusers' IP-Adapter processor, or
    its plain SDPA one on an ``attn2`` layer) replaced by a FoldedAttnProcessor; others, such as
    sliced ones, are kept."""
    folded = {}
    for name, processor in processors.items():
        if isinstance(processor, IPAdapterAttnProcessor2_0) and not isinstance(processor, FoldedAttnProcessor):
            processor = FoldedAttnProcessor(fold, processor)
        elif type(processor) is AttnProcessor2_0 and ".attn2." in name:
            processor = FoldedAttnProcessor(fold)
        folded[name] = processor
    return folded


def use_sdpa(unet) -> None:
    """Plain SDPA processors everywhere: the IP-Adapter keeps the self-attention processors it
    finds when it loads, and cannot start from sliced ones (diffusers 0.42)."""
    unet.set_attn_processor(AttnProcessor2_0())
