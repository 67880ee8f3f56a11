"""The whole app on the tiny real models: HTTP in, PNG panels and scores out."""

import io

import pytest
from PIL import Image

from app import create_app
from studio import studio_of
from helpers import png_bytes, wait_for


@pytest.fixture
def app(tiny_settings_factory):
    app = create_app(tiny_settings_factory(identity_scoring=True))
    yield app
    studio_of(app).backend.stop()


@pytest.fixture
def client(app):
    return app.test_client()


SIX_BEATS = ("A girl walks to the lighthouse at dusk. The door is open. She climbs the stairs. A lamp flickers. "
             "She sees a ship. She waves.")


def test_a_six_panel_board_on_the_tiny_model(client, app):
    answer = client.post("/api/storyboards", json={"story": SIX_BEATS, "frames": 6, "preset": "ultra_fast", "seed": 3})
    board = wait_for(client, answer.get_json()["id"], timeout=120)
    assert board["status"] == "done" and len(board["frames"]) == 6
    image = Image.open(io.BytesIO(client.get(board["frames"][5]["image_url"]).data))
    assert image.size == (80, 48)
    assert board["reference"]["kind"] == "generated"
    # Tiny random models draw no faces: an honest "no face" result, never a made-up distance.
    assert {f["identity"]["status"] for f in board["frames"]} <= {"no_face", "no_reference_face"}
    assert all(f["identity"]["distance"] is None for f in board["frames"])
    assert all(0 < f["identity"]["clip_similarity"] <= 1 for f in board["frames"])


def test_prompts_fit_clip_and_start_with_the_traits(client):
    traits = "round face, grey eyes, short black hair, yellow raincoat"
    story = "She runs through the rain-soaked market, past fruit stalls, lanterns and a crowd of umbrellas " * 4
    answer = client.post("/api/storyboards", json={"story": story, "frames": 1, "character": traits,
                                                   "preset": "ultra_fast", "identity_lock": False})
    frame = wait_for(client, answer.get_json()["id"], timeout=120)["frames"][0]
    assert frame["prompt"].startswith("round face, She runs")  # clothing gave way to the action
    assert frame["caption"] == story.strip()
    assert frame["prompt_shortened"] and " ".join(story.split()).endswith(frame["prompt_shortened"])
    assert frame["traits_shortened"] == {"": "grey eyes, short black hair, yellow raincoat"}


def test_uploaded_reference_locks_the_board(client):
    data = {"story": "One.\nTwo.", "preset": "ultra_fast", "reference": (io.BytesIO(png_bytes((96, 96))), "f.png")}
    board = wait_for(client, client.post("/api/storyboards", data=data).get_json()["id"], timeout=120)
    assert board["status"] == "done" and board["reference"]["kind"] == "uploaded"


def test_progress_counts_the_reference_and_only_moves_forward(client, app):
    answer = client.post("/api/storyboards", json={"story": "One.\nTwo.\nThree.", "preset": "ultra_fast", "seed": 5})
    board_id = answer.get_json()["id"]
    wait_for(client, board_id, timeout=120)
    events = studio_of(app).hub.wait(board_id, 0, timeout=0)
    progress = [data for _, kind, data in events if kind == "progress"]
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[0]["label"] == "Character reference" and 0 < progress[-1]["fraction"]
    # The portrait is one of four units of this board: it ends at a quarter.
    assert max(p["fraction"] for p in progress if p["label"] == "Character reference") == 0.25
    assert progress[-1]["label"] == "Panel 3 of 3"


CAST_STORY = ("Mara wakes at the lighthouse.\nIlya knocks at the door.\nMara and Ilya study the map.\n"
              "A storm rolls over the sea.\nIlya rows the boat while Mara steers.\nThey reach the island.")


def test_a_six_panel_story_with_two_named_characters_end_to_end(tiny_settings_factory):
    """Through the API on the tiny models: two characters, one uploaded face and one drawn
    portrait, the two-character panels drawn through IP-Adapter region masks, each face scored."""
    import base64
    import zipfile

    from local_image_generator import StoryboardGenerator

    settings = tiny_settings_factory(identity_scoring=True)
    masks = []

    def load():
        generator = StoryboardGenerator.load(settings)
        generator.pipe.unet.register_forward_pre_hook(
            lambda module, args, kwargs: masks.append(
                (kwargs.get("cross_attention_kwargs") or {}).get("ip_adapter_masks")), with_kwargs=True)
        return generator

    app = create_app(settings, load_generator=load)
    client = app.test_client()
    try:
        answer = client.post("/api/storyboards", json={
            "story": CAST_STORY, "preset": "ultra_fast", "seed": 11, "characters": [
                {"name": "Mara", "traits": "young woman, oval face, red hair, green jacket",
                 "reference_image": base64.b64encode(png_bytes((96, 96), "orange")).decode()},
                {"name": "Ilya", "traits": "old man, square face, grey beard, navy coat"}]})
        assert answer.status_code == 202, answer.get_json()
        board = wait_for(client, answer.get_json()["id"], timeout=240)
        assert board["status"] == "done" and [f["status"] for f in board["frames"]] == ["done"] * 6
        assert [f["cast"] for f in board["frames"]] == [["Mara"], ["Ilya"], ["Mara", "Ilya"], ["Mara"],
                                                        ["Mara", "Ilya"], ["Mara"]]
        assert [c["reference"]["kind"] for c in board["characters"]] == ["uploaded", "generated"]
        # Two of the six panels show both: their UNet calls carried one mask per character.
        shapes = {tuple(m[0].shape) for m in masks if m is not None}
        assert shapes == {(1, 2, 48, 80)}
        both = board["frames"][2]
        assert both["prompt"].startswith("left: young woman, oval face, red hair, green jacket; right: old man")
        assert [c["name"] for c in both["identity"]["characters"]] == ["Mara", "Ilya"]
        assert {c["status"] for f in board["frames"] for c in f["identity"]["characters"]} <= {
            "missing", "no_reference_face"}  # tiny random models draw no faces: nothing made up
        archive = zipfile.ZipFile(io.BytesIO(client.get(board["export"]["zip"]).data))
        assert {"reference-1.png", "reference-2.png", "panel-06.png"} <= set(archive.namelist())
    finally:
        studio_of(app).backend.stop()
