"""A cast of 1-4 characters through the API (fake generator): who is in each panel, their
faces, redraws, plans, exports, events, and data directories from before the cast."""

import base64
import io
import json
import sqlite3
import zipfile

import pytest
from pypdf import PdfReader

from studio import studio_of
from fakes import FakeGenerator
from helpers import png_bytes, post_board, wait_for

STORY = "Mara finds a map.\nIlya and mara argue.\nThe storm breaks.\nIlya leaves."
MARA = {"name": "Mara", "traits": "young woman, oval face, red hair, green jacket"}
ILYA = {"name": "Ilya", "traits": "old man, grey beard, navy coat"}


def b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def create(client, characters=(MARA, {**ILYA, "reference_image": b64(png_bytes(color="blue"))}), **fields):
    return post_board(client, **{"story": STORY, **fields}, characters=list(characters))


# --- A board with a cast --------------------------------------------------------------------------


def test_a_board_answers_with_its_characters_and_each_panel_with_its_cast(client):
    board = wait_for(client, create(client).get_json()["id"])
    assert [(c["name"], c["traits"]) for c in board["characters"]] == [(MARA["name"], MARA["traits"]),
                                                                     (ILYA["name"], ILYA["traits"])]
    assert [c["reference"]["kind"] for c in board["characters"]] == ["generated", "uploaded"]
    assert [f["cast"] for f in board["frames"]] == [["Mara"], ["Mara", "Ilya"], ["Mara"], ["Ilya"]]
    assert board["character"] == MARA["traits"] and board["reference"] == board["characters"][0]["reference"]
    for character in board["characters"]:
        assert client.get(character["reference"]["image_url"]).mimetype == "image/png"


def test_the_generator_gets_each_panels_cast_and_each_face(client, generator):
    wait_for(client, create(client).get_json()["id"])
    request = generator.requests[0]
    assert [job.cast for job in request.panels] == [(0,), (0, 1), (0,), (1,)]
    mara, ilya = request.locks
    assert mara.reference is None and mara.portrait is not None and ilya.reference is not None
    assert request.panels[1].prompt.startswith(f"left: {MARA['traits']}; right: {ILYA['traits']}")


def test_a_cast_by_form_with_faces_in_reference_fields(client, generator):
    form = {"story": STORY, "characters": json.dumps([MARA, ILYA]),
            "reference_1": (io.BytesIO(png_bytes()), "mara.png"), "reference_2": (io.BytesIO(png_bytes()), "i.png")}
    board = wait_for(client, client.post("/api/storyboards", data=form).get_json()["id"])
    assert [c["reference"]["kind"] for c in board["characters"]] == ["uploaded", "uploaded"]
    assert all(lock.reference is not None for lock in generator.requests[0].locks)


def test_a_character_no_panel_shows_gets_no_portrait(client, generator):
    bo = {"name": "Bo", "traits": "boy, freckles"}
    board = wait_for(client, create(client, characters=(MARA, ILYA, bo)).get_json()["id"])
    assert [c["reference"]["kind"] for c in board["characters"]] == ["generated", "generated", None]
    assert board["characters"][2]["reference"]["image_url"] is None


def test_the_single_character_field_is_a_cast_of_one_unnamed(client):
    board = wait_for(client, client.post("/api/storyboards", json={"story": STORY, "character": "red hair"})
                     .get_json()["id"])
    assert [(c["name"], c["traits"]) for c in board["characters"]] == [("", "red hair")]
    assert {tuple(f["cast"]) for f in board["frames"]} == {("",)}


def test_a_generated_portrait_is_an_event_naming_its_character(client, app):
    board_id = create(client).get_json()["id"]
    wait_for(client, board_id)
    body = client.get(f"/api/storyboards/{board_id}/events").get_data(as_text=True)
    data = json.loads(body.split("event: reference\ndata: ", 1)[1].split("\n", 1)[0])
    assert data == {"character": 1, "name": "Mara", "kind": "generated",
                    "image_url": f"/api/storyboards/{board_id}/references/1.png"}


