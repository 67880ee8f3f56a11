"""Live previews: each step's picture of a panel, from the generator's step callback through the
event hub to the page's event stream (the browser and Redis legs are in test_browser.py and
test_redis_backend.py)."""

import json

import numpy as np
import pytest
from PIL import Image

from config import PRESETS
from events import EventHub
from local_image_generator import PanelJob, StoryboardRequest

FAST = PRESETS["fast"]


def two_panels(steps=2):
    jobs = tuple(PanelJob(i, f"a girl with red hair, scene {i}", "blurry", 100 + i, f"scene {i}") for i in (1, 2))
    return StoryboardRequest(jobs, 48, 48, FAST, identity_lock=False, steps=steps)


def facts(generator, request, previews=True):
    """Everything the generator reports, in order: ("progress" | "preview", panel, step)."""
    seen, images = [], []

    def on_preview(job, step, steps, image):
        seen.append(("preview", job.index, step))
        images.append(image)

    result = generator.generate(request, on_progress=lambda job, step, steps: seen.append(("progress", job.index, step)),
                                on_preview=on_preview if previews else None)
    return seen, images, result


# --- The generator ---------------------------------------------------------------------------


@pytest.mark.parametrize("batched", ["off", "on"])
def test_each_panel_previews_each_step_right_after_it(tiny_settings_factory, batched):
    from local_image_generator import StoryboardGenerator

    generator = StoryboardGenerator.load(tiny_settings_factory(batch_panels=batched))
    seen, images, _ = facts(generator, two_panels(steps=3))
    for panel in (1, 2):
        for step in (1, 2, 3):
            preview = seen.index(("preview", panel, step))
            assert seen.index(("progress", panel, step)) < preview
            if step < 3:
                assert preview < seen.index(("progress", panel, step + 1))
    assert all(isinstance(image, Image.Image) and max(image.size) <= 256 for image in images)


def test_previews_off_load_nothing_and_draw_the_same_pixels(tiny_settings_factory):
    from local_image_generator import StoryboardGenerator

    generator = StoryboardGenerator.load(tiny_settings_factory())
    seen, _, plain = facts(generator, two_panels(), previews=False)
    assert not any(kind == "preview" for kind, _, _ in seen)
    assert generator.previews._taesd is None  # TAESDXL is loaded on the first preview only
    _, _, previewed = facts(generator, two_panels())
    assert generator.previews._taesd is not None
    for a, b in zip(plain.panels, previewed.panels):
        assert np.array_equal(a.pixels, b.pixels)


