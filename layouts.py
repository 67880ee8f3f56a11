"""A panel's layout: a sketch of its composition or a pose per character, as one typed value.

:func:`read_layout` reads a request's ``layout`` (JSON, with a sketch as a data URL or an
uploaded file) into a :class:`Layout`, or raises ``errors.InputError`` naming the field
(``panels[2].layout.poses[0].keypoints[5]``). A layout draws the picture the T2I-Adapter
reads (:meth:`Layout.image`): a sketch as white lines on black (the sketch adapter's input,
whatever way round it was drawn), a pose as the OpenPose colour map of its skeletons. With a
pose per character, :meth:`Layout.regions` says where each one stands, left to right: the
identity lock's masks and the prompt's places follow them.

Pure: Pillow only, no torch, nothing done on import.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from errors import InputError
from uploaded_images import base64_bytes, open_image

SKETCH, POSE = "sketch", "pose"
KINDS = (SKETCH, POSE)


@dataclass(frozen=True)
class LayoutKind:
    """How one kind of layout is drawn: the T2I-Adapter that reads it, the strength it is
    followed at by default (``adapter_conditioning_scale``), and the share of the steps the
    adapter steers (``adapter_conditioning_factor``): the early steps set the composition."""

    adapter: str  # hub id (TencentARC, Apache-2.0)
    strength: float
    factor: float


# Near the model cards' examples: a rough sketch is followed a little loosely and not to the
# last steps (its lines are not the picture's edges); a pose as drawn, all the way.
LAYOUT_KINDS = {
    SKETCH: LayoutKind("TencentARC/t2i-adapter-sketch-sdxl-1.0", 0.9, 0.9),
    POSE: LayoutKind("TencentARC/t2i-adapter-openpose-sdxl-1.0", 1.0, 1.0),
}

# The 18 OpenPose body keypoints (the COCO order the openpose annotator uses).
JOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
          "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# The limbs the openpose annotator draws (joint pairs, 0-based), each in its colour below; the
# keypoints take the colours in joint order. The two ear-shoulder pairs of OpenPose's list are
# not drawn, as in ControlNet's draw_bodypose.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
LIMB_SHADE = 0.6  # limbs are drawn at 60% of their colour, keypoints at full
STICK_WIDTH = 4  # the annotator's limb half-width and keypoint radius at 512 pixels

MAX_SKETCH_BYTES = 8 * 2**20
# A sketch with less ink than this share of its pixels is blank (a cleared canvas, an empty scan).
MIN_INK = 0.0005
INK_LEVEL = 64  # a pixel this bright above the paper is a line
REGION_PAD = 0.08  # a skeleton's region reaches this share of the panel beyond its joints


@dataclass(frozen=True)
class Pose:
    """One character's skeleton: 18 keypoints (JOINTS), each (x, y) in 0..1 of the panel's
    width and height, or None where the joint is not shown."""

    character: str  # the cast name ("" for the one unnamed character)
    keypoints: tuple[tuple[float, float] | None, ...]

    def box(self) -> tuple[float, float, float, float]:
        """Where the skeleton stands, padded: (left, top, right, bottom) in 0..1."""
        xs = [p[0] for p in self.keypoints if p is not None]
        ys = [p[1] for p in self.keypoints if p is not None]
        return (max(0.0, min(xs) - REGION_PAD), max(0.0, min(ys) - REGION_PAD),
                min(1.0, max(xs) + REGION_PAD), min(1.0, max(ys) + REGION_PAD))

    def to_json(self) -> dict:
        return {"character": self.character, "keypoints": [list(p) if p else None for p in self.keypoints]}


@dataclass(frozen=True)
class Layout:
    kind: str  # SKETCH | POSE
    strength: float  # adapter_conditioning_scale, 0..1
    poses: tuple[Pose, ...] = ()  # a pose: one per character present, in the panel's cast order
    sketch: bytes | None = field(default=None, repr=False)  # a sketch: PNG, white lines on black

    @property
    def factor(self) -> float:
        return LAYOUT_KINDS[self.kind].factor

    @property
    def adapter(self) -> str:
        return LAYOUT_KINDS[self.kind].adapter

    def image(self, width: int, height: int):
        """The picture the adapter reads, RGB at ``width`` x ``height``."""
        from PIL import Image

        if self.kind == SKETCH:
            with Image.open(io.BytesIO(self.sketch)) as sketch:
                return sketch.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        return draw_poses(self.poses, width, height)

    def png(self, width: int, height: int) -> bytes:
        """The layout as stored and shown (the sketch as it is, a pose drawn at the size)."""
        if self.kind == SKETCH:
            return self.sketch
        return _png(self.image(width, height))

    def left_to_right(self, cast: Sequence[str]) -> tuple[str, ...]:
        """``cast`` (names) in the order its skeletons stand, left to right (by the middle of
        each one's region); ``cast`` as it is for a sketch."""
        if self.kind != POSE:
            return tuple(cast)
        boxes = {pose.character: pose.box() for pose in self.poses}
        return tuple(sorted(cast, key=lambda name: (boxes[name][0] + boxes[name][2]) / 2))

    def regions(self, cast: Sequence[str]) -> tuple[tuple[float, float, float, float], ...] | None:
        """Each character's region (0..1 boxes) in ``cast``'s order; None for a sketch or a
        panel of one (the identity lock holds one character over the whole picture)."""
        if self.kind != POSE or len(cast) < 2:
            return None
        boxes = {pose.character: pose.box() for pose in self.poses}
        return tuple(boxes[name] for name in cast)

    def to_json(self) -> dict:
        """What the store keeps beside the layout's file (the sketch is that file)."""
        data = {"kind": self.kind, "strength": self.strength}
        if self.kind == POSE:
            data["poses"] = [pose.to_json() for pose in self.poses]
        return data

    def describe(self) -> dict:
        """What drew with it, for a panel's metadata and the API."""
        return {**self.to_json(), "factor": self.factor, "adapter": self.adapter}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], sketch: bytes | None = None) -> "Layout":
        """Read what :meth:`to_json` wrote (a stored layout: already checked when it came)."""
        poses = tuple(Pose(str(p["character"]), tuple(tuple(k) if k else None for k in p["keypoints"]))
                      for p in data.get("poses") or ())
        return cls(str(data["kind"]), float(data["strength"]), poses, sketch)


