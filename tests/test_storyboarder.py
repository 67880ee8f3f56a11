"""Storyboarder projects (storyboarder.py): the export checked against the format of
Storyboarder 3.0.0's source, its import, and the projects refused."""

import io
import json
import zipfile

import jsonschema
import pytest

from cut import Cut
from errors import InputError
from helpers import png_bytes, post_board, wait_for
from storyboarder import image_size, project_zip, read_project

# What Storyboarder 3.0.0 reads and writes (src/js/main.js, window/main-window.js, models/board.js):
# the keys it sets on every new project and board, with the types it gives them.
BOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "url", "newShot", "lastEdited", "layers", "number", "shot", "time", "duration"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[0-9A-Z]{5}$"},
        "url": {"type": "string", "pattern": r"^board-[0-9]+-[0-9A-Z]{5}\.png$"},
        "newShot": {"type": "boolean"},
        "lastEdited": {"type": "integer"},
        "layers": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["url"],
            "properties": {"url": {"type": "string"}, "opacity": {"type": "number"}}},
            "propertyNames": {"enum": ["shot-generator", "reference", "fill", "tone", "pencil", "ink", "notes"]}},
        "number": {"type": "integer", "minimum": 1},
        "shot": {"type": "string"},
        "time": {"type": "number", "minimum": 0},
        "duration": {"type": "number", "exclusiveMinimum": 0},
        "dialogue": {"type": "string"}, "action": {"type": "string"}, "notes": {"type": "string"},
    },
}
PROJECT_SCHEMA = {
    "type": "object",
    "required": ["version", "aspectRatio", "fps", "defaultBoardTiming", "boards"],
    "properties": {"version": {"type": "string"}, "aspectRatio": {"type": "number", "exclusiveMinimum": 0},
                   "fps": {"type": "number", "exclusiveMinimum": 0},
                   "defaultBoardTiming": {"type": "number", "exclusiveMinimum": 0},
                   "boards": {"type": "array", "items": BOARD_SCHEMA}},
}

BOARD = {"id": "b1", "title": "The map", "fps": 24.0, "settings": {"aspect": "16:9"}, "frames": [
    {"id": 1, "caption": "A girl finds a map.", "duration": 1.5, "seed": 11, "prompt": "girl, map", "shot": "wide"},
    {"id": 2, "caption": "Она поднимается на холм.", "dialogue": "GIRL: Look!", "duration": 2, "seed": 12}]}


def exported(board=BOARD, images=None):
    buffer = io.BytesIO()
    project_zip(Cut.from_board(board), images if images is not None else {1: png_bytes((1344, 768)), 2: png_bytes()},
                buffer)
    return buffer.getvalue()


def test_the_export_is_a_project_folder_storyboarder_reads():
    archive = zipfile.ZipFile(io.BytesIO(exported()))
    data = json.loads(archive.read("storyboard-b1/storyboard-b1.storyboarder"))
    jsonschema.validate(data, PROJECT_SCHEMA)
    assert [(b["number"], b["time"], b["duration"]) for b in data["boards"]] == [(1, 0, 1500), (2, 1500, 2000)]
    assert data["boards"][1]["dialogue"] == "GIRL: Look!" and data["boards"][1]["action"] == "Она поднимается на холм."
    names = set(archive.namelist())
    for board in data["boards"]:
        stem = "storyboard-b1/images/" + board["url"][:-4]
        # verifyScene wants each layer and the thumbnail; the posterframe spares it making one.
        assert {f"storyboard-b1/images/{layer['url']}" for layer in board["layers"].values()} <= names
        assert {f"{stem}-thumbnail.png", f"{stem}-posterframe.jpg"} <= names
        # The url file itself would make Storyboarder migrate the board as a pre-1.6 one.
        assert f"storyboard-b1/images/{board['url']}" not in names


