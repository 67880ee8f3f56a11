"""Routes with the Flask test client and a fake generator."""

import base64
import io
import json
import zipfile

import pytest
from pypdf import PdfReader

from studio import studio_of
from exporting import read_png_parameters
from fakes import FakeGenerator
from helpers import STORY, png_bytes, post_board, wait_for



def test_a_storyboard_is_accepted_with_one_panel_per_line(client):
    answer = post_board(client)
    assert answer.status_code == 202
    assert [f["caption"] for f in answer.get_json()["frames"]] == STORY.splitlines()


def test_every_panel_is_drawn_and_served(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    assert board["status"] == "done" and all(f["status"] == "done" for f in board["frames"])
    assert client.get(board["frames"][0]["image_url"]).mimetype == "image/png"


def test_panel_seeds_follow_the_board_seed(client):
    board = wait_for(client, post_board(client, seed=40).get_json()["id"])
    assert [f["seed"] for f in board["frames"]] == [40, 41, 42]


def test_panel_png_carries_its_parameters(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    meta = read_png_parameters(client.get(board["frames"][1]["image_url"]).data)
    assert meta["seed"] == 8 and meta["caption"] == "She climbs the hill."


def test_a_paragraph_with_a_count_gives_that_many_panels(client):
    story = "A knight rides out. He meets a dragon. They talk. He rides home."
    answer = client.post("/api/storyboards", json={"story": story, "frames": 4})
    assert len(answer.get_json()["frames"]) == 4 and answer.get_json()["notices"] == []


def test_a_short_premise_draws_the_count_asked_for_and_says_how(client):
    answer = client.post("/api/storyboards", json={"story": "A knight rides out. He meets a dragon.", "frames": 4})
    board = answer.get_json()
    assert len(board["frames"]) == 4 and "built-in planner" in board["notices"][0]
    assert [f["caption"] for f in board["frames"]][1:3] == ["A knight rides out.", "He meets a dragon."]
    assert client.get(f"/api/storyboards/{board['id']}").get_json()["notices"] == board["notices"]


def test_a_paragraph_with_fewer_beats_than_asked_draws_fewer_and_says_why(client):
    answer = client.post("/api/storyboards", json={"story": "Рыцарь выезжает. Он встречает дракона.", "frames": 4})
    board = answer.get_json()
    assert len(board["frames"]) == 2 and "not 4" in board["notices"][0]
    assert client.get(f"/api/storyboards/{board['id']}").get_json()["notices"] == board["notices"]


def test_a_story_not_in_english_is_noticed_and_captions_keep_its_words(client):
    story = "Мара просыпается до рассвета.\nОна берёт карту деда."
    board = client.post("/api/storyboards", json={"story": story}).get_json()
    assert any("not in English" in n for n in board["notices"])
    assert [f["caption"] for f in board["frames"]] == story.splitlines()


def test_uploaded_reference_by_form(client, generator):
    data = {"story": STORY, "reference": (io.BytesIO(png_bytes()), "face.png")}
    board = wait_for(client, client.post("/api/storyboards", data=data).get_json()["id"])
    assert board["reference"]["kind"] == "uploaded"
    assert client.get(board["reference"]["image_url"]).status_code == 200
    assert generator.requests[0].locks[0].reference is not None


def test_uploaded_reference_as_base64(client):
    encoded = "data:image/jpeg;base64," + base64.b64encode(png_bytes(fmt="JPEG")).decode()
    board = wait_for(client, post_board(client, reference_image=encoded).get_json()["id"])
    assert board["reference"]["kind"] == "uploaded"


def test_without_reference_the_generated_portrait_is_kept(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    assert board["reference"]["kind"] == "generated"


def test_lock_off_sends_no_reference(client, generator):
    wait_for(client, post_board(client, identity_lock=False).get_json()["id"])
    assert generator.requests[0].identity_lock is False and generator.requests[0].locks[0].portrait is None


@pytest.mark.parametrize("fields,field", [
    ({"story": ""}, "story"),
    ({"story": "   "}, "story"),
    ({"story": 42}, "story"),
    ({"story": "x" * 5000}, "story"),
    ({"frames": 0}, "frames"),
    ({"frames": 9}, "frames"),
    ({"frames": "six"}, "frames"),
    ({"frames": 2.5}, "frames"),
    ({"preset": "turbo"}, "preset"),
    ({"aspect": "2:1"}, "aspect"),
    ({"seed": -1}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"seed": True}, "seed"),
    ({"identity_lock": "maybe"}, "identity_lock"),
    ({"character": "x" * 3000}, "character"),
    ({"reference_image": "@@not base64@@"}, "reference_image"),
])
def test_bad_fields_are_named(client, fields, field):
    answer = client.post("/api/storyboards", json={"story": "One line", **fields})
    assert answer.status_code == 400 and answer.get_json()["field"] == field


def test_a_body_that_is_not_an_object_is_refused(client):
    answer = client.post("/api/storyboards", data="[1]", content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["field"] == "body"


def test_history_lists_boards_newest_first(client):
    first = post_board(client).get_json()["id"]
    second = post_board(client).get_json()["id"]
    wait_for(client, second)
    ids = [b["id"] for b in client.get("/api/storyboards").get_json()["storyboards"]]
    assert ids[:2] == [second, first]


def test_delete_removes_the_board_and_its_files(client, app):
    board = wait_for(client, post_board(client).get_json()["id"])
    assert client.delete(f"/api/storyboards/{board['id']}").status_code == 204
    assert client.get(f"/api/storyboards/{board['id']}").status_code == 404
    assert not (studio_of(app).store.boards_dir / board["id"]).exists()


def test_regenerate_with_same_seed_and_new_caption(client, generator):
    board = wait_for(client, post_board(client).get_json()["id"])
    answer = client.post(f"/api/storyboards/{board['id']}/frames/2/regenerate", json={"seed": 8, "caption": "She runs"})
    assert answer.status_code == 202
    after = wait_for(client, board["id"], ("done",))
    frame = after["frames"][1]
    assert (frame["caption"], frame["seed"], frame["status"]) == ("She runs", 8, "done")
    assert frame["image_url"] != board["frames"][1]["image_url"]  # a new version
    assert "She runs" in generator.requests[-1].panels[0].prompt


def test_regenerate_without_seed_picks_a_new_one(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    client.post(f"/api/storyboards/{board['id']}/frames/1/regenerate")
    after = wait_for(client, board["id"], ("done",))
    assert after["frames"][0]["seed"] != 7 and after["frames"][1]["seed"] == 8


def test_reorder_changes_the_display_order(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    answer = client.put(f"/api/storyboards/{board['id']}/order", json={"order": [3, 1, 2]})
    assert [(f["index"], f["id"]) for f in answer.get_json()["frames"]] == [(1, 3), (2, 1), (3, 2)]
    assert [f["id"] for f in client.get(f"/api/storyboards/{board['id']}").get_json()["frames"]] == [3, 1, 2]


@pytest.mark.parametrize("order", [[1, 2], [1, 1, 2], [1, 2, 4], "123", [1, 2, True]])
def test_a_bad_order_is_refused(client, order):
    board = wait_for(client, post_board(client).get_json()["id"])
    answer = client.put(f"/api/storyboards/{board['id']}/order", json={"order": order})
    assert answer.status_code == 400 and answer.get_json()["field"] == "order"


def test_exports_follow_the_display_order(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    client.put(f"/api/storyboards/{board['id']}/order", json={"order": [3, 2, 1]})
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/storyboards/{board['id']}/export.zip").data))
    saved = json.loads(archive.read("storyboard.json"))
    assert [f["caption"] for f in saved["frames"]] == STORY.splitlines()[::-1]
    assert {"panel-01.png", "panel-02.png", "panel-03.png", "reference-1.png"} <= set(archive.namelist())
    assert client.get(f"/api/storyboards/{board['id']}/export.pdf").data.startswith(b"%PDF")


def test_events_stream_progress_frames_and_the_end(client):
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id)
    body = client.get(f"/api/storyboards/{board_id}/events").get_data(as_text=True)
    kinds = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "status" and "progress" in kinds and kinds.count("frame") == 3
    assert kinds[-1] == "status" and '"done"' in body.rsplit("event: status", 1)[1]


def test_events_resume_after_the_last_event_id(client):
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id)
    body = client.get(f"/api/storyboards/{board_id}/events").get_data(as_text=True)
    ids = [line[4:] for line in body.splitlines() if line.startswith("id: ")]
    resumed = client.get(f"/api/storyboards/{board_id}/events", headers={"Last-Event-ID": ids[-3]})
    assert [line[4:] for line in resumed.get_data(as_text=True).splitlines() if line.startswith("id: ")] == ids[-2:]


def test_cancel_a_running_board(client, generator):
    generator.release.clear()
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id, ("running",))
    assert client.post(f"/api/storyboards/{board_id}/cancel").status_code == 202
    generator.release.set()
    assert wait_for(client, board_id)["status"] == "canceled"


def test_resume_a_canceled_board_draws_the_rest(client, generator):
    generator.release.clear()
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id, ("running",))
    client.post(f"/api/storyboards/{board_id}/cancel")
    generator.release.set()
    wait_for(client, board_id)
    assert client.post(f"/api/storyboards/{board_id}/resume").status_code == 202
    assert wait_for(client, board_id, ("done",))["status"] == "done"


def progress_labels(app, board_id):
    events = studio_of(app).hub.wait(board_id, 0, timeout=0)
    return [data["label"] for _, kind, data in events if kind == "progress"]


def test_a_redrawn_panel_is_named_by_its_place_on_the_board(client, app):
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id)
    studio_of(app).hub.forget(board_id)
    client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={})
    wait_for(client, board_id, ("done",))
    assert set(progress_labels(app, board_id)) == {"Panel 2 of 3"}