# --- Reading a request's layout --------------------------------------------------------------


def read_layout(raw: Any, field: str, cast: Sequence[str], upload: bytes | None = None,
                size: tuple[int, int] = (1024, 1024)) -> Layout | None:
    """A panel's layout from a request (None: none). ``cast``: the names present in the
    panel; ``upload``: a multipart form's file for it (``layout_<panel index>``), used when a
    sketch has no ``image``; ``size``: the panel's aspect, to which a sketch is fitted."""
    if raw is None:
        if upload is not None:
            raise InputError(field, f"{field} is missing: an uploaded layout image needs "
                                    '{"kind": "sketch"} in the panel.')
        return None
    if not isinstance(raw, dict):
        raise InputError(field, f'{field} must be an object: {{"kind": "sketch", "image": ...}} or '
                                f'{{"kind": "pose", "poses": [...]}}, or null.')
    kind = raw.get("kind")
    if kind not in KINDS:
        raise InputError(f"{field}.kind", f"{field}.kind must be one of: {', '.join(KINDS)}.")
    strength = _strength(raw.get("strength"), f"{field}.strength", LAYOUT_KINDS[kind].strength)
    if kind == SKETCH:
        image = raw.get("image")
        if image is None and upload is None:
            raise InputError(f"{field}.image", f"{field}.image needs the sketch: a data URL (PNG, JPEG or WebP) "
                                               "or a file in the form.")
        if isinstance(image, str) and len(image) > MAX_SKETCH_BYTES * 4 // 3 + 100:  # refused before decoding
            raise InputError(f"{field}.image", f"The sketch is larger than {MAX_SKETCH_BYTES // 2**20} MB.")
        data = upload if image is None else base64_bytes(image, f"{field}.image", data_url=True)
        return Layout(SKETCH, strength, sketch=normalise_sketch(data, f"{field}.image", size))
    return Layout(POSE, strength, poses=_poses(raw.get("poses"), f"{field}.poses", cast))


