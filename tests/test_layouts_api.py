"""A panel's layout through the API: read from create, redraw and the layout route, stored with
the panel and its takes, served, and drawn on the tiny models end to end."""

import io
import json
import zipfile

import pytest
from PIL import Image

from exporting import read_png_parameters
from helpers import build_app, post_board, wait_for
from tests.test_layouts import data_url, sketch_png, standing

CAST = [{"name": "Mara", "traits": "red hair"}, {"name": "Ivan", "traits": "a beard"}]


def sketch(**kw):
    return {"kind": "sketch", "image": data_url(sketch_png()), **kw}


def pose(*figures, **kw):
    return {"kind": "pose", "poses": [{"character": name, "keypoints": standing(x)} for name, x in figures], **kw}


def panels(*layouts, cast=("Mara", "Ivan")):
    return [{"caption": f"Scene {i}.", "cast": list(cast), **({"layout": layout} if layout is not None else {})}
            for i, layout in enumerate(layouts, start=1)]


def create(client, *layouts, **fields):
    return post_board(client, story="", characters=CAST, panels=panels(*layouts), **fields)


def drawn(client, *layouts):
    answer = create(client, *layouts)
    assert answer.status_code == 202, answer.get_json()
    return wait_for(client, answer.get_json()["id"])


def test_a_board_keeps_each_panels_layout(client):
    board = drawn(client, sketch(strength=0.5), pose(("Ivan", 0.2), ("Mara", 0.7)), None)
    first, second, third = (frame["layout"] for frame in board["frames"])
    assert (first["kind"], first["strength"], first["factor"], first["adapter"]) == (
        "sketch", 0.5, 0.9, "TencentARC/t2i-adapter-sketch-sdxl-1.0")
    assert [p["character"] for p in second["poses"]] == ["Mara", "Ivan"] and second["strength"] == 1.0
    assert third is None
    png = client.get(second["image"])
    assert png.status_code == 200 and Image.open(io.BytesIO(png.data)).size == (1024, 585)  # 1344x768, the 16:9 panel
    sketch_image = Image.open(io.BytesIO(client.get(first["image"]).data)).convert("L")
    assert sketch_image.getpixel((0, 0)) == 0  # white lines on black, as the sketch adapter reads them


def test_a_multipart_form_sends_a_sketch_as_a_file(client):
    form = {"story": "", "characters": json.dumps(CAST), "seed": "7",
            "panels": json.dumps(panels({"kind": "sketch"}, None)),
            "layout_0": (io.BytesIO(sketch_png(fmt="JPEG")), "thumb.jpg")}
    answer = client.post("/api/storyboards", data=form, content_type="multipart/form-data")
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["frames"][0]["layout"]["kind"] == "sketch"


@pytest.mark.parametrize("layouts, field", [
    ((pose(("Mara", 0.2), ("Olga", 0.7)),), "panels[0].layout.poses[1].character"),
    ((None, pose(("Mara", 0.2))), "panels[1].layout.poses"),  # Ivan is in the panel too
    ((sketch(image=data_url(sketch_png(blank=True))),), "panels[0].layout.image"),
    ((sketch(image="data:image/png;base64,AAAA"),), "panels[0].layout.image"),
    ((pose(("Mara", 0.2), ("Ivan", 1.5)),), "panels[0].layout.poses[1].keypoints[0]"),
    (({"kind": "depth"},), "panels[0].layout.kind"),
])
def test_a_bad_layout_is_refused_naming_the_field_and_nothing_is_stored(client, app, layouts, field):
    answer = create(client, *layouts)
    assert answer.status_code == 400 and answer.get_json()["field"] == field
    assert client.get("/api/storyboards").get_json()["storyboards"] == []
    from studio import studio_of

    assert not list(studio_of(app).store.boards_dir.iterdir())  # no folder, no layout file left


def test_a_layout_file_without_its_panel_is_refused(client):
    form = {"story": "", "characters": json.dumps(CAST), "panels": json.dumps(panels(None)),
            "layout_3": (io.BytesIO(sketch_png()), "thumb.png")}
    answer = client.post("/api/storyboards", data=form, content_type="multipart/form-data")
    assert answer.status_code == 400 and answer.get_json()["field"] == "layout_3"


def test_a_redraw_takes_a_new_layout_and_the_old_take_keeps_its_own(client):
    board = drawn(client, sketch())
    frame = board["frames"][0]
    answer = client.post(frame["links"]["regenerate"], json={"layout": pose(("Mara", 0.3), ("Ivan", 0.6))})
    assert answer.status_code == 202
    frame = wait_for(client, board["id"])["frames"][0]
    first, second = frame["takes"]
    assert first["layout"]["kind"] == "sketch" and second["layout"]["kind"] == "pose"
    assert frame["layout"]["kind"] == "pose"
    assert client.get(first["layout"]["image"]).status_code == 200  # the sketch stays for the take drawn with it
    assert client.get(second["layout"]["image"]).data == client.get(frame["layout"]["image"]).data