def test_a_resumed_board_names_panels_by_their_place(client, app, generator):
    generator.pause_at = (1, 12)  # panel 1's last step
    board_id = post_board(client).get_json()["id"]
    assert generator.paused.wait(30)
    client.post(f"/api/storyboards/{board_id}/cancel")
    generator.resume.set()
    wait_for(client, board_id)
    studio_of(app).hub.forget(board_id)
    client.post(f"/api/storyboards/{board_id}/resume")
    wait_for(client, board_id, ("done",))
    assert progress_labels(app, board_id)[0] == "Panel 2 of 3" and "Panel 1 of 3" not in progress_labels(app, board_id)


def test_a_failed_panel_is_reported_and_not_saved(make_app):
    app = make_app(FakeGenerator(fail_on={2}))
    client = app.test_client()
    board = wait_for(client, post_board(client).get_json()["id"])
    studio_of(app).backend.stop()
    assert [f["status"] for f in board["frames"]] == ["done", "failed", "done"]
    assert board["frames"][1]["image_url"] is None and board["frames"][1]["error"] == "fake failure"


def test_a_model_that_cannot_load_fails_the_board_with_words(make_app):
    from local_image_generator import ModelNotAvailable

    def load():
        raise ModelNotAvailable("Cannot load SDXL: run once with network access")

    app = make_app(load_generator=load)
    client = app.test_client()
    board = wait_for(client, post_board(client).get_json()["id"])
    health = client.get("/api/health").get_json()
    studio_of(app).backend.stop()
    assert board["status"] == "failed" and "network access" in board["error"]
    assert health["model"] == "error" and health["status"] == "ok"
    # The full message is the board's; panels only say they were not drawn.
    assert {f["error"] for f in board["frames"]} == {"Not drawn: the storyboard failed."}


