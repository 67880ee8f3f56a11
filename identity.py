"""Face identity scoring: does a generated panel still show the reference faces?

Uses dlib's HOG face detector, 5-point landmarks and the 128-d face
recognition ResNet, with model files shipped by ``face_recognition_models``.
Importing this module loads nothing; call ``FaceScorer.load()`` once and reuse.

One character: :meth:`FaceScorer.score` compares the strongest face with the reference.
A cast: :meth:`FaceScorer.score_cast` finds every face in the panel and gives each
character present the face that an optimal assignment on face distance gives it
(:func:`assign`), then says per character: match, drift or missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import itertools
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.6  # dlib's documented same-person cut-off
# HOG finds faces down to ~80 px (~40 px with one upsample), so tiny panels
# (e.g. 64 px) are enlarged first; measured: 160 still missed a 48 px panel.
MIN_SIDE = 256
# Keep weak detections; the strongest one is picked anyway.
DETECT_THRESHOLD = 0.0
# Faces a panel is searched for at most (the strongest): a cast has at most 4 characters,
# and an exhaustive assignment over 8 faces is 1680 orders.
MAX_FACES = 8


@dataclass(frozen=True)
class IdentityScore:
    status: str  # "match" | "drift" | "no_face" | "no_reference_face"
    distance: float | None  # None unless a face was actually compared
    threshold: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CharacterScore:
    """One character of a panel's cast. ``face``: which of the panel's faces (left to right)
    was assigned to it, None when it got none."""

    status: str  # "match" | "drift" | "missing" | "no_reference_face"
    distance: float | None
    face: int | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CastScore:
    """A panel against the references of the characters in it, in cast order.

    ``status``: "drift" if any character's face drifted, else "match" if any matched, else
    "no_face" (no face in the panel) or "no_reference_face" (no reference shows a face).
    ``distance``: the largest distance of a character that got a face (None: none did), so
    a lower one is a closer panel.
    """

    status: str
    distance: float | None
    threshold: float
    faces: int  # faces found in the panel
    characters: tuple[CharacterScore, ...]

    def to_dict(self) -> dict:
        return {"status": self.status, "distance": self.distance, "threshold": self.threshold,
                "faces": self.faces, "characters": [c.to_dict() for c in self.characters]}


def assign(distances: Sequence[Sequence[float]]) -> tuple[int | None, ...]:
    """The optimal assignment of faces (columns) to characters (rows): each character at
    most one face and each face at most one character, as many characters as there are
    faces given one, and the smallest total distance among those. Exhaustive: a cast has
    at most 4 characters and a panel is searched for at most MAX_FACES faces."""
    rows = len(distances)
    columns = len(distances[0]) if rows else 0
    best: tuple[float, tuple[int | None, ...]] | None = None
    if columns >= rows:
        for faces in itertools.permutations(range(columns), rows):
            total = sum(distances[r][f] for r, f in enumerate(faces))
            if best is None or total < best[0]:
                best = (total, tuple(faces))
    else:
        for characters in itertools.permutations(range(rows), columns):
            total = sum(distances[r][f] for f, r in enumerate(characters))
            if best is None or total < best[0]:
                chosen: list[int | None] = [None] * rows
                for f, r in enumerate(characters):
                    chosen[r] = f
                best = (total, tuple(chosen))
    return best[1] if best is not None else (None,) * rows


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

    @staticmethod
    def _pixels(image: Image.Image) -> np.ndarray:
        image = image.convert("RGB")
        short = min(image.size)
        if short < MIN_SIDE:
            scale = MIN_SIDE / short
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)),
                Image.Resampling.BICUBIC,
            )
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))

    def _describe(self, pixels: np.ndarray, rect) -> np.ndarray:
        shape = self.shape_predictor(pixels, rect)
        return np.asarray(self.recognizer.compute_face_descriptor(pixels, shape))

    def descriptor(self, image: Image.Image) -> np.ndarray | None:
        """128-d descriptor of the strongest face, or None when there is none."""
        pixels = self._pixels(image)
        rect = self._strongest_face(pixels)
        if rect is None:
            return None
        return self._describe(pixels, rect)

    def descriptors(self, image: Image.Image) -> list[np.ndarray]:
        """Descriptors of every face (the MAX_FACES strongest), left to right. As for one
        face, the image is upsampled only when nothing is found at its own size."""
        pixels = self._pixels(image)
        for upsample in (0, 1):
            rects, scores, _ = self.detector.run(pixels, upsample, DETECT_THRESHOLD)
            if len(rects):
                break
        strongest = sorted(range(len(rects)), key=lambda i: -scores[i])[:MAX_FACES]
        return [self._describe(pixels, rects[i]) for i in sorted(strongest, key=lambda i: rects[i].left())]

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


    def score_cast(
        self,
        references: Sequence[np.ndarray | None],
        image: Image.Image,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> CastScore:
        """Score a panel against each present character's reference descriptor (None: the
        reference shows no face), faces assigned optimally (:func:`assign`)."""
        faces = self.descriptors(image)
        scored = [i for i, reference in enumerate(references) if reference is not None]
        chosen = assign([[float(np.linalg.norm(face - references[i])) for face in faces] for i in scored])
        characters: list[CharacterScore] = [CharacterScore("no_reference_face", None, None)] * len(references)
        for i, face in zip(scored, chosen):
            if face is None:
                characters[i] = CharacterScore("missing", None, None)
            else:
                distance = float(np.linalg.norm(faces[face] - references[i]))
                characters[i] = CharacterScore("match" if distance <= threshold else "drift", distance, face)
        found = [c for c in characters if c.distance is not None]
        if any(c.status == "drift" for c in characters):
            status = "drift"
        elif found:
            status = "match"
        else:
            status = "no_face" if scored else "no_reference_face"
        distance = max((c.distance for c in found), default=None)
        return CastScore(status, distance, threshold, len(faces), tuple(characters))


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
