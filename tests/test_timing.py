"""Panel durations and the board's timeline: the reading-time default, snapping to frames, the
store's columns and the API that edits them."""

import io
import json
import zipfile
from fractions import Fraction

import pytest

import timing
from errors import InputError
from helpers import post_board
from storage import Store
from timing import board_timeline, default_seconds, frames_for, read_duration, read_fps


def frame(caption="A door.", dialogue=None, duration=None, **rest):
    return {"caption": caption, "dialogue": dialogue, "duration": duration, **rest}


# --- The default and snapping ------------------------------------------------------------------


def test_a_short_caption_holds_for_the_minimum():
    assert default_seconds("A door.") == timing.MIN_DEFAULT_SECONDS


def test_the_default_grows_with_the_words_read():
    # 1 s to look, then 12 words at 3 a second.
    assert default_seconds("one two three four five six", "seven eight nine ten eleven twelve") == 5.0


def test_a_long_speech_is_held_at_the_maximum():
    assert default_seconds("word " * 200) == timing.MAX_DEFAULT_SECONDS


def test_unspaced_scripts_are_read_by_the_character():
    # 19 characters of Japanese at 6 a second, not one "word".
    assert default_seconds("彼女は古い地図を見つけて丘を登り始める") == pytest.approx(1.0 + 19 / 6)
    assert default_seconds("彼女は古い地図を見つけて丘を登り始める") > default_seconds("She finds a map")


def test_korean_is_read_by_its_spaced_words():
    assert default_seconds("그녀는 오래된 지도를 찾는다 그리고 언덕을 오른다") == pytest.approx(1.0 + 7 / 3)


def test_punctuation_alone_is_not_a_word():
    assert default_seconds("one two three four five six — … !") == default_seconds("one two three four five six")


def test_durations_snap_to_the_nearest_whole_frame():
    assert frames_for(2.0, 24.0) == 48
    assert frames_for(2.01, 24.0) == 48 and frames_for(2.03, 24.0) == 49
    assert frames_for(0.001, 24.0) == 1  # never a panel of no frames


def test_ntsc_rates_are_exact():
    assert timing.rate(29.97) == Fraction(30000, 1001)
    assert frames_for(1001 / 1000, 23.976) == 24  # 24 frames of 1001/24000 s


def test_the_timeline_lays_panels_end_to_end():
    board = {"fps": 25.0, "frames": [frame("A door.", duration=1.5), frame("one two three four five six seven "
                                                                            "eight nine ten eleven twelve")]}
    timeline = board_timeline(board)
    first, second = timeline
    assert (first.index, first.start_frame, first.frame_count, first.duration_set) == (1, 0, 38, True)  # 37.5 up
    assert (second.start_frame, second.frame_count, second.duration_set) == (38, 125, False)
    assert (second.start, second.duration) == (1.52, 5.0)
    assert (timeline.total_frames, timeline.duration, len(timeline)) == (163, 6.52, 2)


def test_the_default_counts_the_dialogue_too():
    plain, spoken = board_timeline({"fps": 24.0, "frames": [frame("He waits."), frame(
        "He waits.", dialogue="I have waited for you here every night since the storm came")]})
    assert spoken.frame_count > plain.frame_count


# --- Reading input -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, timing.MAX_SECONDS + 1, float("nan"), float("inf"), True, "3", [3]])
def test_a_bad_duration_is_refused_by_name(value):
    with pytest.raises(InputError) as caught:
        read_duration(value, "panels[1].duration")
    assert caught.value.field == "panels[1].duration"


def test_a_null_duration_means_the_default():
    assert read_duration(None) is None and read_duration(3) == 3.0


@pytest.mark.parametrize("given, fps", [(24, 24.0), (23.976, 23.976), (23.98, 23.976), (29.97, 29.97), (25.0, 25.0)])
def test_frame_rates_read_as_editors_write_them(given, fps):
    assert read_fps(given) == fps


@pytest.mark.parametrize("value", [0, 23, 1000, -24, "24", None, True, float("nan")])
def test_a_frame_rate_outside_the_set_is_refused_by_name(value):
    with pytest.raises(InputError) as caught:
        read_fps(value)
    assert caught.value.field == "fps" and "23.976" in caught.value.message


# --- The store -----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    from board_params import BoardParams, Character
    from config import PRESETS

    store = Store(tmp_path)
    params = BoardParams(characters=(Character("", "red hair"),), style="ink", preset=PRESETS["fast"], aspect="16:9",
                         width=80, height=48, seed=1, identity_lock=False, negative_prompt="", model="tiny")
    panels = [{"id": 1, "caption": "One.", "shot": "wide shot", "seed": 1, "cast": ("",), "dialogue": "Hello."},
              {"id": 2, "caption": "Two.", "shot": "wide shot", "seed": 2, "cast": ("",)}]
    store.board_id = store.create_board(title="T", story="One.\nTwo.", params=params, panels=panels, references={})
    yield store
    store.close()


def test_a_new_board_plays_at_the_default_rate_with_its_dialogue(store):
    board = store.board(store.board_id)
    assert board["fps"] == timing.DEFAULT_FPS
    assert [(f["dialogue"], f["duration"]) for f in board["frames"]] == [("Hello.", None), (None, None)]


