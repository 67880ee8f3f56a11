"""The animatic MP4 (animatic.py) read back with PyAV, and its jobs through the API
(animatic_jobs.py): progress, cancel, the snapshot, the download."""

import io
import threading

import av
import pytest
from PIL import Image

import animatic_jobs
from animatic import AnimaticOptions, video_size, write_animatic
from cut import Cut
from helpers import png_bytes, post_board, wait_for, wait_until


def board(frames, aspect="16:9"):
    return {"id": "b1", "title": "Test", "fps": 24.0, "settings": {"aspect": aspect}, "frames": frames}


FRAMES = [{"id": 1, "caption": "A girl finds a map.", "duration": 1.0},
          {"id": 2, "caption": "Она поднимается на холм.", "dialogue": "GIRL: Look!", "duration": 0.5},
          {"id": 3, "caption": "", "duration": 0.25}]


def read_back(path):
    """(video stream facts, decoded frame count, subtitle texts with their start and length in ms)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts = (video.codec_context.name, video.codec_context.pix_fmt, video.width, video.height,
                 video.average_rate, container.duration / av.time_base)
        count = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        assert stream.codec_context.name == "mov_text"
        cues = [(packet.pts, packet.duration, subtitle.dialogue.decode())
                for packet in container.demux(stream) for subtitle in packet.decode()]
    return facts, count, cues


def test_the_mp4_holds_each_panel_for_its_frames_with_a_caption_track(tmp_path):
    cut = Cut.from_board(board(FRAMES))
    write_animatic(cut, {1: png_bytes((1344, 768), "red"), 2: png_bytes((1344, 768), "blue")}, tmp_path / "a.mp4")
    facts, count, cues = read_back(tmp_path / "a.mp4")
    assert facts == ("h264", "yuv420p", 1280, 720, 24, 1.75)
    assert count == cut.frames == 42
    assert cues == [(0, 1000, "A girl finds a map."), (1000, 500, "Она поднимается на холм.\nGIRL: Look!")]


def test_push_in_and_burned_captions_change_the_picture_not_the_timing(tmp_path):
    cut = Cut.from_board(board(FRAMES[:1]))
    images = {1: png_bytes((1344, 768), "gray")}
    write_animatic(cut, images, tmp_path / "plain.mp4")
    write_animatic(cut, images, tmp_path / "both.mp4", AnimaticOptions(push_in=True, burn_in=True))

    def last_frame(name):
        with av.open(str(tmp_path / name)) as container:
            return list(container.decode(video=0))[-1].to_image()

    assert read_back(tmp_path / "both.mp4")[1] == 24
    plain, both = last_frame("plain.mp4"), last_frame("both.mp4")
    band = (0, 660, 1280, 720)  # the bottom of the frame, where the caption is burned in
    assert plain.crop(band).getextrema() != both.crop(band).getextrema()


def test_a_pushed_in_panel_moves_towards_its_centre(tmp_path):
    picture = Image.new("RGB", (1280, 720), "white")
    picture.paste((0, 0, 0), (0, 0, 40, 720))  # a black stripe at the left edge
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_animatic(Cut.from_board(board(FRAMES[:1])), {1: buffer.getvalue()}, tmp_path / "p.mp4",
                   AnimaticOptions(push_in=True))
    with av.open(str(tmp_path / "p.mp4")) as container:
        frames = [frame.to_image().convert("L") for frame in container.decode(video=0)]
    dark = [sum(1 for x in range(100) if image.getpixel((x, 360)) < 128) for image in (frames[0], frames[-1])]
    assert dark[1] < dark[0]  # the stripe leaves the frame as the camera pushes in


@pytest.mark.parametrize("aspect, resolution, size", [("16:9", "1080p", (1920, 1080)), ("9:16", "720p", (720, 1280)),
                                                      ("4:3", "720p", (960, 720)), ((1155, 896), "720p", (928, 720))])
def test_the_video_is_at_the_boards_aspect_with_even_sides(aspect, resolution, size):
    assert video_size(aspect if isinstance(aspect, tuple) else tuple(map(int, aspect.split(":"))), resolution) == size


def test_canceling_between_frames_stops_the_writer(tmp_path):
    calls = []
    with pytest.raises(Exception) as raised:
        write_animatic(Cut.from_board(board(FRAMES)), {}, tmp_path / "c.mp4",
                       progress=lambda done, total: calls.append((done, total)), canceled=lambda: len(calls) >= 5)
    assert type(raised.value).__name__ == "Canceled" and calls[-1] == (5, 42)


# --- Through the API ------------------------------------------------------------------------


@pytest.fixture
def held(monkeypatch):
    """The animatic writer waits after its first frame until ``release`` is set."""
    started, release = threading.Event(), threading.Event()
    real = animatic_jobs.write_animatic

    def write(cut, images, path, options, progress, canceled):
        def report(done, total):
            progress(done, total)
            if done == 1:
                started.set()
                assert release.wait(30)
        return real(cut, images, path, options, progress=report, canceled=canceled)

    monkeypatch.setattr(animatic_jobs, "write_animatic", write)
    return started, release


def finished(client, job):
    return wait_until(lambda: (lambda j: j if j["state"] != "running" else None)(client.get(job["links"]["self"]).get_json()),
                      "the animatic job never finished")


def test_an_animatic_is_written_and_downloaded_through_the_api(client):
    board_json = wait_for(client, post_board(client).get_json()["id"])
    answer = client.post(board_json["export"]["animatic"], json={"resolution": "720p", "burn_in": True})
    assert answer.status_code == 202 and answer.get_json()["state"] == "running"
    job = finished(client, answer.get_json())
    assert job["state"] == "done" and job["frames_done"] == job["frames_total"]
    download = client.get(job["links"]["download"])
    assert download.mimetype == "video/mp4"
    assert download.headers["Content-Disposition"].endswith(f"storyboard-{board_json['id']}.mp4")
    path = client.application.extensions["studio"].store.root / "download.mp4"
    path.write_bytes(download.data)
    facts, count, cues = read_back(path)
    assert count == job["frames_total"] and len(cues) == 3


def test_an_animatic_reports_progress_and_can_be_canceled(client, held):
    started, release = held
    board_json = wait_for(client, post_board(client).get_json()["id"])
    job = client.post(board_json["export"]["animatic"]).get_json()
    assert started.wait(30)
    assert client.get(job["links"]["self"]).get_json()["frames_done"] == 1
    assert client.post(job["links"]["cancel"]).status_code == 202
    release.set()
    job = finished(client, job)
    assert job["state"] == "canceled" and "download" not in job["links"]
    folder = client.application.extensions["studio"].animatics.folder
    assert list(folder.glob("*.mp4")) == []  # the incomplete file is removed
    assert client.get(f"{job['links']['self']}/animatic.mp4").status_code == 409


def test_an_animatic_is_written_from_the_board_as_it_was_asked_for(client, held):
    started, release = held
    board_json = wait_for(client, post_board(client).get_json()["id"])
    job = client.post(board_json["export"]["animatic"]).get_json()
    assert started.wait(30)
    # Meanwhile the board changes: its order, a panel's duration, and a panel redrawn with a new caption.
    client.put(f"/api/storyboards/{board_json['id']}/order", json={"order": [3, 2, 1]})
    client.patch(board_json["frames"][2]["links"]["self"], json={"duration": 9})
    client.post(f"/api/storyboards/{board_json['id']}/frames/1/regenerate", json={"caption": "Something else."})
    changed = wait_for(client, board_json["id"], ("done",))
    assert [f["caption"] for f in changed["frames"]] != [f["caption"] for f in board_json["frames"]]
    release.set()
    job = finished(client, job)
    path = client.application.extensions["studio"].store.root / "snap.mp4"
    path.write_bytes(client.get(job["links"]["download"]).data)
    _facts, count, cues = read_back(path)
    assert [text for _start, _length, text in cues] == [f["caption"] for f in board_json["frames"]]
    assert count == job["frames_total"] == round(board_json["duration"] * 24)


def test_a_second_animatic_is_refused_while_the_export_slots_are_taken(make_app, held):
    started, release = held
    client = make_app(export_concurrency=1).test_client()
    board_json = wait_for(client, post_board(client).get_json()["id"])
    job = client.post(board_json["export"]["animatic"]).get_json()
    assert started.wait(30)
    answer = client.get(board_json["export"]["pdf"])
    assert answer.status_code == 429 and answer.get_json()["field"] == "export"
    release.set()
    assert finished(client, job)["state"] == "done"
    assert client.get(board_json["export"]["pdf"]).status_code == 200  # the slot is given back


def test_a_bad_resolution_is_refused_by_name(client):
    board_json = wait_for(client, post_board(client).get_json()["id"])
    answer = client.post(board_json["export"]["animatic"], json={"resolution": "8k"})
    assert answer.status_code == 400 and answer.get_json()["field"] == "resolution"


def test_an_unknown_job_is_404(client):
    board_json = wait_for(client, post_board(client).get_json()["id"])
    assert client.get(f"/api/storyboards/{board_json['id']}/animatics/nope").status_code == 404


def test_a_crashed_studios_animatics_are_removed_at_start(make_app, tmp_path):
    folder = tmp_path / "data" / "exports"
    folder.mkdir(parents=True)
    (folder / "left.mp4").write_bytes(b"partial")
    make_app(data_dir=tmp_path / "data")
    assert not (folder / "left.mp4").exists()


def test_a_burned_in_caption_is_drawn_with_the_pdfs_font_that_has_its_script():
    from animatic import _font
    from exporting import find_fallback_fonts, find_unicode_font

    cjk = next((path for family, path, _face in find_fallback_fonts() if family == "CJK"), None)
    if cjk is None:
        pytest.skip("no CJK font here (CI installs fonts-noto-cjk)")
    assert _font(20, "Кошка спит").path == str(find_unicode_font())
    assert _font(20, "猫在屋顶上睡觉").path == str(cjk)


def test_a_boards_next_animatic_replaces_its_last_and_its_file(client):
    board_json = wait_for(client, post_board(client).get_json()["id"])
    first = finished(client, client.post(board_json["export"]["animatic"]).get_json())
    folder = client.application.extensions["studio"].animatics.folder
    assert [p.name for p in folder.glob("*.mp4")] == [f"{first['id']}.mp4"]
    second = finished(client, client.post(board_json["export"]["animatic"]).get_json())
    assert client.get(first["links"]["self"]).status_code == 404
    assert [p.name for p in folder.glob("*.mp4")] == [f"{second['id']}.mp4"]


def test_closing_the_studio_cancels_its_animatics_and_removes_their_files(client, held):
    started, release = held
    board_json = wait_for(client, post_board(client).get_json()["id"])
    client.post(board_json["export"]["animatic"])
    assert started.wait(30)
    jobs = client.application.extensions["studio"].animatics
    closing = threading.Thread(target=jobs.close)
    closing.start()
    release.set()
    closing.join(30)
    assert not closing.is_alive() and list(jobs.folder.glob("*.mp4")) == []
