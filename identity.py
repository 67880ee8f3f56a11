"""Face identity scoring: does a generated panel still show the reference face?

Uses dlib's HOG face detector, 5-point landmarks and the 128-d face
recognition ResNet, with model files shipped by ``face_recognition_models``.
Importing this module loads nothing; call ``FaceScorer.load()`` once and reuse.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.6  # dlib's documented same-person cut-off
# HOG finds faces down to ~80 px (~40 px with one upsample), so tiny panels
# (e.g. 64 px) are enlarged first; measured: 160 still missed a 48 px panel.
MIN_SIDE = 256
# Keep weak detections; the strongest one is picked anyway.
DETECT_THRESHOLD = 0.0


@dataclass(frozen=True)
class IdentityScore:
    status: str  # "match" | "drift" | "no_face" | "no_reference_face"
    distance: float | None  # None unless a face was actually compared
    threshold: float

    def to_dict(self) -> dict:
        return asdict(self)


def _model_path(name: str) -> str:
    # face_recognition_models' __init__ imports pkg_resources, which recent
    # setuptools no longer ships, so locate the package without executing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"face model file missing: {path}")
    return str(path)


class FaceScorer:
    """Holds the loaded dlib models and nothing else. dlib does not document
    its models as thread-safe, so give each worker thread its own scorer."""

    def __init__(self, detector, shape_predictor, recognizer):
        self.detector = detector
        self.shape_predictor = shape_predictor
        self.recognizer = recognizer

    @classmethod
    def load(cls) -> FaceScorer:
        import dlib  # lazy: heavy native import, only when scoring is wanted

        return cls(
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(_model_path("shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(
                _model_path("dlib_face_recognition_resnet_model_v1.dat")
            ),
        )

    def _strongest_face(self, pixels: np.ndarray):
        # Upsampling finds smaller faces, but also false ones (measured: clothing)
        # and small background faces that can outscore the main face, so only
        # upsample when nothing is found at native size.
        for upsample in (0, 1):
            rects, scores, _ = self.detector.run(pixels, upsample, DETECT_THRESHOLD)
            if len(rects):
                return rects[int(np.argmax(scores))]
        return None

    def descriptor(self, image: Image.Image) -> np.ndarray | None:
        """128-d descriptor of the strongest face, or None when there is none."""
        image = image.convert("RGB")
        short = min(image.size)
        if short < MIN_SIDE:
            scale = MIN_SIDE / short
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)),
                Image.Resampling.BICUBIC,
            )
        pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        rect = self._strongest_face(pixels)
        if rect is None:
            return None
        shape = self.shape_predictor(pixels, rect)
        return np.asarray(self.recognizer.compute_face_descriptor(pixels, shape))

    def score(
        self,
        reference: np.ndarray | None,
        image: Image.Image,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> IdentityScore:
        if reference is None:
            return IdentityScore("no_reference_face", None, threshold)
        found = self.descriptor(image)
        if found is None:
            return IdentityScore("no_face", None, threshold)
        distance = float(np.linalg.norm(found - reference))
        status = "match" if distance <= threshold else "drift"
        return IdentityScore(status, distance, threshold)


def _open(path: str) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score whether images show the same face as a reference."
    )
    parser.add_argument("reference", help="reference image with the face to keep")
    parser.add_argument("images", nargs="+", help="images to compare")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    # Read everything first so a bad path fails before the models load.
    opened = {}
    for path in [args.reference, *args.images]:
        try:
            opened[path] = _open(path)
        except OSError as exc:  # includes PIL's UnidentifiedImageError
            log.error("cannot read image %s: %s", path, exc)
            return 2

    scorer = FaceScorer.load()
    ref_desc = scorer.descriptor(opened[args.reference])
    if ref_desc is None:
        log.warning("no face found in reference %s", args.reference)
    results = []
    for path in args.images:
        score = scorer.score(ref_desc, opened[path], args.threshold)
        results.append({"path": path, "status": score.status, "distance": score.distance})
    print(json.dumps({
        "reference": args.reference,
        "reference_face": ref_desc is not None,
        "threshold": args.threshold,
        "images": results,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
