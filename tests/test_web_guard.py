"""What reaches the studio from outside one request: host names and proxies, other
processes on the same data dir, reads racing a delete or a redraw, and header and query
values that only look like numbers (issue 22)."""

import pytest

from helpers import post_board, wait_for


# --- Values that only look like numbers -------------------------------------------------


@pytest.mark.parametrize("seq", ["²", "١٢", "1_0", "12 "])
def test_a_last_event_id_int_refuses_replays_from_the_start(make_app, seq):
    client = make_app().test_client()
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id)
    first = client.get(f"/api/storyboards/{board_id}/events").get_data(as_text=True)
    boot = next(line[4:] for line in first.splitlines() if line.startswith("id: ")).partition("-")[0]
    for headers, query in (({"Last-Event-ID": f"{boot}-{seq}"}, ""), ({}, f"?last_event_id={boot}-{seq}")):
        response = client.get(f"/api/storyboards/{board_id}/events{query}", headers=headers)
        assert response.status_code == 200 and response.get_data(as_text=True) == first


@pytest.mark.parametrize("value", ["١٢", "1_0", "²"])
def test_a_number_field_takes_ascii_digits_only(make_app, value):
    response = post_board(make_app().test_client(), seed=value)
    assert response.status_code == 400 and response.get_json()["field"] == "seed"


def test_a_frame_count_text_that_isdigit_but_not_a_number_is_an_input_error():
    from errors import InputError
    from prompt_enhancer import split_story

    with pytest.raises(InputError):
        split_story("A premise.", frames="²")
