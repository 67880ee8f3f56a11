"""The editorial timelines (timeline_export.py), each read back with OpenTimelineIO."""

import io
import zipfile

import opentimelineio as otio
import pytest

from cut import Cut
from helpers import png_bytes, post_board, wait_for
from timeline_export import FORMATS, timeline_text, timeline_zip

BOARD = {"id": "b1", "title": "The map", "fps": 24.0, "settings": {"aspect": "16:9"}, "frames": [
    {"id": 4, "caption": "A girl finds a map.\nIn the attic.", "duration": 1.5, "seed": 11, "prompt": "girl, map"},
    {"id": 2, "caption": "Она поднимается на холм.", "dialogue": "GIRL: Look!", "duration": 2, "seed": 12},
    {"id": 9, "caption": "", "duration": 0.5, "seed": None}]}


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_each_timeline_reads_back_with_one_clip_per_panel_and_its_duration(suffix):
    cut = Cut.from_board(BOARD)
    read = otio.adapters.read_from_string(timeline_text(cut, suffix), adapter_name=FORMATS[suffix])
    clips = list(read.find_clips())
    assert [clip.duration().value for clip in clips] == [36, 48, 12]
    assert all(clip.duration().rate == 24 for clip in clips)
    assert [clip.media_reference.target_url for clip in clips] == ["panel-01.png", "panel-02.png", "panel-03.png"]
    assert [len(clip.markers) for clip in clips] == [1, 1, 1]
    assert read.duration().value == cut.frames


def test_the_otio_clips_carry_caption_prompt_and_seed():
    read = otio.adapters.read_from_string(timeline_text(Cut.from_board(BOARD), "otio"), adapter_name="otio_json")
    first, second = list(read.find_clips())[:2]
    assert first.metadata["storyboard"]["prompt"] == "girl, map" and first.metadata["storyboard"]["seed"] == 11
    assert second.metadata["storyboard"]["caption"] == "Она поднимается на холм."
    assert second.metadata["storyboard"]["dialogue"] == "GIRL: Look!"
    assert first.markers[0].name == "A girl finds a map."  # one line: an EDL comment cannot hold two


def test_the_timeline_zip_holds_the_timelines_beside_the_pngs_they_name(tmp_path):
    buffer = io.BytesIO()
    timeline_zip(Cut.from_board(BOARD), {1: png_bytes(), 2: png_bytes()}, buffer)
    archive = zipfile.ZipFile(buffer)
    assert set(archive.namelist()) == {"storyboard.otio", "storyboard.xml", "storyboard.edl",
                                       "panel-01.png", "panel-02.png"}
    archive.extractall(tmp_path)
    read = otio.adapters.read_from_file(str(tmp_path / "storyboard.otio"))
    named = [clip.media_reference.target_url for clip in read.find_clips()]
    assert [(tmp_path / name).is_file() for name in named] == [True, True, False]  # panel 3 has no image


@pytest.mark.parametrize("name, adapter", [("timeline.otio", "otio_json"), ("timeline.xml", "fcp_xml"),
                                           ("timeline.edl", "cmx_3600")])
def test_the_timelines_download_through_the_api_in_the_boards_order(client, name, adapter):
    board = wait_for(client, post_board(client).get_json()["id"])
    client.put(f"/api/storyboards/{board['id']}/order", json={"order": [3, 1, 2]})
    links = client.get(f"/api/storyboards/{board['id']}").get_json()["export"]
    url = {"timeline.otio": links["otio"], "timeline.xml": links["fcp_xml"], "timeline.edl": links["edl"]}[name]
    answer = client.get(url)
    assert answer.status_code == 200 and name.rpartition(".")[2] in answer.headers["Content-Disposition"]
    clips = list(otio.adapters.read_from_string(answer.get_data(as_text=True), adapter_name=adapter).find_clips())
    assert len(clips) == 3 and [c.name for c in clips] == ["Panel 1", "Panel 2", "Panel 3"]
    if adapter == "otio_json":
        assert [c.metadata["storyboard"]["frame_id"] for c in clips] == [3, 1, 2]


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_an_ntsc_board_keeps_its_frames_in_every_timeline(suffix):
    board = {**BOARD, "fps": 23.976, "frames": [{"id": 1, "caption": "a", "duration": 2.002},
                                                {"id": 2, "caption": "b", "duration": 1.001}]}
    read = otio.adapters.read_from_string(timeline_text(Cut.from_board(board), suffix), adapter_name=FORMATS[suffix])
    clips = list(read.find_clips())
    assert [clip.duration().value for clip in clips] == [48, 24]
    if suffix != "edl":  # an EDL holds timecode, not a rate: its reader assumes 24
        assert all(abs(clip.duration().rate - 24000 / 1001) < 1e-9 for clip in clips)