def test_a_redraw_without_layout_keeps_it_and_null_removes_it(client):
    board = drawn(client, sketch())
    regenerate = board["frames"][0]["links"]["regenerate"]
    client.post(regenerate, json={"seed": 3})
    assert wait_for(client, board["id"])["frames"][0]["layout"]["kind"] == "sketch"
    client.post(regenerate, json={"layout": None})
    frame = wait_for(client, board["id"])["frames"][0]
    assert frame["layout"] is None and frame["takes"][-1]["layout"] is None
    assert frame["takes"][0]["layout"]["kind"] == "sketch"


def test_a_kept_pose_must_still_place_the_cast_it_is_redrawn_with(client):
    board = drawn(client, pose(("Mara", 0.3), ("Ivan", 0.6)))
    answer = client.post(board["frames"][0]["links"]["regenerate"], json={"cast": ["Mara"]})
    assert answer.status_code == 400 and answer.get_json()["field"] == "layout"


def test_a_bad_redraw_loses_nothing_already_drawn(client):
    board = drawn(client, sketch())
    before = client.get(f"/api/storyboards/{board['id']}").get_json()["frames"][0]
    answer = client.post(before["links"]["regenerate"], json={"layout": pose(("Olga", 0.3))})
    assert answer.status_code == 400 and answer.get_json()["field"] == "layout.poses[0].character"
    after = client.get(f"/api/storyboards/{board['id']}").get_json()["frames"][0]
    assert after == before
    assert client.get(after["layout"]["image"]).status_code == 200 and client.get(after["image_url"]).status_code == 200


def test_the_edit_route_sets_and_removes_a_layout_without_drawing(client, app):
    from studio import studio_of

    board = drawn(client, None)
    frame = board["frames"][0]
    answer = client.patch(frame["links"]["self"], json={"layout": sketch()})
    assert answer.status_code == 200
    shown = answer.get_json()["frames"][0]
    assert shown["layout"]["kind"] == "sketch" and shown["takes"] == frame["takes"]  # nothing drawn
    folder = studio_of(app).store.boards_dir / board["id"]
    assert len(list(folder.glob("layout-*.png"))) == 1
    answer = client.patch(frame["links"]["self"], json={"layout": None, "dialogue": "Hello."})
    assert answer.get_json()["frames"][0]["dialogue"] == "Hello."  # with the other edits, in one go
    assert answer.get_json()["frames"][0]["layout"] is None
    assert not list(folder.glob("layout-*.png"))  # no take was drawn with it: its file goes
    assert client.get(shown["layout"]["image"]).status_code == 404


@pytest.mark.parametrize("layout, field", [({"kind": "pose", "poses": []}, "layout.poses"),
                                           ({"kind": "sketch"}, "layout.image")])
def test_the_edit_route_names_what_is_wrong_and_changes_nothing(client, layout, field):
    board = drawn(client, sketch())
    frame = board["frames"][0]
    answer = client.patch(frame["links"]["self"], json={"layout": layout, "dialogue": "Hello."})
    assert answer.status_code == 400 and answer.get_json()["field"] == field
    assert client.get(f"/api/storyboards/{board['id']}").get_json()["frames"][0] == frame


def test_a_pruned_take_takes_its_layout_file_along_only_when_unused(make_app):
    from studio import studio_of

    app = make_app(takes_per_panel=1)
    client = app.test_client()
    board = drawn(client, sketch())
    regenerate = board["frames"][0]["links"]["regenerate"]
    folder = studio_of(app).store.boards_dir / board["id"]
    client.post(regenerate, json={"layout": pose(("Mara", 0.3), ("Ivan", 0.6))})
    wait_for(client, board["id"])
    assert len(list(folder.glob("layout-*.png"))) == 1  # the sketch went with its only take


# --- On the tiny models, end to end ---------------------------------------------------------


@pytest.fixture
def tiny_client(tiny_settings_factory, tmp_path):
    """The studio on the tiny models, loaded as `make demo` loads them."""
    from helpers import REAL_MODEL
    from studio import studio_of

    app = build_app(tmp_path, load_generator=REAL_MODEL, hf_cache_dir=tiny_settings_factory().cache_dir)
    yield app.test_client()
    studio_of(app).backend.stop()


