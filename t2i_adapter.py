"""The T2I-Adapters that make a panel follow its layout (layouts.py), for the generator.

An adapter (~77-79M parameters for SDXL) runs once per panel, not once per step as a
ControlNet does: its feature maps are added to the UNet's down blocks at every step it
steers. Each kind's adapter (``TencentARC/t2i-adapter-{sketch,openpose}-sdxl-1.0``) is
loaded through diffusers' ``T2IAdapter.from_pretrained`` on first use and kept; the
pipeline that runs it is diffusers' ``StableDiffusionXLAdapterPipeline`` made with
``from_pipe`` from the loaded SDXL's own components (no second UNet, VAE or encoder in
memory), so the LoRA, the IP-Adapter and its masks, and the scheduler of the speed mode are
the ones every panel uses. Nothing is loaded on import.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

from config import Settings
from layouts import Layout
from model_loading import ModelNotAvailable, check_source, hub_options, load_failure_message, twin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterRun:
    """How a layout steered a call, for the panel's metadata (PanelRun.layout)."""

    kind: str
    adapter: str  # hub id
    strength: float  # adapter_conditioning_scale
    factor: float  # adapter_conditioning_factor, as passed (at least one step)
    adapter_steps: int  # the steps the adapter's features were added in

    def to_json(self) -> dict:
        return {"kind": self.kind, "adapter": self.adapter, "strength": self.strength, "factor": self.factor,
                "adapter_steps": self.adapter_steps}


class LayoutAdapters:
    """The loaded T2I-Adapters, by hub id; one generator owns one."""

    def __init__(self, settings: Settings, device: str, dtype):
        self.settings, self.device, self.dtype = settings, device, dtype
        self._adapters: dict[str, object] = {}

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    def adapter(self, hub_id: str):
        """``hub_id``'s T2IAdapter on the device, loaded the first time it is asked for."""
        if hub_id not in self._adapters:
            from diffusers import T2IAdapter

            source = check_source(hub_id, "layout adapter")
            try:
                with warnings.catch_warnings():
                    # diffusers hands the hub an argument it has deprecated; nothing for a studio user.
                    warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument is deprecated", UserWarning)
                    adapter = T2IAdapter.from_pretrained(source, dtype=self.dtype, use_safetensors=True,
                                                         **hub_options(self.settings))
            except Exception as error:  # noqa: BLE001 - any load failure becomes words for the user
                raise ModelNotAvailable(load_failure_message(
                    "the layout's T2I-Adapter", source, "STORYBOARD_HF_CACHE_DIR", self.settings.cache_dir, error,
                    size="it is about 160 MB")) from error
            self._adapters[hub_id] = adapter.to(self.device)
            log.info("loaded the T2I-Adapter %s", hub_id)
        return self._adapters[hub_id]

    def pipeline(self, pipe, hub_id: str):
        """diffusers' SDXL adapter pipeline on ``pipe``'s loaded components, with ``hub_id``'s adapter."""
        from diffusers import StableDiffusionXLAdapterPipeline

        adapter_pipe = twin(StableDiffusionXLAdapterPipeline, pipe, adapter=self.adapter(hub_id))
        adapter_pipe.set_progress_bar_config(disable=True)
        return adapter_pipe

    def call_arguments(self, pipe, layouts: Sequence[Layout], width: int, height: int,
                       steps: int) -> tuple[dict, AdapterRun]:
        """The adapter pipeline's arguments for panels of ``layouts`` (one kind and strength:
        one call has one scale) at ``width`` x ``height`` over ``steps`` steps, and what ran."""
        import torch

        first = layouts[0]
        adapter = self.adapter(first.adapter)
        size = conditioning_size(width, height, pipe.vae_scale_factor, adapter.config.downscale_factor)
        mode = "L" if adapter.config.in_channels == 1 else "RGB"
        images = [torch.from_numpy(_array(layout.image(*size).convert(mode))) for layout in layouts]
        batch = torch.stack(images).to(device=self.device, dtype=adapter.dtype)
        # diffusers applies the adapter for int(steps x factor) steps: a 1-step draft at 0.9 would get
        # none, so at least the first step is steered.
        factor = max(first.factor, 1 / steps)
        applied = min(steps, int(steps * factor))
        arguments = {"image": batch, "adapter_conditioning_scale": first.strength,
                     "adapter_conditioning_factor": factor}
        return arguments, AdapterRun(first.kind, first.adapter, first.strength, factor, applied)


def conditioning_size(width: int, height: int, vae_scale: int, downscale: int) -> tuple[int, int]:
    """The size of the adapter's input image whose feature maps match the UNet's after its
    first down block (half the latents, rounded up as its strided convolution rounds):
    the panel's own size at SDXL's sizes (multiples of 16), a few pixels more for others."""
    def side(pixels: int) -> int:
        return math.ceil(pixels / vae_scale / 2) * downscale

    return side(width), side(height)


def _array(image):
    import numpy as np

    array = np.asarray(image, dtype=np.float32) / 255.0  # the adapters read 0..1
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
