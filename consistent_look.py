"""The consistent look: panels of one character share its appearance beyond the face.

StoryDiffusion's Consistent Self-Attention (Zhou et al., NeurIPS 2024) lets each image's
self-attention in SDXL's up blocks also attend to tokens sampled from the other images of the
batch, the references first. Here the reference of a character is its identity-lock reference
(the portrait drawn first, or the picture uploaded): the one image every request that draws the
character already carries, whichever batch, redraw, resume or worker draws it, and that the
board already keeps (its cast's reference PNG). Nothing else is stored, so there is nothing to
migrate and nothing that grows with the board.

How a reference takes part, for each pipeline call (``Sharing``):

- Its picture is encoded by the VAE once per request (fitted to the panel's size) and, at every
  step, noised to that step's timestep with a fixed noise of its own (``REFERENCE_SEED``, the
  character's place): a "ghost" row appended to the UNet's batch after the panels' rows, with no
  prompt (zero text embeddings, as SDXL's empty prompt) and the call's face embeddings.
- In every up-block self-attention layer (attn1) the ghost rows attend to themselves only; each
  panel row attends to its own tokens plus ``look_sampling_rate`` of each ghost's tokens, the same
  sample for every panel of the step (seeded by the step's timestep and the layer's size), so a
  panel's pixels depend on its own inputs and its references only: the same board whatever the
  batching. With several characters the picture is split as the identity lock's region masks
  split it (vertical strips, left to right, or a posed panel's boxes): a region's queries see
  only its own character's reference, so Mara never gets Ivan's coat.
- The ghosts' outputs are dropped before the scheduler sees the batch.

Why the re-encoded picture and not the reference's own keys and values kept at every step (as
StoryDiffusion keeps them in memory while it draws): those are ~56 MB a step at 1024x1024 with
half the tokens sampled (``bank_bytes``), over a GB for a board in the fast mode: too much to keep
with a board or send with a job. The ghost costs one more UNet row a step per character (shared
by every panel of the call); ``extra_flops`` counts it.

The panels' cost therefore depends on batching: on a Mac (one panel a call) a 12-step board pays
half again its UNet passes; the option is off by default (BENCHMARKS.md has the counts).
A one-step draft skips it: its only step is at the top of the schedule, where a reference is
noise (its signal a few percent), so sharing would cost a UNet pass for nothing.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from config import LOOK_MIN_STEPS

# The fixed noise of every reference's ghost: part of the reference, not of any panel, so a
# character's ghost is the same in every request (REFERENCE_SEED + its place in the cast).
REFERENCE_SEED = 20_241_210


def wanted(request) -> bool:
    """Whether ``request`` (local_image_generator.StoryboardRequest) draws with the look."""
    return request.consistent_look and request.identity_lock and request.num_steps >= LOOK_MIN_STEPS


class Look:
    """What the look processors read during one UNet call: how many rows at the end of the
    batch are references (0: none, every processor is plain attention), which of their tokens
    are shared at each layer size, and which queries may see which reference."""

    def __init__(self) -> None:
        self.ghosts = 0
        self.samples: dict[int, torch.Tensor] = {}  # tokens of a layer -> indices of the shared ones
        self.regions: dict[int, torch.Tensor | None] = {}  # ... -> SDPA's mask (None: one character)


def _heads(attn: Attention, tensor: torch.Tensor, batch: int) -> torch.Tensor:
    return tensor.view(batch, -1, attn.heads, tensor.shape[-1] // attn.heads).transpose(1, 2)


class LookProcessor:
    """An up-block self-attention processor: ``inner`` (the processor it replaces) while no
    reference rows are in the call, so a board without the look draws exactly what it drew
    before; else the shared attention described in the module's docstring. Reads the Look only
    as an int and tensors (no data-dependent branch: one graph through torch.compile)."""

    def __init__(self, look: Look, inner) -> None:
        self.look = look
        self.inner = inner

    def __call__(self, attn: Attention, hidden_states, *args, **kwargs):
        ghosts = self.look.ghosts
        if not ghosts or args or any(value is not None for value in kwargs.values()) or hidden_states.ndim != 3:
            return self.inner(attn, hidden_states, *args, **kwargs)  # as it was called (a sliced one takes no temb)
        batch, tokens, _ = hidden_states.shape
        panels = batch - ghosts
        query = _heads(attn, attn.to_q(hidden_states), batch)
        key = _heads(attn, attn.to_k(hidden_states), batch)
        value = _heads(attn, attn.to_v(hidden_states), batch)
        # The references' sampled tokens, projected once for every panel of the call.
        shared = hidden_states[panels:, self.look.samples[tokens]].reshape(1, -1, hidden_states.shape[-1])
        shared_key = _heads(attn, attn.to_k(shared), 1).expand(panels, -1, -1, -1)
        shared_value = _heads(attn, attn.to_v(shared), 1).expand(panels, -1, -1, -1)
        panel_out = F.scaled_dot_product_attention(
            query[:panels], torch.cat([key[:panels], shared_key], dim=2),
            torch.cat([value[:panels], shared_value], dim=2), attn_mask=self.look.regions[tokens])
        ghost_out = F.scaled_dot_product_attention(query[panels:], key[panels:], value[panels:])
        out = torch.cat([panel_out, ghost_out]).transpose(1, 2).reshape(batch, tokens, -1).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def install(processors: dict, look: Look) -> dict:
    """The same processors with every up-block self-attention one wrapped in a LookProcessor
    (StoryDiffusion's layers: its ``set_attention_processor`` gives ``up_blocks.*.attn1`` its
    consistent processor). The cross-attention ones, IP-Adapter's among them, stay as they are."""
    return {name: LookProcessor(look, processor)
            if name.startswith("up_blocks.") and ".attn1." in name and not isinstance(processor, LookProcessor)
            else processor for name, processor in processors.items()}


