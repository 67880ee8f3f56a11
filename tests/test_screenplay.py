"""Fountain screenplays into plans, with screenplain's real parser: scenes, beats, cast and
dialogue; then POST /api/screenplays and a board drawn from a scene through the one creation
path."""

import io

import pytest

from board_params import Character
from config import MAX_FRAMES
from errors import InputError
from screenplay import cue_name, read_heading, read_screenplay
from timing import default_seconds, frames_for, seconds_of

SCENE = """INT. KITCHEN - NIGHT

MARA, 30s, sits alone at the table. A map lies open.

MARA (V.O.)
(whispering)
Where are you, Ilya?

ILYA enters, soaked.

ILYA
I found it.

MARA
Show me.
"""

SCRIPT = """Title: The Map
Author: Someone

EXT. HILL - DAWN

They climb.

CUT TO:

INT. HOUSE - KITCHEN - NIGHT #2#

Ilya waits.

ILYA
Late again.
"""


def only_scene(text, cast=()):
    script = read_screenplay(text, cast)
    assert len(script.scenes) == 1
    return script.scenes[0]


# --- Scenes, beats and dialogue -------------------------------------------------------------------


def test_each_action_beat_is_a_panel_with_the_dialogue_after_it():
    panels = only_scene(SCENE).plan.panels
    assert [p.caption for p in panels] == ["MARA, 30s, sits alone at the table. A map lies open.",
                                           "ILYA enters, soaked."]
    assert [p.dialogue for p in panels] == ["Mara: (whispering) Where are you, Ilya?",
                                            "Ilya: I found it. Mara: Show me."]
    assert [p.shot for p in panels] == ["establishing shot", "medium shot"]  # prompt_enhancer.shot_for


def test_the_heading_goes_into_the_scene_text_not_the_caption():
    scene = only_scene(SCENE)
    assert (scene.heading, scene.setting, scene.location, scene.time) == ("INT. KITCHEN - NIGHT", "interior",
                                                                         "KITCHEN", "NIGHT")
    first = scene.plan.panels[0]
    assert first.scene == "MARA, 30s, sits alone at the table. A map lies open. Interior, kitchen, night"
    assert "KITCHEN" not in first.caption


@pytest.mark.parametrize("heading, read", [
    ("EXT. HILL - DAWN", ("exterior", "HILL", "DAWN")),
    ("INT./EXT. CAR - DAY", ("interior and exterior", "CAR", "DAY")),
    ("I/E CAR - DAY", ("interior and exterior", "CAR", "DAY")),
    ("INT. HOUSE - KITCHEN - NIGHT", ("interior", "HOUSE - KITCHEN", "NIGHT")),
    ("FLASHBACK IN DER KÜCHE", ("", "FLASHBACK IN DER KÜCHE", "")),
])
def test_a_heading_is_read_into_setting_place_and_time(heading, read):
    assert read_heading(heading) == read


def test_the_cues_are_the_cast_in_order_of_speaking_with_new_names_untraited():
    assert only_scene(SCENE).cast == (Character("Mara", ""), Character("Ilya", ""))


def test_a_cue_matches_the_users_cast_ignoring_case_and_keeps_its_traits():
    scene = only_scene(SCENE, cast=(Character("ilya", "beard, grey coat"), Character("Sofia", "tall")))
    assert scene.cast == (Character("Mara", ""), Character("ilya", "beard, grey coat"))
    assert scene.plan.panels[1].cast == ("Mara", "ilya")


def test_a_panel_shows_who_speaks_in_it_and_who_its_action_names():
    first, second = only_scene(SCENE).plan.panels
    assert (first.cast, second.cast) == (("Mara",), ("Mara", "Ilya"))


@pytest.mark.parametrize("cue, name", [("MARA (V.O.)", "Mara"), ("JEAN-LUC (CONT'D)", "Jean-Luc"),
                                       ("MARA ^", "Mara"), ("McCLANE", "McCLANE"), ("DR. O'BRIEN", "Dr. O'Brien")])
