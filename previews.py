"""Live previews: each denoising step's latents as a small picture for the panel's placeholder.

TAESDXL (``madebyollin/taesdxl``, diffusers' AutoencoderTiny) decodes them, loaded once, on the
first preview or the first draft (the draft mode decodes its panels with the same module). Counted on the full-size models (bench/sdxl_random.py): TAESDXL on a 1024 px
panel's latents is 0.565 TFLOP, 8.4% of a UNet pass; pooled by PREVIEW_POOL first, 0.141 TFLOP
(2.1%), a 512 px picture, more than a placeholder shows. The picture travels as a data URL of a
small JPEG: never written anywhere, and the page needs no request to show it.
"""

from __future__ import annotations

import base64
import io

from config import Settings

PREVIEW_POOL = 2  # latents pooled by this before the decode (bench/sdxl_random.py counts the same)
PREVIEW_SIDE = 256  # px, the picture's longest side: a placeholder is about this wide
JPEG_QUALITY = 70


class PreviewDecoder:
    """TAESDXL on the generator's device, loaded on first use (a board drawn with previews off,
    in a mode other than draft, never loads it). ``taesd``: a module already built to use
    instead of loading one (the full-size benchmark's random TAESDXL, bench/sdxl_random.py)."""

    def __init__(self, settings: Settings, device: str, dtype, taesd=None):
        self.settings, self.device, self.dtype = settings, device, dtype
        self._taesd = taesd

    def model(self):
        """The one TAESDXL of the generator: the previews' decoder and the draft mode's."""
        if self._taesd is None:
            from model_loading import load_taesdxl

            self._taesd = load_taesdxl(self.settings, self.device, self.dtype)
        return self._taesd

    def decode(self, latents) -> list:
        """One small PIL image per latent of ``latents`` (a batch, as the UNet sees them:
        TAESDXL decodes SDXL's latents unscaled)."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        taesd = self.model()
        with torch.inference_mode():
            latents = latents.to(self.device, self.dtype)
            if min(latents.shape[-2:]) >= 2 * PREVIEW_POOL:
                latents = F.avg_pool2d(latents, PREVIEW_POOL)
            pixels = taesd.decode(latents).sample.float().clamp(-1, 1)
            pixels = ((pixels + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        images = []
        for array in pixels:
            image = Image.fromarray(array)
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            images.append(image)
        return images


def data_url(image) -> str:
    """``image`` as a data URL of a small JPEG, for an event's text."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