@pytest.mark.parametrize("fields,field", [
    ({"characters": [MARA] * 2}, "characters[1].name"),
    ({"characters": [MARA, {"traits": "x"}]}, "characters[1].name"),
    ({"characters": [MARA, {"name": "Ilya"}]}, "characters[1].traits"),
    ({"characters": [MARA, {**ILYA, "name": "!!"}]}, "characters[1].name"),
    ({"characters": [{**ILYA, "name": f"C{i}"} for i in range(5)]}, "characters"),
    ({"characters": "Mara"}, "characters"),
    ({"characters": [MARA, "Ilya"]}, "characters[1]"),
    ({"characters": [MARA, {**ILYA, "traits": 3}]}, "characters[1].traits"),
    ({"characters": [MARA, {**ILYA, "reference_image": "@@"}]}, "characters[1].reference_image"),
    ({"characters": [MARA, {**ILYA, "reference_image": b64(b"GIF89a...")}]}, "characters[1].reference_image"),
    ({"characters": [MARA], "character": "red hair"}, "character"),
    ({"characters": [MARA], "reference_image": b64(png_bytes())}, "reference"),
    ({"characters": [MARA, ILYA], "panels": [{"caption": "x", "cast": ["Bob"]}]}, "panels[0].cast"),
    ({"characters": [MARA, ILYA], "panels": [{"caption": "x", "cast": "Mara"}]}, "panels[0].cast"),
])
def test_a_bad_cast_is_a_400_naming_the_field(client, fields, field):
    answer = client.post("/api/storyboards", json={"story": STORY, **fields})
    assert answer.status_code == 400 and answer.get_json()["field"] == field, answer.get_json()


@pytest.mark.parametrize("form,field", [
    ({"characters": json.dumps([MARA]), "reference_2": (io.BytesIO(png_bytes()), "x.png")}, "reference_2"),
    ({"reference_1": (io.BytesIO(png_bytes()), "x.png")}, "reference_1"),
    ({"characters": "[[["}, "characters"),
    ({"characters": json.dumps([MARA]), "reference_1": (io.BytesIO(b"not an image"), "x.png")}, "reference_1"),
])
def test_a_bad_cast_form_is_a_400_naming_the_field(client, form, field):
    answer = client.post("/api/storyboards", data={"story": STORY, **form})
    assert answer.status_code == 400 and answer.get_json()["field"] == field, answer.get_json()


# --- Who is in a panel: plans, redraws, resumes ---------------------------------------------------


def test_a_board_drawn_from_a_plan_keeps_the_plans_casts(client):
    plan = client.post("/api/plans", json={"premise": STORY, "characters": [MARA, ILYA]}).get_json()
    assert [p["cast"] for p in plan["panels"]] == [["Mara"], ["Mara", "Ilya"], ["Mara"], ["Ilya"]]
    plan["panels"][2]["cast"] = []  # the storm: no one
    plan["panels"][3]["cast"] = ["ilya", "MARA"]
    board = create(client, panels=plan["panels"], story="").get_json()
    assert [f["cast"] for f in board["frames"]] == [["Mara"], ["Mara", "Ilya"], [], ["Mara", "Ilya"]]


def test_a_plan_panel_without_a_cast_shows_who_it_names(client):
    panels = [{"caption": "Он уходит.", "scene": "Ilya walks away"},
              {"caption": "Тишина.", "scene": "Silence"}]
    board = create(client, panels=panels, story="").get_json()
    assert [f["cast"] for f in board["frames"]] == [["Ilya"], ["Mara"]]


def test_a_plan_made_without_a_cast_names_no_one_and_drawn_shows_the_one_character(client):
    plan = client.post("/api/plans", json={"premise": STORY}).get_json()  # planned without a cast
    assert {p["cast"] for p in plan["panels"]} == {None}  # not [], which is no one
    board = client.post("/api/storyboards", json={"panels": plan["panels"], "character": "red hair"}).get_json()
    assert {tuple(f["cast"]) for f in board["frames"]} == {("",)}