def test_a_cue_names_its_character_without_the_extension(cue, name):
    assert cue_name(cue) == name


def test_a_longer_script_lists_its_scenes_and_reads_its_title_page():
    script = read_screenplay(SCRIPT)
    assert script.title == "The Map"
    assert [(s.number, s.heading, len(s.plan.panels)) for s in script.scenes] == [
        (1, "EXT. HILL - DAWN", 1), (2, "INT. HOUSE - KITCHEN - NIGHT", 1)]
    assert script.scenes[0].cast == () and script.scenes[1].cast == (Character("Ilya", ""),)


def test_more_beats_than_a_board_takes_are_joined_in_neighbours():
    text = "INT. ROOM - DAY\n\n" + "\n\n".join(f"Beat {n}." for n in range(1, 12))
    panels = only_scene(text).plan.panels
    assert len(panels) == MAX_FRAMES
    assert panels[0].caption == "Beat 1. Beat 2." and panels[-1].caption == "Beat 11."


def test_dialogue_before_any_action_is_a_panel_of_its_own():
    (panel,) = only_scene("INT. ROOM - DAY\n\nMARA\nHello?\n").plan.panels
    assert (panel.caption, panel.dialogue, panel.cast) == ("Mara: Hello?", "", ("Mara",))
    assert panel.scene == "Mara talking. Interior, room, day"


def test_non_english_words_stay_in_captions_and_dialogue():
    text = "INT. CUISINE - NUIT\n\nÉLODIE ouvre la fenêtre.\n\nÉLODIE\nIl pleut encore…\n"
    (panel,) = only_scene(text).plan.panels
    assert (panel.caption, panel.dialogue) == ("ÉLODIE ouvre la fenêtre.", "Élodie: Il pleut encore…")


def test_a_cue_in_a_script_without_capitals_is_a_cue():
    # screenplain wants a cue "entirely in uppercase", which 李明 can never be.
    text = "INT. 厨房 - 夜\n\n李明坐在桌边。\n\n李明\n你好吗？\n"
    scene = only_scene(text)
    assert scene.cast == (Character("李明", ""),)
    assert scene.plan.panels[0].dialogue == "李明: 你好吗？"


def test_a_scene_opening_with_a_colon_is_not_a_title_page():
    # screenplain reads any "Key: value" first paragraph as a title page, and drops it.
    scene = only_scene("Morning: the sun rises over the hill.\n\nMARA\nFinally.\n")
    assert scene.plan.panels[0].caption == "Morning: the sun rises over the hill."


def test_capitalised_action_is_action_and_fades_are_no_panels():
    # screenplain reads a capitalised line over another as a cue, and FADE IN: as action.
    scene = only_scene("FADE IN:\n\nINT. ROOM - DAY\n\nTHE DOOR BURSTS OPEN.\nSmoke everywhere.\n\nMARA\nRun!\n\n"
                       "FADE OUT.\n\nTHE END\n")
    assert [(p.caption, p.dialogue) for p in scene.plan.panels] == [
        ("THE DOOR BURSTS OPEN. Smoke everywhere.", "Mara: Run!")]
    assert scene.cast == (Character("Mara", ""),)


def test_notes_boneyard_and_emphasis_are_not_shown():
    (panel,) = only_scene("INT. ROOM - DAY\n\nShe *runs* [[fix later]] out./* cut */\n").plan.panels
    assert panel.caption == "She runs out."


@pytest.mark.parametrize("text", ["Once upon a time a girl found a map.\n\nShe climbed the hill.", "just words"])
def test_prose_is_not_a_screenplay(text):
    with pytest.raises(InputError) as caught:
        read_screenplay(text, field="file")
    assert caught.value.field == "file" and "not a screenplay" in caught.value.message


def test_a_scene_with_more_speakers_than_a_board_keeps_who_speaks_most():
    lines = "".join(f"{name}\nLine.\n\n" for name in ["ANA", "BO", "CY", "DI", "ED", "ED", "ANA"])
    scene = only_scene("INT. ROOM - DAY\n\nThey argue.\n\n" + lines)
    assert [c.name for c in scene.cast] == ["Ana", "Bo", "Cy", "Ed"]
    assert "Di" in scene.plan.notices[0]


