"""A panel's takes through the API: a redraw adds one, choosing shows it again (instantly),
an unchosen one can be deleted, and exports show the chosen one."""

import io
import zipfile

import pytest

from exporting import read_png_parameters
from helpers import post_board, wait_for
from studio import studio_of


@pytest.fixture
def redrawn(client):
    """A board of three whose panel 2 was redrawn once with seed 99: (first answer, after the redraw)."""
    board = wait_for(client, post_board(client).get_json()["id"])
    client.post(board["frames"][1]["links"]["regenerate"], json={"seed": 99})
    return board, wait_for(client, board["id"], ("done",))


def test_a_redraw_adds_a_take_with_what_made_it_and_shows_it(redrawn):
    _, board = redrawn
    frame = board["frames"][1]
    assert frame["take"] == 2 and [t["id"] for t in frame["takes"]] == [1, 2]
    first, second = frame["takes"]
    assert (first["seed"], second["seed"], second["parent"], second["mode"]) == (8, 99, None, "fast")
    assert frame["seed"] == 99


def test_choosing_the_first_take_undoes_the_redraw(client, redrawn):
    before, board = redrawn
    frame = board["frames"][1]
    answer = client.put(frame["links"]["take"], json={"take": 1})
    assert answer.status_code == 200
    shown = answer.get_json()["frames"][1]
    assert (shown["take"], shown["seed"], shown["status"]) == (1, 8, "done")
    assert client.get(shown["image_url"]).data == client.get(before["frames"][1]["image_url"]).data
    assert shown["image_url"] not in (before["frames"][1]["image_url"], frame["image_url"])  # no stale cache


def test_each_take_serves_its_own_image(client, redrawn):
    frame = redrawn[1]["frames"][1]
    seeds = [read_png_parameters(client.get(take["image_url"]).data)["seed"] for take in frame["takes"]]
    assert seeds == [8, 99]


def test_the_exports_show_the_chosen_take(client, redrawn):
    before, board = redrawn
    client.put(board["frames"][1]["links"]["take"], json={"take": 1})
    archive = zipfile.ZipFile(io.BytesIO(client.get(board["export"]["zip"]).data))
    assert archive.read("panel-02.png") == client.get(before["frames"][1]["image_url"]).data


@pytest.mark.parametrize("body,status", [({"take": 3}, 404), ({"take": "x"}, 400), ({}, 400)])
def test_a_take_that_is_not_there_is_refused(client, redrawn, body, status):
    answer = client.put(redrawn[1]["frames"][1]["links"]["take"], json=body)
    assert answer.status_code == status and answer.get_json()["field"] == "take"


def test_an_unchosen_take_is_deleted_with_its_file(client, app, redrawn):
    frame = redrawn[1]["frames"][1]
    assert client.delete(frame["takes"][0]["links"]["delete"]).status_code == 204
    board = client.get(redrawn[1]["links"]["self"]).get_json()
    assert [t["id"] for t in board["frames"][1]["takes"]] == [2]
    assert client.get(frame["takes"][0]["image_url"]).status_code == 404
    folder = studio_of(app).store.boards_dir / board["id"]
    assert sorted(p.name for p in folder.glob("frame-2-*")) == ["frame-2-v2.png"]


def test_the_chosen_take_is_not_deleted_and_an_unknown_one_is_not_found(client, redrawn):
    frame = redrawn[1]["frames"][1]
    assert client.delete(frame["takes"][1]["links"]["delete"]).status_code == 409
    assert client.delete(frame["takes"][1]["links"]["delete"].replace("/takes/2", "/takes/9")).status_code == 404
    assert client.put(frame["links"]["take"].replace("/frames/2/", "/frames/9/"), json={"take": 1}).status_code == 404


def test_a_panel_keeps_at_most_the_setting_s_takes(make_app):
    client = make_app(takes_per_panel=2).test_client()
    board = wait_for(client, post_board(client).get_json()["id"])
    for seed in (20, 21):
        client.post(board["frames"][0]["links"]["regenerate"], json={"seed": seed})
        board = wait_for(client, board["id"], ("done",))
    assert [(t["id"], t["seed"]) for t in board["frames"][0]["takes"]] == [(2, 20), (3, 21)]


# --- Refine ------------------------------------------------------------------------------------


def test_a_refine_adds_a_take_made_from_the_chosen_one(client, generator, redrawn):
    _, board = redrawn
    client.put(board["frames"][1]["links"]["take"], json={"take": 1})
    answer = client.post(board["frames"][1]["links"]["refine"], json={"preset": "quality", "strength": 0.5})
    assert answer.status_code == 202
    frame = wait_for(client, board["id"], ("done",))["frames"][1]
    assert frame["take"] == 3 and frame["takes"][2]["parent"] == 1 and frame["takes"][2]["mode"] == "quality"
    assert generator.requests[-1].strength == 0.5
    assert generator.requests[-1].panels[0].init_image is not None


def test_a_board_refine_refines_every_drawn_panel(client, generator, redrawn):
    _, board = redrawn
    assert client.post(board["links"]["refine"], json={}).status_code == 202
    after = wait_for(client, board["id"], ("done",))
    assert [(f["take"], f["takes"][-1]["parent"]) for f in after["frames"]] == [(2, 1), (3, 2), (2, 1)]
    assert generator.requests[-1].strength == 0.35  # STORYBOARD_REFINE_STRENGTH's default


@pytest.mark.parametrize("body,field", [({"preset": "lightning"}, "preset"), ({"strength": 0}, "strength"),
                                        ({"strength": 1.5}, "strength"), ({"strength": "x"}, "strength"),
                                        ({"preset": "fast", "strength": 0.05}, "strength")])
def test_a_refine_that_cannot_run_is_refused(client, redrawn, body, field):
    answer = client.post(redrawn[1]["frames"][0]["links"]["refine"], json=body)
    assert answer.status_code == 400 and answer.get_json()["field"] == field


def test_a_panel_not_drawn_yet_is_not_refined(make_app):
    client = make_app(start_worker=False).test_client()
    board = post_board(client).get_json()
    assert client.post(board["frames"][0]["links"]["refine"]).status_code == 409
    assert client.post(board["links"]["refine"]).status_code == 409
