"""The whole app on the tiny real models: HTTP in, PNG panels and scores out."""

import io

import pytest
from PIL import Image

from app import create_app
from helpers import png_bytes, wait_for


@pytest.fixture
def app(tiny_settings_factory):
    app = create_app(tiny_settings_factory(identity_scoring=True))
    yield app
    app.extensions["studio"]["worker"].stop()


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
    story = "She runs through the rain-soaked market, past fruit stalls, lanterns and a crowd of umbrellas " * 3
    answer = client.post("/api/storyboards", json={"story": story, "frames": 1, "character": traits,
                                                   "preset": "ultra_fast", "identity_lock": False})
    frame = wait_for(client, answer.get_json()["id"], timeout=120)["frames"][0]
    assert frame["prompt"].startswith(traits)
    assert frame["caption"] == story.strip()
    assert frame["prompt_shortened"] and " ".join(story.split()).endswith(frame["prompt_shortened"])


def test_uploaded_reference_locks_the_board(client):
    data = {"story": "One.\nTwo.", "preset": "ultra_fast", "reference": (io.BytesIO(png_bytes((96, 96))), "f.png")}
    board = wait_for(client, client.post("/api/storyboards", data=data).get_json()["id"], timeout=120)
    assert board["status"] == "done" and board["reference"]["kind"] == "uploaded"


def test_progress_counts_the_reference_and_only_moves_forward(client, app):
    answer = client.post("/api/storyboards", json={"story": "One.\nTwo.\nThree.", "preset": "ultra_fast", "seed": 5})
    board_id = answer.get_json()["id"]
    wait_for(client, board_id, timeout=120)
    events = app.extensions["studio"]["hub"].wait(board_id, 0, timeout=0)
    progress = [data for _, kind, data in events if kind == "progress"]
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[0]["label"] == "Character reference" and 0 < progress[-1]["fraction"]
    # The portrait is one of four units of this board: it ends at a quarter.
    assert max(p["fraction"] for p in progress if p["label"] == "Character reference") == 0.25
    assert progress[-1]["label"] == "Panel 3 of 3"