# --- The route ---------------------------------------------------------------------------------------


def test_the_route_answers_each_scene_as_a_plan(client):
    answer = client.post("/api/screenplays", json={"text": SCRIPT})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["title"] == "The Map" and [s["heading"] for s in body["scenes"]] == [
        "EXT. HILL - DAWN", "INT. HOUSE - KITCHEN - NIGHT"]
    second = body["scenes"][1]
    assert second["source"] == "screenplay" and second["story"] == "INT. HOUSE - KITCHEN - NIGHT"
    assert second["characters"] == [{"name": "Ilya", "traits": ""}]
    assert second["panels"] == [{"caption": "Ilya waits.", "scene": "Ilya waits. Interior, house - kitchen, night",
                                 "shot": "establishing shot", "dialogue": "Ilya: Late again.", "cast": ["Ilya"]}]
    assert body["scenes"][0]["panels"][0]["cast"] is None  # nobody speaks: the board decides


def test_the_route_takes_an_uploaded_file_and_the_users_cast(client):
    answer = client.post("/api/screenplays", content_type="multipart/form-data", data={
        "file": (io.BytesIO(b"\xef\xbb\xbf" + SCENE.encode()), "scene.fountain"),
        "characters": '[{"name": "MARA", "traits": "red hair"}]'})
    assert answer.status_code == 200
    assert answer.get_json()["scenes"][0]["characters"] == [{"name": "MARA", "traits": "red hair"},
                                                            {"name": "Ilya", "traits": ""}]


@pytest.mark.parametrize("data, message", [(b"\x89PNG\r\n\x1a\n\x00\x00", "binary"), (b"\xff\xfe\xfa", "UTF-8"),
                                           (b"Just a story about a map.", "not a screenplay")])
def test_a_bad_file_is_refused_naming_it(client, data, message):
    answer = client.post("/api/screenplays", content_type="multipart/form-data",
                         data={"file": (io.BytesIO(data), "x.fountain")})
    assert answer.status_code == 400 and answer.get_json()["field"] == "file"
    assert message in answer.get_json()["error"]


@pytest.mark.parametrize("body, field", [({"text": ""}, "text"), ({"text": 3}, "text"), ([], "body"),
                                         ({"text": "a\x00b"}, "text"),
                                         ({"text": SCENE, "characters": [{"traits": "x"}]}, "characters[0].name")])
def test_bad_json_is_refused_naming_the_field(client, body, field):
    answer = client.post("/api/screenplays", json=body)
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


def test_a_script_past_the_limit_is_refused(make_app):
    client = make_app(max_screenplay_chars=1000).test_client()
    answer = client.post("/api/screenplays", json={"text": SCENE + "\nMore action.\n" * 100})
    assert (answer.status_code, answer.get_json()["field"]) == (400, "text")
    assert "STORYBOARD_MAX_SCREENPLAY_CHARS" in answer.get_json()["error"]


def test_a_scene_becomes_a_board_through_the_one_creation_path(client):
    scene = client.post("/api/screenplays", json={"text": SCENE}).get_json()["scenes"][0]
    characters = [{**c, "traits": f"{c['name']}'s face"} for c in scene["characters"]]
    answer = client.post("/api/storyboards", json={"story": scene["story"], "characters": characters,
                                                   "panels": scene["panels"], "seed": 3})
    assert answer.status_code == 202
    board = answer.get_json()
    assert board["title"] == "INT. KITCHEN - NIGHT"
    assert [c["name"] for c in board["characters"]] == ["Mara", "Ilya"]
    assert [(f["caption"], f["dialogue"], f["cast"]) for f in board["frames"]] == [
        (p["caption"], p["dialogue"], p["cast"]) for p in scene["panels"]]
    second = board["frames"][1]  # its dialogue is read too
    assert second["duration"] == seconds_of(frames_for(default_seconds(second["caption"], second["dialogue"]), 24), 24)