def test_layers_are_the_size_storyboarder_draws_at():
    from PIL import Image

    archive = zipfile.ZipFile(io.BytesIO(exported()))
    layer = next(name for name in archive.namelist() if name.endswith("-reference.png"))
    assert Image.open(io.BytesIO(archive.read(layer))).size == image_size(16 / 9) == (1600, 900)


def test_the_uids_are_the_same_at_every_export():
    assert exported() == exported()


def test_an_export_imports_back():
    project = read_project(exported(), 8)
    assert [(b.caption, b.dialogue, b.duration) for b in project.boards] == [
        ("A girl finds a map.", "", 1.5), ("Она поднимается на холм.", "GIRL: Look!", 2.0)]
    assert project.aspect_ratio == pytest.approx(16 / 9) and project.fps == 24


def zipped(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def scene(*urls):
    return json.dumps({"version": "3.0.0", "aspectRatio": 1.5, "fps": 24, "defaultBoardTiming": 2000,
                       "boards": [{"uid": "AAAAA", "url": "board-1-AAAAA.png", "action": "x",
                                   "layers": {"reference": {"url": url}}} for url in urls]})


@pytest.mark.parametrize("files, words", [
    ({"p/p.storyboarder": scene("../../etc/passwd")}, "outside"),
    ({"p/p.storyboarder": scene("/etc/passwd")}, "outside"),
    ({"p/p.storyboarder": scene("sub/x.png"), "p/images/sub/x.png": b"x"}, "outside the project's images folder"),
    ({"p/p.storyboarder": scene("board-1-AAAAA-reference.png")}, "missing"),
    ({"../p.storyboarder": scene()}, "outside"),
    ({"/p/p.storyboarder": scene()}, "outside"),
    ({"C:/p/p.storyboarder": scene()}, "outside"),
    ({"p/readme.txt": "hi"}, "no .storyboarder"),
    ({"a/a.storyboarder": scene(), "b/b.storyboarder": scene()}, "2 .storyboarder"),
    ({"p/p.storyboarder": "{not json"}, "not Storyboarder's JSON"),
    ({"p/p.storyboarder": json.dumps({"boards": []})}, "no boards"),
])
def test_a_bad_project_is_refused_naming_the_problem(files, words):
    with pytest.raises(InputError) as refused:
        read_project(zipped(files), 8)
    assert refused.value.field == "project" and words in str(refused.value)


def test_a_project_with_more_boards_than_a_board_holds_is_refused():
    data = json.loads(scene(*["board-1-AAAAA-reference.png"] * 9))
    files = {"p/p.storyboarder": json.dumps(data), "p/images/board-1-AAAAA-reference.png": png_bytes()}
    with pytest.raises(InputError, match="has 9 boards"):
        read_project(zipped(files), 8)


def test_a_zip_bomb_is_refused_before_it_is_inflated(monkeypatch):
    import storyboarder

    monkeypatch.setattr(storyboarder, "MAX_PROJECT_BYTES", 1_000_000)
    files = {"p/p.storyboarder": scene("board-1-AAAAA-reference.png"),
             "p/images/board-1-AAAAA-reference.png": b"\0" * 2_000_000}  # deflates to 2 KB
    with pytest.raises(InputError, match="larger than"):
        read_project(zipped_deflated(files), 8)


def zipped_deflated(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_file_that_is_not_a_zip_is_refused():
    with pytest.raises(InputError, match="not a ZIP"):
        read_project(b"INT. HOUSE - DAY", 8)


# --- Through the API ------------------------------------------------------------------------


def test_a_boards_storyboarder_export_imports_back_as_a_new_board(client, tmp_path):
    board = wait_for(client, post_board(client, aspect="4:3").get_json()["id"])
    client.patch(board["links"]["self"], json={"fps": 25})
    client.patch(board["frames"][1]["links"]["self"], json={"duration": 4.2, "dialogue": "MARA: Up there!"})
    board = client.get(board["links"]["self"]).get_json()
    data = client.get(board["export"]["storyboarder"]).data
    answer = client.post("/api/storyboards/import", data={"project": (io.BytesIO(data), "scene.zip")},
                         content_type="multipart/form-data")
    assert answer.status_code == 202
    imported = answer.get_json()
    assert imported["id"] != board["id"]

    def timed(b):
        return [(f["caption"], f["dialogue"], f["duration"]) for f in b["frames"]]

    assert timed(imported) == timed(board) and timed(board)[1][1:] == ("MARA: Up there!", 4.2)
    assert (imported["fps"], imported["settings"]["aspect"]) == (25, "4:3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data-0"]  # nothing written outside the data dir


def test_an_imported_board_is_stored_with_its_timing_in_one_go(app, monkeypatch):
    from studio import studio_of

    store, first_seen = studio_of(app).store, []
    create = store.create_board

    def create_and_read(**kwargs):  # the board as anyone could read it the moment it exists
        board_id = create(**kwargs)
        first_seen.append(store.board(board_id))
        return board_id

    monkeypatch.setattr(store, "create_board", create_and_read)
    answer = app.test_client().post("/api/storyboards/import", content_type="multipart/form-data",
                                    data={"project": (io.BytesIO(drawn_project(fps=25)), "p.zip")})
    assert answer.status_code == 202, answer.get_json()
    (board,) = first_seen
    assert board["fps"] == 25 and [f["duration"] for f in board["frames"]] == [1.5, 2.0]


def test_a_project_whose_timing_the_studio_cannot_take_is_refused_and_nothing_is_stored(client):
    files = {"p/p.storyboarder": json.dumps({**json.loads(scene()), "fps": 7,
                                             "boards": [{"url": "board-1-AAAAA.png", "action": "x"}]})}
    answer = client.post("/api/storyboards/import", data={"project": (io.BytesIO(zipped(files)), "p.zip")},
                         content_type="multipart/form-data")
    assert answer.status_code == 400 and "fps" in answer.get_json()["field"]
    assert client.get("/api/storyboards").get_json()["storyboards"] == []


def test_an_import_without_a_project_or_with_a_bad_one_is_400(client):
    assert client.post("/api/storyboards/import", data={}, content_type="multipart/form-data").status_code == 400
    answer = client.post("/api/storyboards/import", data={"project": (io.BytesIO(b"not a zip"), "x.zip")},
                         content_type="multipart/form-data")
    assert answer.status_code == 400 and answer.get_json()["field"] == "project"


def drawn_project(fps: float = 24) -> bytes:
    """A project of two boards: one with a pencil line (and an empty fill layer, as Storyboarder
    saves them), one with only a reference picture."""
    from PIL import Image, ImageDraw

    pencil = Image.new("RGBA", (160, 90), (0, 0, 0, 0))
    ImageDraw.Draw(pencil).line((10, 45, 150, 45), fill=(0, 0, 0, 255), width=5)
    empty = Image.new("RGBA", (160, 90), (0, 0, 0, 0))

    def png(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    boards = [{"uid": "AAAAA", "url": "board-1-AAAAA.png", "action": "A horizon.", "duration": 1500,
               "layers": {"pencil": {"url": "board-1-AAAAA-pencil.png"}, "fill": {"url": "board-1-AAAAA-fill.png"}}},
              {"uid": "BBBBB", "url": "board-2-BBBBB.png", "action": "A photo.",
               "layers": {"reference": {"url": "board-2-BBBBB-reference.png", "opacity": 1}}}]
    return zipped({"p/p.storyboarder": json.dumps({"version": "3.0.0", "aspectRatio": 16 / 9, "fps": fps,
                                                    "defaultBoardTiming": 2000, "boards": boards}),
                   "p/images/board-1-AAAAA-pencil.png": png(pencil), "p/images/board-1-AAAAA-fill.png": png(empty),
                   "p/images/board-2-BBBBB-reference.png": png_bytes((160, 90), "blue")})


def test_what_was_drawn_on_a_board_is_flattened_on_white_and_a_reference_picture_is_not():
    from PIL import Image

    first, second = read_project(drawn_project(), 8).boards
    drawing = Image.open(io.BytesIO(first.drawing))
    assert drawing.getpixel((80, 45)) == (0, 0, 0) and drawing.getpixel((80, 10)) == (255, 255, 255)
    assert second.drawing is None


def test_a_drawing_layer_that_is_not_an_image_is_refused_by_name():
    archive = zipfile.ZipFile(io.BytesIO(drawn_project()))
    files = {name: archive.read(name) for name in archive.namelist()}
    files["p/images/board-1-AAAAA-pencil.png"] = b"not a png"
    with pytest.raises(InputError, match="board-1-AAAAA-pencil.png is not a readable image"):
        read_project(zipped(files), 8)


def test_an_imported_drawing_becomes_the_panels_sketch_layout(client):
    answer = client.post("/api/storyboards/import", data={"project": (io.BytesIO(drawn_project()), "p.zip")},
                         content_type="multipart/form-data")
    assert answer.status_code == 202, answer.get_json()
    first, second = answer.get_json()["frames"]
    assert first["layout"]["kind"] == "sketch" and second["layout"] is None
    assert (first["duration"], second["duration"]) == (1.5, 2.0)


def test_a_damaged_entry_is_refused_by_name_not_a_server_error():
    data = bytearray(zipped_deflated({"p/p.storyboarder": scene() * 50}))
    data[60:70] = b"\xff" * 10  # inside the entry's deflated bytes: its CRC no longer matches
    with pytest.raises(InputError, match="p/p.storyboarder cannot be read from the ZIP"):
        read_project(bytes(data), 8)


def test_a_project_larger_than_its_setting_is_413_naming_it(make_app):
    client = make_app(max_project_mb=1).test_client()
    big = zipped({"p/p.storyboarder": scene(), "p/padding.bin": bytes(1_200_000)})
    answer = client.post("/api/storyboards/import", data={"project": (io.BytesIO(big), "p.zip")},
                         content_type="multipart/form-data")
    assert answer.status_code == 413 and answer.get_json()["field"] == "project"
    assert "STORYBOARD_MAX_PROJECT_MB" in answer.get_json()["error"]


def test_a_project_larger_than_a_face_upload_is_accepted(make_app):
    client = make_app(max_upload_mb=1).test_client()
    archive = zipfile.ZipFile(io.BytesIO(drawn_project()))
    files = {name: archive.read(name) for name in archive.namelist()}
    files["p/notes.bin"] = bytes(1_500_000)  # past the 1 MB a face may be
    answer = client.post("/api/storyboards/import", data={"project": (io.BytesIO(zipped(files)), "p.zip")},
                         content_type="multipart/form-data")
    assert answer.status_code == 202


def test_a_big_project_spools_into_the_data_dir_not_the_systems_temp_dir(client, tmp_path, monkeypatch):
    # Werkzeug spools an upload over 500 KB to the system's temp dir, which may be a small
    # tmpfs: here it is missing, so a spool there fails the import.
    import os
    import tempfile

    from PIL import Image

    noise = io.BytesIO()
    Image.frombytes("RGB", (640, 360), os.urandom(640 * 360 * 3)).save(noise, "PNG")
    project = exported(images={1: noise.getvalue(), 2: png_bytes()})
    assert len(project) > 600_000
    # Encoded first: the test client's own encoding spools through the temp dir too.
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    boundary, body = encode_multipart({"project": FileStorage(io.BytesIO(project), "big.zip")})
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-system-temp"))
    answer = client.post("/api/storyboards/import", data=body,
                         content_type=f"multipart/form-data; boundary={boundary}")
    assert answer.status_code == 202, answer.get_data(as_text=True)[:300]
    assert [f["caption"] for f in answer.get_json()["frames"]] == [f["caption"] for f in BOARD["frames"]]