def test_health_and_presets(client):
    assert client.get("/api/health").get_json()["status"] == "ok"
    presets = client.get("/api/presets").get_json()
    assert [p["name"] for p in presets["presets"]] == ["ultra_fast", "fast", "balanced", "quality", "lightning", "draft"]
    assert presets["default_preset"] == "fast"
    assert {"name": "16:9", "width": 80, "height": 48} in presets["aspects"]


def test_health_says_the_demo_and_whether_the_tiny_models_are_built_yet(make_app, monkeypatch):
    import tiny_models

    health = make_app(start_worker=False).test_client().get("/api/health").get_json()
    assert health["demo"] is True and health["loading_message"].startswith("Building the tiny offline models")
    monkeypatch.setattr(tiny_models, "is_built", lambda cache_dir: True)
    health = make_app(start_worker=False).test_client().get("/api/health").get_json()
    assert health["loading_message"] == "Loading the tiny offline models…"
    health = make_app(start_worker=False, model="sdxl").test_client().get("/api/health").get_json()
    assert health["demo"] is False and "SDXL" in health["loading_message"]


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="story-form"' in page.data


def test_a_rebound_host_name_is_refused(client):
    # DNS rebinding: a site's own name pointed at 127.0.0.1 must not read or drive the studio.
    assert client.get("/api/storyboards", base_url="http://evil.example").status_code == 403
    assert client.get("/api/storyboards", base_url="http://127.0.0.1:8080").status_code == 200