def test_with_one_unnamed_character_a_panel_can_show_no_one(client, generator):
    panels = [{"caption": "An empty lighthouse at dusk.", "cast": []}, {"caption": "She climbs the stairs.", "cast": [""]}]
    board = wait_for(client, client.post("/api/storyboards", json={"panels": panels, "character": "red hair"})
                     .get_json()["id"])
    assert [f["cast"] for f in board["frames"]] == [[], [""]]
    assert [p.cast for p in generator.requests[-1].panels] == [(), (0,)]
    assert "red hair" not in board["frames"][0]["prompt"] and board["frames"][1]["prompt"].startswith("red hair")


def test_redraw_changes_the_cast_and_keeps_it_when_not_given(client, generator):
    board_id = create(client).get_json()["id"]
    wait_for(client, board_id)
    client.post(f"/api/storyboards/{board_id}/frames/3/regenerate", json={"cast": ["Ilya", "mara"]})
    assert wait_for(client, board_id, ("done",))["frames"][2]["cast"] == ["Mara", "Ilya"]
    assert generator.requests[-1].panels[0].cast == (0, 1)
    client.post(f"/api/storyboards/{board_id}/frames/3/regenerate", json={"caption": "The storm ends."})
    frame = wait_for(client, board_id, ("done",))["frames"][2]
    assert (frame["caption"], frame["cast"]) == ("The storm ends.", ["Mara", "Ilya"])  # kept on Edit
    client.post(f"/api/storyboards/{board_id}/frames/3/regenerate", json={"cast": []})
    assert wait_for(client, board_id, ("done",))["frames"][2]["cast"] == []
    assert generator.requests[-1].panels[0].cast == ()


@pytest.mark.parametrize("cast", [["Bob"], "Mara", ["Mara", "MARA"]])
def test_a_redraw_with_a_bad_cast_is_a_400(client, cast):
    board_id = create(client).get_json()["id"]
    wait_for(client, board_id)
    answer = client.post(f"/api/storyboards/{board_id}/frames/1/regenerate", json={"cast": cast})
    assert answer.status_code == 400 and answer.get_json()["field"] == "cast"


def test_a_resumed_board_draws_its_panels_with_their_casts(client, generator):
    generator.pause_at = (1, 12)
    board_id = create(client).get_json()["id"]
    assert generator.paused.wait(30)
    client.post(f"/api/storyboards/{board_id}/cancel")
    generator.resume.set()
    wait_for(client, board_id)
    client.post(f"/api/storyboards/{board_id}/resume")
    wait_for(client, board_id, ("done",))
    assert [job.cast for job in generator.requests[-1].panels] == [(0, 1), (0,), (1,)]
    assert generator.requests[-1].locks[0].reference is not None  # Mara's portrait, drawn the first time


# --- Exports ------------------------------------------------------------------------------------


def test_the_zip_holds_every_reference_and_the_pdf_a_cast_page(client):
    board = wait_for(client, create(client).get_json()["id"])
    archive = zipfile.ZipFile(io.BytesIO(client.get(board["export"]["zip"]).data))
    saved = json.loads(archive.read("storyboard.json"))
    assert [c["reference"]["file"] for c in saved["characters"]] == ["reference-1.png", "reference-2.png"]
    assert archive.read("reference-2.png") == client.get(board["characters"][1]["reference"]["image_url"]).data
    assert [f["cast"] for f in saved["frames"]] == [f["cast"] for f in board["frames"]]
    pages = PdfReader(io.BytesIO(client.get(board["export"]["pdf"]).data)).pages
    assert "Cast" in pages[-1].extract_text() and "Ilya" in pages[-1].extract_text()
    assert len(pages[-1].images) == 2


# --- A data directory from before the cast ------------------------------------------------------