def encode_reference(pipe, image, width: int, height: int, device, dtype) -> torch.Tensor:
    """A reference picture as the scheduler's clean latents at the panel's size: fitted
    (centred, cropped to the aspect), encoded by SDXL's VAE (its mean, no sampling), scaled."""
    from PIL import ImageOps

    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(ImageOps.fit(image.convert("RGB"), (width, height)))
    upcast = vae.dtype != torch.float32 and vae.config.force_upcast
    encoder_dtype = torch.float32 if upcast else vae.dtype
    original = vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        latents = vae.encode(pixels.to(device=vae.device, dtype=encoder_dtype)).latent_dist.mean
    finally:
        if upcast:
            vae.to(original)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        latents = (latents - mean) * vae.config.scaling_factor / std
    else:
        latents = latents * vae.config.scaling_factor
    return latents.to(device=device, dtype=dtype)


def reference_noise(latents: torch.Tensor, place: int) -> torch.Tensor:
    generator = torch.Generator("cpu").manual_seed(REFERENCE_SEED + place)
    return torch.randn(latents.shape, generator=generator).to(latents)


def level_sizes(height: int, width: int, levels: int = 4) -> list[tuple[int, int]]:
    """The token grids of the UNet's levels for latents of ``height`` x ``width``: each stride-2
    downsampling (kernel 3, padding 1) rounds up."""
    sizes = [(height, width)]
    for _ in range(levels - 1):
        height, width = (height + 1) // 2, (width + 1) // 2
        sizes.append((height, width))
    return sizes


def shared_count(tokens: int, rate: float) -> int:
    return max(1, round(rate * tokens))


def token_sample(tokens: int, rate: float, timestep: float) -> torch.Tensor:
    """The reference tokens shared at a layer of ``tokens`` at a step: StoryDiffusion draws a
    new random sample each step; here it is drawn from a generator seeded by the step's
    timestep and the layer's size, so every panel of every batch gets the same one."""
    generator = torch.Generator("cpu").manual_seed(REFERENCE_SEED * 1009 + round(float(timestep) * 1000) * 31 + tokens)
    return torch.randperm(tokens, generator=generator)[: shared_count(tokens, rate)].sort().values


def strips(count: int) -> tuple[tuple[float, float, float, float], ...]:
    """The identity lock's default regions: ``count`` vertical strips, left to right, as
    (left, top, right, bottom) fractions of the picture."""
    return tuple((i / count, 0.0, (i + 1) / count, 1.0) for i in range(count))