def test_a_panel_edit_changes_only_what_is_named(store):
    assert store.edit_panel(store.board_id, 2, duration=4.0)
    assert store.edit_panel(store.board_id, 2, dialogue="Hi.")
    assert [(f["dialogue"], f["duration"]) for f in store.board(store.board_id)["frames"]] == [
        ("Hello.", None), ("Hi.", 4.0)]
    assert not store.edit_panel(store.board_id, 9, duration=1.0)
    assert store.set_fps(store.board_id, 25.0) and store.board(store.board_id)["fps"] == 25.0
    assert not store.set_fps("nope", 25.0)


def test_a_board_can_be_stored_with_its_rate_and_durations(store):
    board = store.board(store.create_board(title="T", story="One.", params=store.board(store.board_id)["params"],
                                           panels=[{"id": 1, "caption": "One.", "shot": "wide shot", "seed": 1,
                                                    "cast": ("",), "duration": 4.5}], references={}, fps=25.0))
    assert (board["fps"], board["frames"][0]["duration"]) == (25.0, 4.5)


def test_edit_panel_refuses_other_columns(store):
    with pytest.raises(TypeError):
        store.edit_panel(store.board_id, 1, caption="x")


# --- The API ---------------------------------------------------------------------------------------


@pytest.fixture
def board(client):
    return post_board(client, story="A door.\nShe opens it and walks into the dark hall alone.").get_json()


def test_a_board_says_its_rate_and_each_panel_its_time(board):
    assert board["fps"] == 24.0
    first, second = board["frames"]
    assert (first["duration"], first["duration_set"], first["start"], first["dialogue"]) == (2.0, False, 0.0, "")
    assert second["start"] == 2.0 and second["duration"] == pytest.approx(1 + 10 / 3, abs=1 / 48)
    assert board["duration"] == pytest.approx(first["duration"] + second["duration"])


def test_a_duration_set_through_the_api_snaps_and_moves_the_next_panel(client, board):
    answer = client.patch(board["frames"][0]["links"]["self"], json={"duration": 3.01})
    assert answer.status_code == 200
    first, second = answer.get_json()["frames"]
    assert (first["duration"], first["duration_set"], second["start"]) == (3.0, True, 3.0)
    reset = client.patch(board["frames"][0]["links"]["self"], json={"duration": None}).get_json()
    assert (reset["frames"][0]["duration"], reset["frames"][0]["duration_set"]) == (2.0, False)


def test_dialogue_set_through_the_api_lengthens_the_default(client, board):
    answer = client.patch(board["frames"][0]["links"]["self"],
                          json={"dialogue": "Is anyone there? I heard you calling from the hall."}).get_json()
    assert answer["frames"][0]["dialogue"] == "Is anyone there? I heard you calling from the hall."
    assert answer["frames"][0]["duration"] > board["frames"][0]["duration"]


def test_the_zips_storyboard_json_carries_the_timing_and_the_dialogue(client, board):
    client.patch(board["links"]["self"], json={"fps": 25})
    client.patch(board["frames"][0]["links"]["self"], json={"duration": 4.2, "dialogue": "MARA: Up there!"})
    data = client.get(board["export"]["zip"]).data
    meta = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("storyboard.json"))
    first = meta["frames"][0]
    assert (meta["fps"], first["duration"], first["dialogue"]) == (25, 4.2, "MARA: Up there!")


def test_the_board_rate_changes_every_snap(client, board):
    client.patch(board["frames"][0]["links"]["self"], json={"duration": 1.01})
    answer = client.patch(board["links"]["self"], json={"fps": 25})
    assert answer.status_code == 200
    assert answer.get_json()["fps"] == 25.0 and answer.get_json()["frames"][0]["duration"] == 1.0
    assert client.get(board["links"]["self"]).get_json()["frames"][0]["duration"] == pytest.approx(1.0)


@pytest.mark.parametrize("body, field", [({"duration": 0}, "duration"), ({"duration": "3"}, "duration"),
                                         ({"duration": 999}, "duration"), ({"dialogue": 3}, "dialogue"),
                                         ({}, "body"), ({"caption": "x"}, "body")])
def test_a_bad_panel_edit_is_refused_by_name(client, board, body, field):
    answer = client.patch(board["frames"][0]["links"]["self"], json=body)
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


@pytest.mark.parametrize("body", [{"fps": 12}, {"fps": "24"}, {}, {"fps": None}])
def test_a_bad_frame_rate_is_refused_by_name(client, board, body):
    answer = client.patch(board["links"]["self"], json=body)
    assert (answer.status_code, answer.get_json()["field"]) == (400, "fps")
    assert client.get(board["links"]["self"]).get_json()["fps"] == 24.0


def test_editing_a_missing_panel_or_board_is_a_404(client, board):
    url = board["frames"][0]["links"]["self"]
    assert client.patch(url.replace("/frames/1", "/frames/9"), json={"duration": 2}).status_code == 404
    assert client.patch("/api/storyboards/000000000000", json={"fps": 25}).status_code == 404


def test_a_planned_panel_keeps_its_dialogue(client):
    answer = client.post("/api/storyboards", json={"seed": 1, "panels": [
        {"caption": "She waits.", "dialogue": "Où es-tu ?"}, {"caption": "He comes."}]})
    assert [f["dialogue"] for f in answer.get_json()["frames"]] == ["Où es-tu ?", ""]