def test_history_rows_say_the_mode_and_the_panel_count(client):
    wait_for(client, post_board(client, preset="quality").get_json()["id"])
    row = client.get("/api/storyboards").get_json()["storyboards"][0]
    assert row["mode"] == "Quality" and row["frames_total"] == 3 and row["thumbnail_url"]


def test_history_thumbnail_changes_when_the_first_panel_is_redrawn(client):
    board = wait_for(client, post_board(client).get_json()["id"])
    before = client.get("/api/storyboards").get_json()["storyboards"][0]["thumbnail_url"]
    client.post(f"/api/storyboards/{board['id']}/frames/1/regenerate")
    wait_for(client, board["id"], ("done",))
    assert client.get("/api/storyboards").get_json()["storyboards"][0]["thumbnail_url"] != before


def test_a_failed_preload_leaves_the_worker_serving(make_app):
    from local_image_generator import ModelNotAvailable

    attempts = []

    def load():
        attempts.append(1)
        if len(attempts) == 1:
            raise ModelNotAvailable("not cached yet")
        return FakeGenerator()

    app = make_app(load_generator=load, preload=True)
    client = app.test_client()
    board = wait_for(client, post_board(client).get_json()["id"])
    studio_of(app).backend.stop()
    assert board["status"] == "done" and len(attempts) == 2


def test_an_unexpected_error_is_words_not_a_traceback(client, app, monkeypatch):
    monkeypatch.setattr(studio_of(app).store, "boards", lambda: 1 / 0)
    answer = client.get("/api/storyboards")
    assert answer.status_code == 500 and "server log" in answer.get_json()["error"]
    assert "ZeroDivisionError" not in answer.get_data(as_text=True)


# --- Drawing from an edited plan (POST /api/plans, then panels here) ------------------------

PLAN = [{"caption": "Мара бежит под дождём.", "scene": "Mara runs through the rain", "shot": "close-up"},
        {"caption": "Она находит карту.", "scene": "she finds a map on the ground"}]


def test_a_board_is_drawn_from_an_edited_plan_with_english_scenes(client):
    answer = client.post("/api/storyboards", json={"panels": PLAN, "seed": 3, "identity_lock": False})
    assert answer.status_code == 202
    board = wait_for(client, answer.get_json()["id"])
    assert [f["caption"] for f in board["frames"]] == [p["caption"] for p in PLAN]
    assert [f["scene"] for f in board["frames"]] == [p["scene"] for p in PLAN]
    assert "Mara runs through the rain" in board["frames"][0]["prompt"] and "Мара" not in board["frames"][0]["prompt"]
    assert board["frames"][0]["shot"] == "close-up" and board["story"].splitlines()[0] == PLAN[0]["caption"]
    assert board["notices"] == []  # the scenes are English


def test_a_plan_arrives_as_json_text_in_a_form(client):
    form = {"panels": json.dumps(PLAN), "identity_lock": "false"}
    board = client.post("/api/storyboards", data=form).get_json()
    assert [f["scene"] for f in board["frames"]] == [p["scene"] for p in PLAN]