def test_a_sketched_and_a_posed_panel_are_drawn_and_exported_with_their_layouts(tiny_client):
    board = drawn(tiny_client, sketch(), pose(("Ivan", 0.75), ("Mara", 0.25)))
    assert [f["status"] for f in board["frames"]] == ["done", "done"]
    sketched, posed = board["frames"]
    assert posed["prompt"].startswith("left: red hair; right: a beard")  # Mara stands on the left
    ran = posed["takes"][0]["settings"]["layout"]
    assert (ran["kind"], ran["adapter"], ran["adapter_steps"]) == (
        "pose", "TencentARC/t2i-adapter-openpose-sdxl-1.0", posed["takes"][0]["settings"]["steps"])
    meta = read_png_parameters(tiny_client.get(sketched["image_url"]).data)
    assert (meta["layout"]["kind"], meta["layout"]["strength"], meta["layout"]["adapter"]) == (
        "sketch", 0.9, "TencentARC/t2i-adapter-sketch-sdxl-1.0")
    assert "file" not in meta["layout"]
    parameters = Image.open(io.BytesIO(tiny_client.get(sketched["image_url"]).data)).text["parameters"]
    assert "T2I-Adapter: TencentARC/t2i-adapter-sketch-sdxl-1.0, Layout: sketch, Weight: 0.9" in parameters


def test_the_zip_holds_each_panels_layout_and_the_pdf_its_thumbnail(client):
    board = drawn(client, sketch(), None, pose(("Mara", 0.3), ("Ivan", 0.6)))
    archive = zipfile.ZipFile(io.BytesIO(client.get(board["export"]["zip"]).data))
    assert {"layout-01.png", "layout-03.png"} <= set(archive.namelist()) and "layout-02.png" not in archive.namelist()
    assert archive.read("layout-03.png") == client.get(board["frames"][2]["layout"]["image"]).data
    frames = json.loads(archive.read("storyboard.json"))["frames"]
    assert [f["layout"] and f["layout"]["file"] for f in frames] == ["layout-01.png", None, "layout-03.png"]
    with_layouts = client.get(board["export"]["pdf"]).data
    client.patch(board["frames"][0]["links"]["self"], json={"layout": None})
    client.patch(board["frames"][2]["links"]["self"], json={"layout": None})
    without = client.get(board["export"]["pdf"]).data
    assert with_layouts.count(b"/Subtype /Image") == without.count(b"/Subtype /Image") + 2


# --- A job's spec carries the layout (a Redis worker's payload) ---------------------------


def layout_spec():
    """test_drawing's cast spec with Ilya and Mara posed in panel 1 and Ilya sketched in panel 2."""
    from dataclasses import replace

    from layouts import read_layout
    from test_drawing import cast_spec

    posed = read_layout(pose(("Ilya", 0.2), ("Mara", 0.7)), "l", ["Mara", "Ilya"])
    drawn_sketch = read_layout(sketch(), "l", ["Ilya"])
    spec = cast_spec()
    first, second, third = spec.panels
    return replace(spec, panels=(
        replace(first, layout={**posed.to_json(), "file": "layout-1-ab.png"}),
        replace(second, layout={**drawn_sketch.to_json(), "file": "layout-2-cd.png"}, layout_png=drawn_sketch.sketch),
        third))


def test_a_spec_with_layouts_survives_json_unchanged():
    from drawing import JobSpec

    spec = layout_spec()
    assert JobSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


@pytest.mark.parametrize("change, field", [
    (lambda p: p[0]["layout"]["poses"][0].update(character="Olga"), "panels[0].layout.poses[0].character"),
    (lambda p: p[1].update(layout_png=None), "panels[1].layout.image"),
    (lambda p: p[0]["layout"].update(strength=3), "panels[0].layout.strength"),
])
def test_a_payload_with_a_bad_layout_is_refused_naming_the_field(change, field):
    from drawing import JobSpec
    from errors import InputError

    payload = layout_spec().to_json()
    change(payload["panels"])
    with pytest.raises(InputError) as caught:
        JobSpec.from_json(payload)
    assert caught.value.field == field


def test_a_posed_panel_names_its_cast_left_to_right_with_each_ones_region():
    from drawing import draw
    from fakes import FakeGenerator

    generator, sink = FakeGenerator(), Recorder()
    draw(generator, layout_spec(), sink)
    posed = generator.requests[0].panels[0]
    assert posed.cast == (1, 0)  # Ilya (place 2) stands left of Mara (place 1)
    assert posed.regions[0][2] < 0.5 < posed.regions[1][0]
    assert sink.prompts_seen[1].prompt.startswith("left: old man")


class Recorder:
    def __init__(self):
        self.prompts_seen = {}

    def prompts(self, prompts):
        self.prompts_seen.update(prompts)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