def region_mask(height: int, width: int, regions, shared: int, device) -> torch.Tensor | None:
    """SDPA's boolean mask [tokens, tokens + characters x shared] for several characters: every
    query sees its own picture's tokens, and a character's reference tokens only from inside
    that character's region (``regions``: a box of fractions per character, in the cast's order:
    the identity lock's, its strips or a posed panel's boxes; a token in two boxes sees both,
    in none, no one's). None for one character: every query sees its reference."""
    if len(regions) < 2:
        return None
    rows = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    columns = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    y, x = rows.repeat_interleave(width), columns.repeat(height)  # row-major, as the tokens
    inside = torch.stack([(x >= left) & (x < right) & (y >= top) & (y < bottom)
                          for left, top, right, bottom in regions], dim=1)  # [tokens, characters]
    return torch.cat([torch.ones(height * width, height * width, dtype=torch.bool),
                      inside.repeat_interleave(shared, dim=1)], dim=1).to(device)


class Sharing:
    """For one pipeline call: append the reference rows to every UNet call and take them off
    its output, with the Look set for the processors. Hooks on the UNet module it is given
    (the compiled wrapper too: outside the graph, which sees only tensors and an int)."""

    def __init__(self, look: Look, scheduler, references: list[torch.Tensor], rate: float, mark_dynamic=None,
                 regions=None) -> None:
        self.look = look
        self.regions = regions or strips(len(references))  # each character's box, in the cast's order
        self.scheduler = scheduler
        self.latents = torch.cat(references)  # [characters, 4, h, w], in the cast's order
        self.noise = torch.cat([reference_noise(latents, place) for place, latents in enumerate(references)])
        self.rate = rate
        self.mark_dynamic = mark_dynamic  # unet_compile's: the batch stays a symbolic size
        self._kept: dict = {}  # input tensor -> (it, it with the reference rows): the same every step

    @contextlib.contextmanager
    def hooked(self, unet):
        height, width = self.latents.shape[-2:]
        self.look.regions = {}
        for rows, columns in level_sizes(height, width):
            tokens = rows * columns
            self.look.regions[tokens] = region_mask(rows, columns, self.regions, shared_count(tokens, self.rate),
                                                    self.latents.device)
        before = unet.register_forward_pre_hook(self._append, with_kwargs=True)
        after = unet.register_forward_hook(self._drop)
        try:
            yield
        finally:
            before.remove()
            after.remove()
            self.look.ghosts, self.look.samples, self.look.regions = 0, {}, {}
            self._kept = {}

    def _append(self, module, args, kwargs):
        sample, timestep = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
        count = self.latents.shape[0]
        step = timestep.reshape(-1)[:1]
        ghost = self.scheduler.add_noise(self.latents, self.noise, step.expand(count))
        ghost = self.scheduler.scale_model_input(ghost, step[0]).to(sample.dtype)
        height, width = self.latents.shape[-2:]
        self.look.samples = {rows * columns: token_sample(rows * columns, self.rate, float(step[0])).to(sample.device)
                             for rows, columns in level_sizes(height, width)}
        self.look.ghosts = count
        args = (torch.cat([sample, ghost]), *args[1:])
        kwargs = dict(kwargs)
        if torch.is_tensor(kwargs.get("timestep")) and kwargs["timestep"].dim() > 0:
            kwargs["timestep"] = torch.cat([kwargs["timestep"], kwargs["timestep"][-1:].expand(count)])
        kwargs["encoder_hidden_states"] = self._keep(kwargs["encoder_hidden_states"], _with_zeros)
        added = dict(kwargs["added_cond_kwargs"])
        added["text_embeds"] = self._keep(added["text_embeds"], _with_zeros)
        added["time_ids"] = self._keep(added["time_ids"], _with_last)
        if added.get("image_embeds") is not None:  # the cast's face embeddings, as the panels' own
            # diffusers repeats them per image of the call: rows x panels of them (the generator
            # batches only panels of one cast for this reason), so as many again per reference row.
            added["image_embeds"] = [self._keep(embeds, _with_last, embeds.shape[0] // sample.shape[0])
                                     for embeds in added["image_embeds"]]
        kwargs["added_cond_kwargs"] = added
        # A layout's adapter (T2I-Adapter) or a ControlNet adds residuals per row: the reference
        # follows no layout (zeros). New lists each call: the UNet pops from them.
        for name in ("down_intrablock_additional_residuals", "down_block_additional_residuals"):
            if kwargs.get(name) is not None:
                kwargs[name] = [_with_zeros(residual, count) for residual in kwargs[name]]
        if kwargs.get("mid_block_additional_residual") is not None:
            kwargs["mid_block_additional_residual"] = _with_zeros(kwargs["mid_block_additional_residual"], count)
        if self.mark_dynamic is not None:
            self.mark_dynamic(module, args, kwargs)
        return args, kwargs

    def _keep(self, tensor: torch.Tensor, extend, per_row: int = 1) -> torch.Tensor:
        """``tensor`` with the reference rows, the same tensor for the same input (the fold
        keeps the cross-attention constants by the identity of their tensors)."""
        kept = self._kept.get(id(tensor))
        if kept is None or kept[0] is not tensor:
            kept = self._kept[id(tensor)] = (tensor, extend(tensor, self.latents.shape[0] * per_row))
        return kept[1]

    def _drop(self, module, args, output):
        count = self.look.ghosts
        self.look.ghosts = 0
        if isinstance(output, tuple):
            return (output[0][:-count], *output[1:])
        output.sample = output.sample[:-count]
        return output


def _with_zeros(tensor: torch.Tensor, count: int) -> torch.Tensor:
    return torch.cat([tensor, tensor.new_zeros((count, *tensor.shape[1:]))])


def _with_last(tensor: torch.Tensor, count: int) -> torch.Tensor:
    return torch.cat([tensor, tensor[-1:].expand(count, *tensor.shape[1:])])


# --- Cost, counted ------------------------------------------------------------------------


def up_self_attention_layers(unet_config) -> list[tuple[int, int]]:
    """(level, channels) of each up-block self-attention layer of a UNet config: the level
    0 is full latent size, each down block halves it; SDXL: 30 at 1/4 (1280 ch), 6 at 1/2 (640)."""
    config = dict(unet_config)
    up_types = config["up_block_types"]
    channels = list(reversed(config["block_out_channels"]))
    depth = config["transformer_layers_per_block"]
    depth = list(reversed(depth if isinstance(depth, (list, tuple)) else [depth] * len(channels)))
    per_block = config["layers_per_block"] + 1
    levels = len(channels) - 1
    return [(levels - i, channels[i]) for i, kind in enumerate(up_types) if "CrossAttn" in kind
            for _ in range(per_block * depth[i])]


def extra_flops(unet_config, height: int, width: int, rate: float, panel_rows: int, characters: int = 1) -> dict:
    """The sharing's own attention FLOPs in one UNet call (multiply-adds x 2) beyond the
    panels' plain self-attention: each panel row's queries against the shared tokens (scores and
    weighted sum), and the shared tokens' key and value projections (once per call).
    The reference rows' own UNet passes are not in it: count them as rows."""
    latent = level_sizes(height // 8, width // 8)
    attention = projection = 0
    for level, channels in up_self_attention_layers(unet_config):
        rows, columns = latent[level]
        tokens = rows * columns
        shared = characters * shared_count(tokens, rate)
        attention += panel_rows * 2 * 2 * tokens * shared * channels
        projection += 2 * 2 * shared * channels * channels
    return {"attention": attention, "projection": projection, "total": attention + projection}


def bank_bytes(unet_config, height: int, width: int, rate: float, bytes_per_value: int = 2) -> int:
    """What keeping one reference's sampled hidden states (StoryDiffusion's ``id_bank``) takes a
    step: every up-block self-attention layer's shared tokens x channels, one row, fp16."""
    latent = level_sizes(height // 8, width // 8)
    values = sum(shared_count(math.prod(latent[level]), rate) * channels
                 for level, channels in up_self_attention_layers(unet_config))
    return values * bytes_per_value