def test_a_preview_shows_the_schedulers_estimate_of_the_finished_image(tiny_generator, monkeypatch):
    # Euler's step gives x0 beside x_t: an early x_t is mostly noise, its x0 already the composition.
    scheduler = tiny_generator.pipe.scheduler
    estimates, decoded = [], []
    step = type(scheduler).step

    def step_keeping(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        estimates.append(out[1] if isinstance(out, tuple) else out.pred_original_sample)
        return out

    decode = tiny_generator.previews.decode
    monkeypatch.setattr(type(scheduler), "step", step_keeping)
    monkeypatch.setattr(tiny_generator.previews, "decode", lambda latents: decoded.append(latents) or decode(latents))
    request = StoryboardRequest(two_panels().panels[:1], 48, 48, FAST, identity_lock=False, steps=2)
    tiny_generator.generate(request, on_preview=lambda *args: None)
    assert len(decoded) == 2 and all(d.equal(e) for d, e in zip(decoded, estimates))
    assert "step" not in vars(scheduler)  # the scheduler's own step again after the call


# --- The event hub ---------------------------------------------------------------------------


def kinds(hub, board="b"):
    return [(kind, data.get("frame_id"), data.get("step")) for _, kind, data in hub.wait(board, 0, 0)]


def test_the_hub_keeps_only_the_newest_preview_of_each_panel():
    hub = EventHub()
    for step in (1, 2):
        hub.publish("b", "progress", {"step": step})
        for frame in (1, 2):
            hub.publish("b", "preview", {"frame_id": frame, "step": step})
    assert kinds(hub) == [("progress", None, 1), ("progress", None, 2), ("preview", 1, 2), ("preview", 2, 2)]


def test_a_panels_frame_event_ends_its_preview_and_a_status_ends_all():
    hub = EventHub()
    for frame in (1, 2):
        hub.publish("b", "preview", {"frame_id": frame, "step": 1})
    hub.publish("b", "frame", {"frame_id": 1})
    assert kinds(hub) == [("preview", 2, 1), ("frame", 1, None)]
    hub.publish("b", "status", {"status": "canceled"})
    assert kinds(hub) == [("frame", 1, None), ("status", None, None)]


# --- Through the studio ----------------------------------------------------------------------


def recording(hub):
    """Every event ``hub`` publishes, in order, however soon it is superseded."""
    published = []
    publish = hub.publish

    def record(board_id, kind, data):
        published.append((kind, data))
        publish(board_id, kind, data)

    hub.publish = record
    return published


def test_the_first_preview_reaches_the_event_stream_after_the_first_unet_pass(tiny_settings_factory):
    from app import create_app
    from helpers import post_board, wait_for
    from studio import studio_of

    app = create_app(tiny_settings_factory())
    try:
        published = recording(studio_of(app).hub)
        client = app.test_client()
        board = post_board(client, story="A girl finds a map.", preset="ultra_fast", identity_lock=False).get_json()
        assert wait_for(client, board["id"], timeout=120)["status"] == "done"
    finally:
        studio_of(app).backend.stop()
    # By order, not time: the first preview is step 1's, and nothing of a later step (progress
    # is throttled, so step 2's may be skipped) nor the finished panel comes before it.
    events = [(kind, data.get("step")) for kind, data in published if kind in ("preview", "progress", "frame")]
    first = events.index(("preview", 1))
    assert all(kind == "progress" and step == 1 for kind, step in events[:first]), events[:first + 1]
    assert any(kind == "preview" and step > 1 for kind, step in events[first + 1:])  # ultra_fast: more steps follow
    preview = next(data for kind, data in published if kind == "preview")
    assert preview["image"].startswith("data:image/jpeg;base64,") and preview["panel"] == 1
    assert preview["frame_id"] == board["frames"][0]["id"]


def test_previews_off_send_none(make_app):
    from fakes import FakeGenerator
    from helpers import post_board, wait_for
    from studio import studio_of

    app = make_app(FakeGenerator(), live_previews=False)
    published = recording(studio_of(app).hub)
    client = app.test_client()
    board = post_board(client).get_json()
    assert wait_for(client, board["id"])["status"] == "done"
    assert "progress" in [kind for kind, _ in published] and "preview" not in [kind for kind, _ in published]


def read_events(chunks):
    """The (kind, data) of the events in the next chunk of an event stream."""
    text = next(chunks).decode()
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_a_listener_that_does_not_read_never_holds_up_the_drawing(make_app):
    from fakes import FakeGenerator
    from helpers import post_board

    generator = FakeGenerator()
    generator.pause_at = (1, 3)  # the worker stops after panel 1's third step, until resumed
    app = make_app(generator)
    client = app.test_client()
    board = post_board(client, story="A girl finds a map.").get_json()
    assert board["frames"][0]["id"] == 1
    stream = client.get(board["links"]["events"], buffered=False)
    chunks = iter(stream.response)
    next(chunks)  # "retry": the listener is connected, and now reads nothing while the worker draws
    try:
        assert generator.paused.wait(30)  # three steps drawn and previewed, the listener not reading
        events = []
        while not any(kind == "preview" for kind, _ in events):
            events += read_events(chunks)
        assert [data["step"] for kind, data in events if kind == "preview"] == [3]  # 1 and 2 superseded
    finally:
        generator.resume.set()
        stream.close()