def checked_layout(data: Any, field: str, cast: Sequence[str], sketch: bytes | None) -> Layout:
    """A stored layout that travelled (a job's spec): held to the rules a request's is, its
    sketch a PNG; raises InputError naming the field."""
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise InputError(f"{field}.kind", f"one of {', '.join(KINDS)} expected")
    kind = data["kind"]
    strength = _strength(data.get("strength"), f"{field}.strength", LAYOUT_KINDS[kind].strength)
    if kind == POSE:
        return Layout(POSE, strength, poses=_poses(data.get("poses"), f"{field}.poses", cast))
    if sketch is None or not sketch.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InputError(f"{field}.image", "the sketch's PNG expected")
    return Layout(SKETCH, strength, sketch=sketch)


def _strength(value: Any, field: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(field, f"{field} must be a number from 0 to 1.")
    return float(value)


def normalise_sketch(data: bytes, field: str, size: tuple[int, int]) -> bytes:
    """A drawn, scanned or photographed sketch as the sketch adapter takes one: white lines on
    black, fitted (not stretched, not cut) to the panel's aspect ``size``, as PNG. Dark lines
    on light paper are turned round; the paper's own shade goes. A sketch without lines is refused."""
    from PIL import Image, ImageChops, ImageOps

    if len(data) > MAX_SKETCH_BYTES:
        raise InputError(field, f"The sketch is larger than {MAX_SKETCH_BYTES // 2**20} MB.")
    image = open_image(data, field, "The sketch")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # A canvas's lines on a transparent ground: the ground is paper.
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        grey = Image.alpha_composite(paper, rgba).convert("L")
    else:
        grey = image.convert("L")
    histogram = grey.histogram()
    paper = _median(histogram)
    if paper > 127:  # dark lines on light paper
        grey, paper = ImageOps.invert(grey), 255 - paper
    lines = ImageChops.subtract(grey, Image.new("L", grey.size, paper))  # the paper's shade goes
    ink = sum(lines.point(lambda v: 255 if v >= INK_LEVEL else 0).histogram()[255:])
    if ink < MIN_INK * lines.width * lines.height:
        raise InputError(field, "The sketch is blank: draw the composition's lines (or upload a drawing).")
    lines = ImageOps.autocontrast(lines)
    width, height = _fit(size, 1024)
    fitted = ImageOps.contain(lines, (width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (width, height), 0)
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return _png(canvas)


def _median(histogram: list[int]) -> int:
    half, seen = sum(histogram) / 2, 0
    for value, count in enumerate(histogram):
        seen += count
        if seen >= half:
            return value
    return 255


def _fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is ``longest``."""
    width, height = size
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _poses(raw: Any, field: str, cast: Sequence[str]) -> tuple[Pose, ...]:
    """One skeleton per character present: a name of the panel's cast (any case; "" or 0
    for a single unnamed character, an index into the panel's cast in general)."""
    if not cast:
        raise InputError(field, f"{field}: a pose places the panel's characters, and this panel has none.")
    if not isinstance(raw, list) or not raw:
        raise InputError(field, f'{field} must be a list of {{"character", "keypoints"}}, one per character '
                                "in the panel.")
    if len(raw) > len(cast):
        raise InputError(field, f"{field} has {len(raw)} skeletons for {len(cast)} character(s) in the panel.")
    known = {name.casefold(): name for name in cast}
    poses: dict[str, Pose] = {}
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise InputError(where, f'{where} must be an object: {{"character": "...", "keypoints": [...]}}.')
        who = item.get("character", "")
        if isinstance(who, int) and not isinstance(who, bool) and 0 <= who < len(cast):
            name = cast[who]
        elif isinstance(who, str) and " ".join(who.split()).casefold() in known:
            name = known[" ".join(who.split()).casefold()]
        else:
            allowed = ", ".join(repr(n) for n in cast)
            raise InputError(f"{where}.character", f"{where}.character names {str(who)[:60]!r}, who is not in "
                                                   f"this panel ({allowed}).")
        if name in poses:
            raise InputError(f"{where}.character", f"{where}.character: {name!r} has two skeletons.")
        poses[name] = Pose(name, _keypoints(item.get("keypoints"), f"{where}.keypoints"))
    missing = [name for name in cast if name not in poses]
    if missing:
        raise InputError(field, f"{field} has no skeleton for {', '.join(repr(n) for n in missing)}: "
                                "pose every character in the panel.")
    return tuple(poses[name] for name in cast)


def _keypoints(raw: Any, field: str) -> tuple[tuple[float, float] | None, ...]:
    if not isinstance(raw, list):
        raise InputError(field, f"{field} must be a list of {len(JOINTS)} [x, y] pairs or nulls "
                                f"({', '.join(JOINTS)}).")
    if len(raw) > len(JOINTS):
        raise InputError(f"{field}[{len(JOINTS)}]", f"{field} has {len(raw)} joints; OpenPose knows "
                                                    f"{len(JOINTS)} ({', '.join(JOINTS)}).")
    if len(raw) < len(JOINTS):
        raise InputError(field, f"{field} has {len(raw)} joints; give all {len(JOINTS)} (null for a hidden one).")
    points = []
    for j, point in enumerate(raw):
        where = f"{field}[{j}]"
        if point is None:
            points.append(None)
            continue
        if (not isinstance(point, list) or len(point) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in point)):
            raise InputError(where, f"{where} ({JOINTS[j]}) must be [x, y] or null.")
        x, y = float(point[0]), float(point[1])
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise InputError(where, f"{where} ({JOINTS[j]}) is outside the panel: x and y go from 0 to 1.")
        points.append((x, y))
    if sum(p is not None for p in points) < 2:
        raise InputError(field, f"{field} shows fewer than two joints: nothing to pose.")
    return tuple(points)


# --- Drawing a pose ---------------------------------------------------------------------------


def draw_poses(poses: Sequence[Pose], width: int, height: int):
    """The skeletons as the openpose annotator draws them: on black, each limb a filled
    ellipse between its joints in its colour at 60%, then each joint a disc in its colour."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    stick = max(1.0, STICK_WIDTH * min(width, height) / 512)

    def at(point):
        return point[0] * width, point[1] * height

    for pose in poses:
        for (a, b), colour in zip(LIMBS, COLOURS):
            if pose.keypoints[a] is None or pose.keypoints[b] is None:
                continue
            shade = tuple(int(c * LIMB_SHADE) for c in colour)
            draw.polygon(_ellipse(at(pose.keypoints[a]), at(pose.keypoints[b]), stick), fill=shade)
    for pose in poses:
        for point, colour in zip(pose.keypoints, COLOURS):
            if point is not None:
                x, y = at(point)
                draw.ellipse((x - stick, y - stick, x + stick, y + stick), fill=colour)
    return canvas


def _ellipse(a: tuple[float, float], b: tuple[float, float], half_width: float, sides: int = 36) -> list:
    """The polygon of an ellipse from ``a`` to ``b`` (its long axis) ``half_width`` wide."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_length = math.hypot(x2 - x1, y2 - y1) / 2
    angle = math.atan2(y2 - y1, x2 - x1)
    cos, sin = math.cos(angle), math.sin(angle)
    points = []
    for k in range(sides):
        t = 2 * math.pi * k / sides
        u, v = half_length * math.cos(t), half_width * math.sin(t)
        points.append((cx + u * cos - v * sin, cy + u * sin + v * cos))
    return points


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

