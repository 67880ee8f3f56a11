"""How alike two pictures are to the IP-Adapter's own image encoder, and which score is better.

CLIP similarity is style-independent where face detection fails (stylised characters); the
identity judge (identity.py) calls it through the generator, which owns the encoder.
"""

from __future__ import annotations

import contextlib

# A board's cast fits; older boards' references go.
KEPT_REFERENCES = 8


class ClipScorer:
    """Cosine similarity of CLIP image embeddings, each reference embedded once."""

    def __init__(self, pipe, device: str, lock=None):
        self.pipe, self.device = pipe, device
        self._lock = lock or contextlib.nullcontext()  # the generator's: one caller of the pipeline at a time
        self._references: dict[int, tuple] = {}  # id(reference) -> (reference, its embedding)

    def similarity(self, reference, image) -> float | None:
        """None without an image encoder (the identity lock never loaded)."""
        import torch

        if getattr(self.pipe, "image_encoder", None) is None:
            return None
        with self._lock, torch.inference_mode():
            cached = self._references.get(id(reference))
            if cached is None or cached[0] is not reference:  # an id reused by a new image
                if len(self._references) >= KEPT_REFERENCES:
                    self._references.clear()
                cached = self._references[id(reference)] = (reference, self._embed(reference))
            embed = self._embed(image)
            return round(float(torch.nn.functional.cosine_similarity(cached[1], embed).item()), 4)

    def _embed(self, image):
        pixels = self.pipe.feature_extractor(image, return_tensors="pt").pixel_values
        pixels = pixels.to(device=self.device, dtype=self.pipe.image_encoder.dtype)
        return self.pipe.image_encoder(pixels).image_embeds.float()


def closer(score: dict, best: dict) -> bool:
    """Is ``score`` a better identity match than ``best``? A face beats no face."""
    if score.get("distance") is None:
        return False
    return best.get("distance") is None or score["distance"] < best["distance"]
