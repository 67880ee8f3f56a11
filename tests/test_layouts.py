"""layouts.py: a request's layout read into a Layout, a sketch normalised, a pose drawn and placed."""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from errors import InputError
from layouts import COLOURS, JOINTS, LAYOUT_KINDS, LIMB_SHADE, Layout, Pose, draw_poses, read_layout

SIZE = (1024, 576)


def standing(x=0.5):
    """A standing figure centred at ``x`` (ears and eyes hidden)."""
    points = [(x, 0.15), (x, 0.25), (x - 0.05, 0.25), (x - 0.07, 0.4), (x - 0.08, 0.55), (x + 0.05, 0.25),
              (x + 0.07, 0.4), (x + 0.08, 0.55), (x - 0.03, 0.55), (x - 0.03, 0.75), (x - 0.03, 0.95),
              (x + 0.03, 0.55), (x + 0.03, 0.75), (x + 0.03, 0.95)]
    return [list(p) for p in points] + [None] * 4


def pose_json(*figures):
    return {"kind": "pose", "poses": [{"character": name, "keypoints": standing(x)} for name, x in figures]}


def sketch_png(lines="black", paper="white", mode="RGB", blank=False, fmt="PNG") -> bytes:
    image = Image.new(mode, (400, 225), paper)
    if not blank:
        draw = ImageDraw.Draw(image)
        draw.line((40, 200, 200, 30, 360, 200), fill=lines, width=4)
        draw.ellipse((170, 60, 230, 120), outline=lines, width=3)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(png: bytes, kind="png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(png).decode()}"


def read_sketch(png: bytes) -> np.ndarray:
    layout = read_layout({"kind": "sketch", "image": data_url(png)}, "layout", ["Mara"], size=SIZE)
    return np.asarray(Image.open(io.BytesIO(layout.sketch)).convert("L"))


def refused(raw, cast=("Mara", "Ivan"), **kw) -> InputError:
    with pytest.raises(InputError) as caught:
        read_layout(raw, "panels[2].layout", list(cast), size=SIZE, **kw)
    return caught.value


# --- Reading --------------------------------------------------------------------------------


def test_no_layout_is_none():
    assert read_layout(None, "layout", ["Mara"]) is None


def test_a_pose_is_read_in_the_panels_cast_order_with_the_kinds_defaults():
    layout = read_layout(pose_json(("ivan", 0.7), ("Mara", 0.3)), "layout", ["Mara", "Ivan"])
    assert [p.character for p in layout.poses] == ["Mara", "Ivan"]  # cast spelling and order
    assert (layout.strength, layout.factor, layout.adapter) == (
        1.0, 1.0, "TencentARC/t2i-adapter-openpose-sdxl-1.0")
    assert layout.poses[0].keypoints[14] is None and layout.poses[0].keypoints[0] == (0.3, 0.15)


def test_a_single_unnamed_character_is_posed_by_blank_name_or_index_0():
    for who in ("", 0):
        layout = read_layout({"kind": "pose", "poses": [{"character": who, "keypoints": standing()}]}, "l", [""])
        assert layout.poses[0].character == ""


def test_a_sketch_keeps_its_strength_and_takes_the_sketch_adapter():
    layout = read_layout({"kind": "sketch", "image": data_url(sketch_png()), "strength": 0.4}, "l", ["Mara"])
    assert (layout.strength, layout.factor, layout.adapter) == (
        0.4, LAYOUT_KINDS["sketch"].factor, "TencentARC/t2i-adapter-sketch-sdxl-1.0")


def test_an_uploaded_file_is_the_sketch_when_the_json_has_no_image():
    layout = read_layout({"kind": "sketch"}, "l", ["Mara"], upload=sketch_png(fmt="JPEG"), size=SIZE)
    assert layout.sketch.startswith(b"\x89PNG")


@pytest.mark.parametrize("raw, cast, field", [
    ("sketch", ("Mara",), "panels[2].layout"),
    ({"kind": "depth"}, ("Mara",), "panels[2].layout.kind"),
    ({"kind": "pose", "poses": [], "strength": 1.5}, ("Mara",), "panels[2].layout.strength"),
    ({"kind": "pose", "poses": []}, ("Mara",), "panels[2].layout.poses"),
    (pose_json(("Mara", 0.5)), (), "panels[2].layout.poses"),  # a panel without anyone
    (pose_json(("Olga", 0.5)), ("Mara",), "panels[2].layout.poses[0].character"),  # not in the panel
    (pose_json(("Mara", 0.3), ("mara", 0.6)), ("Mara", "Ivan"), "panels[2].layout.poses[1].character"),
    (pose_json(("Mara", 0.3)), ("Mara", "Ivan"), "panels[2].layout.poses"),  # Ivan not posed
    ({"kind": "sketch"}, ("Mara",), "panels[2].layout.image"),
    ({"kind": "sketch", "image": "http://example.com/a.png"}, ("Mara",), "panels[2].layout.image"),
    ({"kind": "sketch", "image": "data:image/png;base64,@@@"}, ("Mara",), "panels[2].layout.image"),
])
def test_bad_layouts_name_the_field(raw, cast, field):
    assert refused(raw, cast).field == field


def keypoints_with(index, value, count=len(JOINTS)):
    points = standing() + [[0.5, 0.5]] * (count - len(JOINTS))
    points[index] = value
    return {"kind": "pose", "poses": [{"character": "Mara", "keypoints": points}]}


@pytest.mark.parametrize("raw, field", [
    (keypoints_with(5, [1.2, 0.3]), "panels[2].layout.poses[0].keypoints[5]"),  # out of the panel
    (keypoints_with(5, [0.2, -0.01]), "panels[2].layout.poses[0].keypoints[5]"),
    (keypoints_with(5, [0.2]), "panels[2].layout.poses[0].keypoints[5]"),
    (keypoints_with(5, ["a", 0.2]), "panels[2].layout.poses[0].keypoints[5]"),
    (keypoints_with(5, [0.2, 0.3], count=19), "panels[2].layout.poses[0].keypoints[18]"),  # an unknown joint
    ({"kind": "pose", "poses": [{"character": "Mara", "keypoints": standing()[:17]}]},
     "panels[2].layout.poses[0].keypoints"),
    ({"kind": "pose", "poses": [{"character": "Mara", "keypoints": [[0.5, 0.5]] + [None] * 17}]},
     "panels[2].layout.poses[0].keypoints"),  # one joint: nothing to pose
])
def test_bad_keypoints_name_the_joint(raw, field):
    error = refused(raw, ("Mara",))
    assert error.field == field


# --- Sketches -------------------------------------------------------------------------------


def test_dark_lines_on_white_become_white_lines_on_black():
    pixels = read_sketch(sketch_png("black", "white"))
    assert np.median(pixels) == 0 and pixels.max() == 255


def test_white_lines_on_black_stay_so_and_give_the_same_sketch():
    assert np.array_equal(read_sketch(sketch_png("white", "black")), read_sketch(sketch_png("black", "white")))


def test_a_canvas_of_lines_on_transparency_reads_as_lines_on_paper():
    transparent = sketch_png(lines=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    assert np.array_equal(read_sketch(transparent), read_sketch(sketch_png("black", "white")))


def test_a_scan_on_grey_paper_loses_the_paper():
    pixels = read_sketch(sketch_png((40, 40, 40), (200, 200, 200), fmt="JPEG"))
    assert np.median(pixels) < 8 and pixels.max() == 255


def test_a_sketch_is_fitted_to_the_panels_aspect_not_stretched():
    pixels = read_sketch(sketch_png())  # 16:9 into 16:9
    assert pixels.shape == (576, 1024)
    square = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(square).line((0, 150, 300, 150), fill="black", width=6)
    buffer = io.BytesIO()
    square.save(buffer, format="PNG")
    fitted = read_sketch(buffer.getvalue())
    assert fitted[:, :200].max() == 0 and fitted[:, 500].max() == 255  # letterboxed at the sides


@pytest.mark.parametrize("png, words", [
    (sketch_png(blank=True), "blank"),
    (sketch_png(blank=True, paper="black"), "blank"),
    (b"not an image", "not a readable"),
    (b"GIF89a" + b"\0" * 40, "not a readable"),
])
def test_unreadable_or_blank_sketches_are_refused(png, words):
    error = refused({"kind": "sketch", "image": data_url(png)}, ("Mara",))
    assert error.field == "panels[2].layout.image" and words in error.message


def test_a_huge_sketch_is_refused(monkeypatch):
    import layouts
    import uploaded_images

    monkeypatch.setattr(uploaded_images, "MAX_IMAGE_PIXELS", 100 * 100)
    error = refused({"kind": "sketch", "image": data_url(sketch_png())}, ("Mara",))
    assert error.field == "panels[2].layout.image" and "too large" in error.message
    monkeypatch.setattr(layouts, "MAX_SKETCH_BYTES", 100)
    assert "MB" in refused({"kind": "sketch", "image": data_url(sketch_png())}, ("Mara",)).message
    assert "larger than" in refused({"kind": "sketch"}, ("Mara",), upload=sketch_png()).message


# --- Poses ------------------------------------------------------------------------------------


def test_a_pose_is_drawn_as_the_openpose_colour_map():
    pose = Pose("", tuple(tuple(p) if p else None for p in standing()))
    image = np.asarray(draw_poses([pose], 512, 512))
    x, y = int(0.5 * 512), int(0.15 * 512)
    assert tuple(image[y, x]) == COLOURS[0]  # the nose's disc, full red
    # The neck-to-right-hip limb (colour 6), halfway along, at 60%.
    mid = ((0.5 + 0.47) / 2 * 512, (0.25 + 0.55) / 2 * 512)
    assert tuple(image[int(mid[1]), int(mid[0])]) == tuple(int(c * LIMB_SHADE) for c in COLOURS[6])
    assert tuple(image[5, 5]) == (0, 0, 0)  # on black


def test_skeletons_place_the_cast_left_to_right_and_give_each_its_region():
    layout = read_layout(pose_json(("Mara", 0.75), ("Ivan", 0.25)), "l", ["Mara", "Ivan"])
    assert layout.left_to_right(["Mara", "Ivan"]) == ("Ivan", "Mara")
    ivan, mara = layout.regions(["Ivan", "Mara"])
    assert ivan[0] < 0.25 < ivan[2] < mara[0] < 0.75 < mara[2]
    assert ivan[1] < 0.15 and ivan[3] == 1.0  # the head and the feet are inside


def test_a_sketch_or_a_single_figure_keeps_the_plain_lock():
    sketch = read_layout({"kind": "sketch", "image": data_url(sketch_png())}, "l", ["Mara", "Ivan"])
    assert sketch.regions(["Mara", "Ivan"]) is None and sketch.left_to_right(["Mara", "Ivan"]) == ("Mara", "Ivan")
    single = read_layout(pose_json(("Mara", 0.8)), "l", ["Mara"])
    assert single.regions(["Mara"]) is None


def test_a_stored_layout_reads_back_equal():
    layout = read_layout(pose_json(("Mara", 0.75), ("Ivan", 0.25)), "l", ["Mara", "Ivan"])
    assert Layout.from_json(layout.to_json()) == layout


def test_the_adapter_reads_sdxls_own_sizes_as_they_are_and_pads_the_tiny_ones():
    from config import ASPECTS
    from t2i_adapter import conditioning_size

    for width, height in ASPECTS.values():  # every size the studio draws on SDXL: multiples of 16
        assert conditioning_size(width, height, 8, 16) == (width, height)
    assert conditioning_size(88, 48, 8, 16) == (96, 48)  # 11x6 latents: the UNet's first down block makes 6x3