# The schema and rows as the studio wrote them before the cast (commit 27b8ecd).
OLD_SCHEMA = """
CREATE TABLE storyboards (id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    created_at TEXT NOT NULL, story TEXT NOT NULL, character TEXT NOT NULL, style TEXT NOT NULL,
    settings TEXT NOT NULL, reference_kind TEXT, reference_file TEXT);
CREATE TABLE frames (storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
    id INTEGER NOT NULL, position INTEGER NOT NULL, status TEXT NOT NULL, caption TEXT NOT NULL, shot TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '', negative_prompt TEXT NOT NULL DEFAULT '', seed INTEGER NOT NULL,
    image_file TEXT, version INTEGER NOT NULL DEFAULT 0, identity TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT, seconds REAL, dropped TEXT, scene TEXT, PRIMARY KEY (storyboard_id, id));
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT,
    storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE, kind TEXT NOT NULL, frame_id INTEGER,
    params TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL, starts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT, created_at TEXT NOT NULL);
CREATE INDEX jobs_status ON jobs(status, id);
"""
OLD_OPTIONS = {"preset": "fast", "steps": 12, "guidance_scale": 6.5, "ip_adapter_scale": 0.5, "aspect": "16:9",
               "width": 80, "height": 48, "seed": 40, "identity_lock": True, "negative_prompt": "blurry",
               "model": "tiny (offline demo)", "notices": ["The story has 2 lines, one panel each."]}


def old_data_dir(folder, uploaded: bytes) -> str:
    """One finished board with an uploaded face, as the single-character studio left it."""
    board_id = "0123456789ab"
    (folder / "boards" / board_id).mkdir(parents=True)
    (folder / "boards" / board_id / "reference.png").write_bytes(uploaded)
    db = sqlite3.connect(folder / "studio.sqlite3")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO storyboards VALUES (?, 'Old', 'done', NULL, '2026-11-20T10:00:00Z', ?, 'red hair', 'ink',"
               " ?, 'uploaded', 'reference.png')", (board_id, "One.\nTwo.", json.dumps(OLD_OPTIONS)))
    for frame_id in (1, 2):
        name = f"frame-{frame_id}-v1.png"
        (folder / "boards" / board_id / name).write_bytes(png_bytes(color="green"))
        db.execute("INSERT INTO frames (storyboard_id, id, position, status, caption, shot, prompt, seed, image_file,"
                   " version, identity, attempts) VALUES (?, ?, ?, 'done', ?, 'wide shot', 'red hair, x', ?, ?, 1,"
                   " ?, 1)", (board_id, frame_id, frame_id, ["One.", "Two."][frame_id - 1], 39 + frame_id, name,
                              json.dumps({"status": "no_face", "distance": None, "threshold": 0.6})))
    db.execute("INSERT INTO jobs (storyboard_id, kind, status, starts, created_at) VALUES (?, 'board', 'done', 1, "
               "'2026-11-20T10:00:00Z')", (board_id,))
    db.commit()
    db.close()
    return board_id


def test_an_old_data_dir_opens_as_a_cast_of_one_unnamed_character(tmp_path, make_app):
    face = png_bytes(color="red")
    board_id = old_data_dir(tmp_path, face)
    generator = FakeGenerator()
    app = make_app(generator, data_dir=tmp_path)
    client = app.test_client()
    try:
        board = client.get(f"/api/storyboards/{board_id}").get_json()
        assert board["characters"] == [{"name": "", "traits": "red hair", "reference": {
            "kind": "uploaded", "image_url": f"/api/storyboards/{board_id}/references/1.png"}}]
        # ... and without the consistent look, which it predates
        assert board["settings"] == {**{k: v for k, v in OLD_OPTIONS.items() if k != "notices"}, "consistent_look": False}
        assert board["notices"] == OLD_OPTIONS["notices"] and board["style"] == "ink"
        assert [f["cast"] for f in board["frames"]] == [[""], [""]] and board["frames"][0]["seed"] == 40
        for url in (f"/api/storyboards/{board_id}/reference.png", board["characters"][0]["reference"]["image_url"]):
            assert client.get(url).data == face
        assert "reference-1.png" in zipfile.ZipFile(io.BytesIO(client.get(board["export"]["zip"]).data)).namelist()
        client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={"seed": 41})
        assert wait_for(client, board_id, ("done",))["frames"][1]["cast"] == [""]
        assert generator.requests[-1].locks[0].reference is not None  # redrawn with the old upload
    finally:
        studio_of(app).close()
    # The upgrade is written once: the next start reads the new schema as it is.
    row = sqlite3.connect(tmp_path / "studio.sqlite3").execute("SELECT params FROM storyboards").fetchone()
    assert json.loads(row[0])["schema"] == 2