@pytest.mark.parametrize("panels,field", [
    ([{"scene": "no caption"}], "panels[0].caption"),
    ([{"caption": "ok", "shot": "drone shot"}], "panels[0].shot"),
    ("[[[", "panels"),
    ([{"caption": "x"}] * 9, "panels"),
])
def test_a_bad_plan_names_the_field(client, panels, field):
    answer = client.post("/api/storyboards", json={"panels": panels})
    assert answer.status_code == 400 and answer.get_json()["field"] == field


def test_a_redraw_can_change_the_scene(client):
    board_id = client.post("/api/storyboards", json={"panels": PLAN, "identity_lock": False}).get_json()["id"]
    wait_for(client, board_id)
    client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={"scene": "she reads the map by a fire"})
    frame = wait_for(client, board_id, ("done",))["frames"][1]
    assert frame["scene"] == "she reads the map by a fire" and "reads the map" in frame["prompt"]
    assert frame["caption"] == PLAN[1]["caption"]


def test_a_form_story_keeps_plain_line_breaks(client):
    form = {"story": "One.\r\nTwo.\rThree.", "reference": (io.BytesIO(png_bytes()), "face.png")}
    board = client.post("/api/storyboards", data=form).get_json()
    assert board["story"] == "One.\nTwo.\nThree." and len(board["frames"]) == 3


def test_presets_list_the_shot_types_a_plan_may_name(client):
    from prompt_enhancer import SHOT_TYPES

    assert client.get("/api/presets").get_json()["shots"] == list(SHOT_TYPES)


def test_a_blank_scene_on_redraw_means_the_caption_again(client):
    board_id = client.post("/api/storyboards", json={"panels": PLAN, "identity_lock": False}).get_json()["id"]
    wait_for(client, board_id)
    client.post(f"/api/storyboards/{board_id}/frames/1/regenerate", json={"scene": ""})
    frame = wait_for(client, board_id, ("done",))["frames"][0]
    assert frame["scene"] == frame["caption"] == PLAN[0]["caption"]


def test_the_pdf_names_the_mode_by_its_label(client):
    board = wait_for(client, post_board(client, preset="quality").get_json()["id"])
    assert board["mode"] == "Quality"
    pdf = PdfReader(io.BytesIO(client.get(board["export"]["pdf"]).data)).pages[0].extract_text()
    assert "Quality" in pdf and "Preset" not in pdf


def test_a_board_says_beside_its_pdf_which_text_no_font_here_can_draw(client):
    """The PDF leaves out a script no installed font has and says so at its top; the board's
    answer says the same, for the page to show by the PDF link."""
    board = wait_for(client, post_board(client, "བཀྲ་ཤིས་བདེ་ལེགས").get_json()["id"])
    assert "Text in Tibetan cannot be drawn" in board["pdf_notice"]
    pdf = PdfReader(io.BytesIO(client.get(board["export"]["pdf"]).data)).pages[0].extract_text()
    assert "Text in Tibetan cannot be drawn" in " ".join(pdf.split())
    latin = post_board(client).get_json()
    assert latin["pdf_notice"] is None


def test_with_redis_unreachable_a_new_board_is_refused_and_the_message_says_so(make_app):
    """No Redis answers: the POST is refused (503) and nothing is stored, and the words say so
    (they said new storyboards "wait", and the user waited for a board that never was)."""
    import socket

    from helpers import wait_until

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_app(queue_url=f"redis://127.0.0.1:{port}/0").test_client()
    problem = wait_until(lambda: client.get("/api/health").get_json()["problem"],
                         "health never said Redis was unreachable", timeout=60)
    refused = client.post("/api/storyboards", json={"story": "While Redis is down."})
    assert refused.status_code == 503 and refused.get_json()["error"] == problem
    assert "refused, not stored" in problem and "try again" in problem and "wait" not in problem
    assert client.get("/api/storyboards").get_json()["storyboards"] == []
