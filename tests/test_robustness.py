"""Robustness: load, faults, bad input. Each test proves one behaviour that would break visibly.

Most tests drive the app in-process with the fake generator; the SSE and raw-URL tests run
the real werkzeug server on 127.0.0.1 in a thread, and the SIGKILL test runs ``app.py``
itself as a subprocess on the tiny models.
"""

import errno
import http.client
import io
import json
import os
import pickle
import re
import resource
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

import app as app_module
from studio import studio_of
from config import SettingsError, load_settings
from exporting import read_png_parameters
from fakes import FakeGenerator
from helpers import REAL_MODEL, build_app, png_bytes, post_board, wait_for

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("done", "failed", "canceled", "interrupted")


# --- Shared pieces -------------------------------------------------------------------------






@contextmanager
def serve(app):
    """The studio's own server (waitress, as `make run` serves it) on a free loopback port."""
    server = app_module.make_server(app, studio_of(app).settings, port=0)
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        app_module.stop_server(server)
        thread.join(10)


def raw_get(port, path, follow=0):
    """GET ``path`` byte for byte as given (no client-side normalisation); (status, body).

    ``follow`` redirects to this same server are followed (werkzeug merges "//" by one).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        status, body, location = response.status, response.read(), response.getheader("Location") or ""
    finally:
        conn.close()
    if follow and status in (301, 302, 307, 308):
        target = location.split(f"127.0.0.1:{port}", 1)[-1]
        assert target.startswith("/") and not target.startswith("//"), location
        return raw_get(port, target, follow - 1)
    return status, body


def open_stream(port, board_id) -> socket.socket:
    """A raw SSE connection that has read the first bytes of its stream."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /api/storyboards/{board_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode())
    read_until(sock, b"retry:")
    return sock


def read_until(sock, marker: bytes, limit_s: float = 10.0) -> bytes:
    data, deadline = b"", time.monotonic() + limit_s
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_threads(baseline: int, limit_s: float) -> int:
    deadline = time.monotonic() + limit_s
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count()


def wait_status(store, board_id, statuses=FINAL, limit_s=30.0) -> float:
    """Seconds until the board reaches one of ``statuses`` (read from the store, no HTTP)."""
    started = time.perf_counter()
    while store.board(board_id)["status"] not in statuses:
        assert time.perf_counter() - started < limit_s, f"board {board_id} never reached {statuses}"
        time.sleep(0.005)
    return time.perf_counter() - started


@contextmanager
def one_torch_thread():
    """The tiny models' ops are too small to share: on a busy machine threads only contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def integrity(db_path) -> str:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def fully_readable(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.format == "PNG"


# --- Load: many boards at once -------------------------------------------------------------

BURST = 50


@pytest.fixture(scope="module")
def burst(tmp_path_factory):
    """50 storyboards POSTed at the same moment from 50 threads against one app."""
    generator = FakeGenerator()
    app = build_app(tmp_path_factory.mktemp("burst"), generator, queue_limit=BURST * 2)
    start = threading.Barrier(BURST)
    answers = [None] * BURST

    def submit(i):
        client = app.test_client()
        start.wait()
        answer = client.post("/api/storyboards", json={"story": f"Traveller {i} reaches the gate.", "frames": 1,
                                                       "identity_lock": False, "preset": "ultra_fast"})
        answers[i] = (answer.status_code, answer.get_json())

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    client = app.test_client()
    finals = [wait_for(client, body["id"]) for _, body in answers if body and "id" in body]
    history = client.get("/api/storyboards").get_json()["storyboards"]
    yield {"app": app, "generator": generator, "answers": answers, "finals": finals, "history": history}
    studio_of(app).backend.stop()


def test_every_concurrent_submission_gets_202_and_an_id(burst):
    assert [(status, bool(body.get("id"))) for status, body in burst["answers"]] == [(202, True)] * BURST


def test_no_concurrent_submission_is_lost_from_the_history(burst):
    assert {b["id"] for b in burst["history"]} == {body["id"] for _, body in burst["answers"]}


def test_every_concurrent_submission_is_drawn(burst):
    assert [b["status"] for b in burst["finals"]] == ["done"] * BURST


def test_boards_are_drawn_first_come_first_served(burst):
    by_caption = {body["frames"][0]["caption"]: body["id"] for _, body in burst["answers"]}
    drawn = [by_caption[request.panels[0].caption] for request in burst["generator"].requests]
    created = [b["id"] for b in reversed(burst["history"])]  # history is newest first
    assert drawn == created


def test_the_pipeline_is_never_called_by_two_threads_at_once(burst):
    assert burst["generator"].max_active == 1


# --- Load: the queue limit -----------------------------------------------------------------

LIMIT = 5


@pytest.fixture
def full_queue(make_app):
    """One board running (held by the fake), LIMIT boards queued behind it."""
    generator = FakeGenerator()
    generator.release.clear()
    app = make_app(generator, queue_limit=LIMIT)
    client = app.test_client()
    running = post_board(client, identity_lock=False).get_json()["id"]
    wait_for(client, running, ("running",))
    queued = [post_board(client, identity_lock=False).get_json()["id"] for _ in range(LIMIT)]
    yield app, client, generator, [running, *queued]
    generator.release.set()


def test_past_the_queue_limit_the_answer_is_429_naming_the_limit(full_queue):
    _, client, _, _ = full_queue
    answer = post_board(client)
    assert answer.status_code == 429 and f"{LIMIT} storyboards" in answer.get_json()["error"]


def test_a_refused_board_leaves_the_queued_ones_to_finish(full_queue):
    _, client, generator, boards = full_queue
    post_board(client)
    generator.release.set()
    assert [wait_for(client, b)["status"] for b in boards] == ["done"] * (LIMIT + 1)


def test_regenerate_past_the_queue_limit_is_429_naming_the_limit(make_app):
    generator = FakeGenerator()
    app = make_app(generator, queue_limit=1)
    client = app.test_client()
    done = wait_for(client, post_board(client, identity_lock=False).get_json()["id"])
    generator.release.clear()
    wait_for(client, post_board(client, identity_lock=False).get_json()["id"], ("running",))
    post_board(client, identity_lock=False)
    answer = client.post(f"/api/storyboards/{done['id']}/frames/1/regenerate", json={})
    generator.release.set()
    assert answer.status_code == 429 and "1 storyboards" in answer.get_json()["error"]


def test_concurrent_submissions_never_overshoot_the_queue_limit(make_app):
    generator = FakeGenerator()
    generator.release.clear()
    app = make_app(generator, queue_limit=LIMIT)
    client = app.test_client()
    wait_for(client, post_board(client, identity_lock=False).get_json()["id"], ("running",))
    start, codes = threading.Barrier(20), []

    def submit():
        own = app.test_client()
        start.wait()
        codes.append(post_board(own, identity_lock=False).status_code)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    generator.release.set()
    assert sorted(codes) == [202] * LIMIT + [429] * (20 - LIMIT)


# --- Load: many listeners ------------------------------------------------------------------


def sse_board(client):
    return post_board(client, story="One. Two. Three. Four.", frames=4, identity_lock=False).get_json()["id"]


def timed_board(app, generator, port, listeners=0, close=0):
    """Seconds the worker takes for a 4-panel board with ``listeners`` streams open on it,
    ``close`` of which leave mid-stream."""
    client, store = app.test_client(), studio_of(app).store
    generator.release.clear()
    board_id = sse_board(client)
    wait_status(store, board_id, ("running",))
    socks = [open_stream(port, board_id) for _ in range(listeners)]
    started = time.perf_counter()
    generator.release.set()
    for sock in socks[:close]:
        read_until(sock, b"event: progress")
        sock.close()
    wait_status(store, board_id)
    seconds = time.perf_counter() - started
    for sock in socks[close:]:
        read_until(sock, b"never sent: read to the end")
        sock.close()
    return seconds


def test_twenty_listeners_cost_the_worker_no_store_reads(make_app):
    # Speed is for benchmarks (bench/overhead.py); what keeps listeners cheap is that they
    # read the store only on status events, never per progress step. Counted, not timed.
    generator = FakeGenerator()
    app = make_app(generator)
    store = studio_of(app).store
    reads = []
    for name in ("board", "board_status"):
        original = getattr(store, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            if threading.current_thread().name.startswith("waitress"):  # a server thread: a listener
                reads.append(_name)
            return _original(*args, **kwargs)

        setattr(store, name, counted)
    with serve(app) as port:
        timed_board(app, generator, port, listeners=20, close=10)
    steps = 4 * 12  # 4 panels, FAST
    status_events = 3  # queued (at the start of each stream), running, done
    frame_events = 4  # each turned into the frame's JSON once, for every listener
    assert len(reads) <= 20 * (status_events + 2) + frame_events + 5, (len(reads), steps)


def test_listeners_that_leave_mid_stream_leak_no_threads(make_app):
    generator = FakeGenerator(step_delay=0.01)
    app = make_app(generator)
    with serve(app) as port:
        timed_board(app, generator, port)
        baseline = threading.active_count()
        timed_board(app, generator, port, listeners=20, close=10)
        assert wait_threads(baseline, 60.0) <= baseline


def test_listeners_that_leave_a_stalled_board_leak_no_threads(make_app, monkeypatch):
    monkeypatch.setattr(app_module, "SSE_KEEPALIVE_S", 0.2)
    generator = FakeGenerator()
    app = make_app(generator)
    client = app.test_client()
    with serve(app) as port:
        generator.pause_at = (1, 1)  # the board stays running: no events, only keep-alives
        board_id = sse_board(client)
        assert generator.paused.wait(30)
        baseline = threading.active_count()  # the worker's own threads for this board included
        for sock in [open_stream(port, board_id) for _ in range(20)]:
            sock.close()
        left = wait_threads(baseline, 60.0)
        generator.resume.set()
        assert left <= baseline


def test_a_listener_is_not_woken_by_other_boards_events(make_app):
    # Otherwise every listener of every board queries the store and writes a keep-alive
    # for each step of the board being drawn: a cost of listeners x events.
    hub = studio_of(make_app(FakeGenerator())).hub
    answer = []
    listener = threading.Thread(target=lambda: answer.append(hub.wait("quiet", 0, timeout=0.5)))
    started = time.perf_counter()
    listener.start()
    while listener.is_alive():
        hub.publish("busy", "progress", {"step": 1})
        time.sleep(0.01)
    assert answer == [[]] and time.perf_counter() - started >= 0.45


# --- Faults: SIGKILL mid-board, restart, resume --------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read() or b"null")


def start_studio(data_dir, hf_cache, log_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STORYBOARD_HF_CACHE_DIR": str(hf_cache),
           "STORYBOARD_IDENTITY_SCORING": "false", "OMP_NUM_THREADS": "1"}  # tiny ops: threads only contend
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--model", "tiny", "--data-dir", str(data_dir),
                                    "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, Path(log_path).read_text()[-2000:]
        try:
            http_json("GET", base + "/api/health", timeout=1)
            return process, base
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the studio did not start: " + Path(log_path).read_text()[-2000:])


def stop(process):
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def killed(hf_cache, tmp_path_factory):
    """app.py is SIGKILLed while drawing a 6-panel board, then started again on the same data."""
    data_dir = tmp_path_factory.mktemp("killed")
    log_path = data_dir.parent / f"{data_dir.name}.log"
    processes = []
    try:
        process, base = start_studio(data_dir, hf_cache, log_path)
        processes.append(process)
        # 8 panels of 20 steps: once 2 are done, 120 steps stand between the poll and the
        # board's end, so the kill lands mid-board however slow the machine is.
        story = "\n".join(f"Panel {i}: the fox crosses field {i}." for i in range(1, 9))
        board_id = http_json("POST", base + "/api/storyboards", {"story": story, "preset": "quality", "seed": 3,
                                                                 "identity_lock": False, "aspect": "1:1"})["id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            before = http_json("GET", f"{base}/api/storyboards/{board_id}")
            if sum(f["status"] == "done" for f in before["frames"]) >= 2:
                break
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        assert before["status"] == "running", "the board finished before it could be killed"
        process, base = start_studio(data_dir, hf_cache, log_path)
        processes.append(process)
        after = http_json("GET", f"{base}/api/storyboards/{board_id}")
        images = {f["id"]: urllib.request.urlopen(base + f["image_url"], timeout=10).read()
                  for f in after["frames"] if f["image_url"]}
        files = [p for p in data_dir.rglob("*") if p.is_file()]
        check = integrity(data_dir / "studio.sqlite3")
        http_json("POST", f"{base}/api/storyboards/{board_id}/resume")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            resumed = http_json("GET", f"{base}/api/storyboards/{board_id}")
            if resumed["status"] in FINAL:
                break
            time.sleep(0.05)
        yield {"before": before, "after": after, "images": images, "files": files, "integrity": check,
               "resumed": resumed, "data_dir": data_dir}
    finally:
        for process in processes:
            stop(process)


def test_after_a_kill_the_board_is_interrupted(killed):
    assert killed["after"]["status"] == "interrupted"


def test_after_a_kill_every_finished_panel_is_kept(killed):
    done_before = {f["id"] for f in killed["before"]["frames"] if f["status"] == "done"}
    done_after = {f["id"] for f in killed["after"]["frames"] if f["status"] == "done"}
    assert len(done_before) >= 2 and done_before <= done_after


def test_after_a_kill_every_kept_panel_is_a_whole_png(killed):
    assert killed["images"] and all(fully_readable(data) for data in killed["images"].values())


def test_after_a_kill_no_temporary_or_empty_file_is_left(killed):
    bad = [p for p in killed["files"] if p.suffix == ".tmp" or ("boards" in p.parts and p.stat().st_size == 0)]
    assert bad == []


def test_after_a_kill_the_database_is_intact(killed):
    assert killed["integrity"] == "ok"


def test_after_a_kill_resume_draws_the_rest(killed):
    frames = killed["resumed"]["frames"]
    assert killed["resumed"]["status"] == "done" and [f["status"] for f in frames] == ["done"] * 8


# --- Faults: a job that takes the studio down twice ----------------------------------------


def crash_and_restart(data_dir):
    """The worker took the job, then the process died: reopen the store and recover."""
    from storage import Store

    crashed = Store(data_dir)
    job = crashed.next_job()
    crashed.close()
    store = Store(data_dir)
    store.recover()
    return job, store


def test_a_job_that_crashes_the_studio_twice_is_set_aside(tmp_path):
    data_dir = tmp_path / "twice"
    app = build_app(data_dir, FakeGenerator())
    studio_of(app).backend.stop()  # this app only answers requests
    board_id = post_board(app.test_client()).get_json()["id"]
    studio_of(app).store.close()
    crash_and_restart(data_dir)[1].close()
    resume = build_app(data_dir, FakeGenerator())
    studio_of(resume).backend.stop()
    assert resume.test_client().post(f"/api/storyboards/{board_id}/resume").status_code == 202
    studio_of(resume).store.close()
    job, store = crash_and_restart(data_dir)
    board = store.board(board_id)
    assert job["starts"] == 2 and board["status"] == "failed" and "stopped twice" in board["error"]


def test_a_job_that_crashed_once_is_interrupted_not_failed(tmp_path):
    data_dir = tmp_path / "once"
    app = build_app(data_dir, FakeGenerator())
    studio_of(app).backend.stop()
    board_id = post_board(app.test_client()).get_json()["id"]
    studio_of(app).store.close()
    assert crash_and_restart(data_dir)[1].board(board_id)["status"] == "interrupted"


# --- Faults: out of memory -----------------------------------------------------------------


@pytest.fixture(scope="module")
def oom(tiny_generator, tmp_path_factory):
    """The tiny generator runs out of memory once, on panel 2 of the first board."""
    import torch

    import local_image_generator

    freed, raised = [], []
    original = tiny_generator._draw_batch

    def draw_batch(batch, run):
        if not raised and any(job.index == 2 for job in batch):
            raised.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(batch, run)

    with pytest.MonkeyPatch.context() as patch, one_torch_thread():
        patch.setattr(local_image_generator, "free_device_memory", freed.append)
        patch.setattr(tiny_generator, "_draw_batch", draw_batch)
        app = build_app(tmp_path_factory.mktemp("oom"), tiny_generator)
        client = app.test_client()
        tiny = {"story": "A girl finds a map.\nShe climbs the hill.", "identity_lock": False, "preset": "ultra_fast",
                "aspect": "1:1"}
        first = wait_for(client, post_board(client, **tiny).get_json()["id"])
        second = wait_for(client, post_board(client, **tiny).get_json()["id"])
        studio_of(app).backend.stop()
    return {"first": first, "second": second, "freed": freed}


def test_out_of_memory_fails_only_that_panel(oom):
    assert [f["status"] for f in oom["first"]["frames"]] == ["done", "failed"]


def test_out_of_memory_says_what_to_try(oom):
    error = oom["first"]["frames"][1]["error"]
    assert "faster speed mode" in error and "smaller" in error


def test_out_of_memory_frees_device_memory(oom):
    assert len(oom["freed"]) >= 1


def test_after_out_of_memory_the_next_board_succeeds(oom):
    assert oom["second"]["status"] == "done" and [f["status"] for f in oom["second"]["frames"]] == ["done"] * 2


# --- Faults: NaN or black panels -----------------------------------------------------------


@pytest.fixture(scope="module")
def blank(tiny_generator, tmp_path_factory):
    """The tiny generator's VAE decodes every panel to NaN."""
    import torch

    calls = []

    def decode(latents, return_dict=True):
        calls.append(latents.dtype)
        b, _, h, w = latents.shape
        return (torch.full((b, 3, h * 8, w * 8), float("nan")),)

    with pytest.MonkeyPatch.context() as patch, one_torch_thread():
        patch.setattr(tiny_generator.pipe.vae, "decode", decode)
        app = build_app(tmp_path_factory.mktemp("blank"), tiny_generator)
        client = app.test_client()
        board = wait_for(client, post_board(client, story="A lone tree.", frames=1, identity_lock=False,
                                            preset="ultra_fast", aspect="1:1").get_json()["id"])
        studio_of(app).backend.stop()
    folder = studio_of(app).store.boards_dir / board["id"]
    return {"board": board, "calls": calls, "files": sorted(p.name for p in folder.glob("frame-*"))}


def test_a_nan_panel_is_decoded_again_before_giving_up(blank):
    assert len(blank["calls"]) == 2


def test_a_nan_panel_is_failed_with_words(blank):
    frame = blank["board"]["frames"][0]
    assert frame["status"] == "failed" and "blank" in frame["error"]


def test_a_nan_panel_is_never_saved(blank):
    assert blank["files"] == [] and blank["board"]["frames"][0]["image_url"] is None


# --- Faults: disk full ---------------------------------------------------------------------


class _FullDisk(io.RawIOBase):
    """A file that takes a few bytes, then reports ENOSPC (as a full disk does)."""

    def __init__(self, path):
        self._handle = open(path, "wb")

    def writable(self):
        return True

    def write(self, data):
        self._handle.write(bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fileno(self):
        return self._handle.fileno()

    def close(self):
        self._handle.close()
        super().close()


@pytest.fixture
def disk_full(make_app, monkeypatch):
    import storage

    app = make_app(FakeGenerator())
    client = app.test_client()
    before = wait_for(client, post_board(client).get_json()["id"])
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        if "frame-2-" in str(path) and "w" in mode:
            return _FullDisk(path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(storage, "open", full_open, raising=False)
    failed = wait_for(client, post_board(client, seed=50).get_json()["id"])
    monkeypatch.undo()
    return {"app": app, "client": client, "before": before, "failed": failed}


def test_disk_full_fails_the_board_with_words(disk_full):
    assert disk_full["failed"]["status"] == "failed" and "disk is full" in disk_full["failed"]["error"]


def test_disk_full_keeps_the_panel_saved_before_it(disk_full):
    assert [f["status"] for f in disk_full["failed"]["frames"]] == ["done", "failed", "failed"]


def test_disk_full_leaves_no_partial_file(disk_full):
    root = studio_of(disk_full["app"]).store.root
    folder = root / "boards" / disk_full["failed"]["id"]
    assert list(root.rglob("*.tmp")) == [] and list(folder.glob("frame-2-*")) == []


def test_disk_full_leaves_earlier_boards_whole(disk_full):
    client = disk_full["client"]
    board = client.get(f"/api/storyboards/{disk_full['before']['id']}").get_json()
    assert all(fully_readable(client.get(f["image_url"]).data) for f in board["frames"])


def test_disk_full_leaves_the_database_intact(disk_full):
    assert integrity(studio_of(disk_full["app"]).store.root / "studio.sqlite3") == "ok"


def test_after_disk_full_the_studio_keeps_working(disk_full):
    client = disk_full["client"]
    after = wait_for(client, post_board(client).get_json()["id"])
    assert client.get("/api/health").get_json()["status"] == "ok" and after["status"] == "done"


# --- Faults: damaged or pickled weights ----------------------------------------------------


def copied_cache(hf_cache, tmp_path) -> Path:
    import tiny_models

    cache = tmp_path / "cache"
    shutil.copytree(hf_cache, cache)
    return tiny_models.repo_snapshot(cache, tiny_models.SDXL_REPO)


class _Touch:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_pickle_payload_is_live(tmp_path):
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps({"weight": _Touch(marker)}))  # noqa: S301 - our own payload
    assert marker.exists()


@pytest.fixture
def weights_board(make_app, hf_cache, tmp_path):
    """Run one board on a copied cache that ``damage(snapshot)`` has altered."""

    def run(damage):
        snapshot = copied_cache(hf_cache, tmp_path)
        damage(snapshot)
        app = make_app(load_generator=REAL_MODEL, hf_cache_dir=str(snapshot.parents[2]))
        client = app.test_client()
        return client, wait_for(client, post_board(client, identity_lock=False).get_json()["id"])

    return run


def truncate_unet(snapshot):
    weights = snapshot / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])


def test_truncated_weights_fail_the_board_with_words(weights_board):
    _, board = weights_board(truncate_unet)
    assert board["status"] == "failed" and board["error"].startswith("Cannot load SDXL")
    assert "corrupt" in board["error"] and "download it again" in board["error"]
    assert "Traceback" not in board["error"]


def test_truncated_weights_leave_the_pages_and_history_served(weights_board):
    client, board = weights_board(truncate_unet)
    history = client.get("/api/storyboards")
    assert client.get("/").status_code == 200 and history.get_json()["storyboards"][0]["id"] == board["id"]


def test_pickled_weights_are_never_unpickled(weights_board, tmp_path):
    marker = tmp_path / "unpickled"

    def pickle_unet(snapshot):
        (snapshot / "unet" / "diffusion_pytorch_model.safetensors").unlink()
        (snapshot / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": _Touch(marker)}))

    _, board = weights_board(pickle_unet)
    assert board["status"] == "failed" and not marker.exists()


def test_a_pickle_adapter_weight_setting_is_refused():
    with pytest.raises(SettingsError) as caught:
        load_settings({}, {"ip_adapter_weight": "ip-adapter.bin"})
    assert caught.value.setting == "ip_adapter_weight"


# --- Faults: cancel ------------------------------------------------------------------------


@pytest.fixture
def two_boards(make_app):
    """Board A running (held by the fake), board B queued behind it, B canceled."""
    generator = FakeGenerator()
    generator.release.clear()
    app = make_app(generator)
    client = app.test_client()
    a = post_board(client, identity_lock=False).get_json()["id"]
    wait_for(client, a, ("running",))
    b = post_board(client, story="B one.\nB two.", identity_lock=False).get_json()["id"]
    answer = client.post(f"/api/storyboards/{b}/cancel")
    generator.release.set()
    return {"answer": answer, "a": wait_for(client, a), "b": wait_for(client, b), "generator": generator}


def test_cancelling_a_queued_board_leaves_the_running_one_to_finish(two_boards):
    assert two_boards["a"]["status"] == "done" and [f["status"] for f in two_boards["a"]["frames"]] == ["done"] * 3


def test_a_canceled_queued_board_never_reaches_the_generator(two_boards):
    assert two_boards["b"]["status"] == "canceled" and len(two_boards["generator"].requests) == 1


def paused_take(store, monkeypatch, before: bool):
    """Pause the worker just before (or just after) its transaction that takes a job."""
    at, go = threading.Event(), threading.Event()
    original = store.next_job

    def next_job():
        if before:
            at.set()
            assert go.wait(30)
        job = original()
        if job is not None and not before:
            at.set()
            assert go.wait(30)
        return job

    monkeypatch.setattr(store, "next_job", next_job)
    return at, go


@pytest.mark.parametrize("before", [True, False], ids=["before-the-take", "after-the-take"])
def test_a_cancel_that_lands_while_the_job_is_taken_draws_nothing(make_app, monkeypatch, before):
    # The promise: a cancel that lands before the worker starts drawing draws nothing.
    # Both orders of the cancel and the take's transaction are forced, not raced.
    generator = FakeGenerator()
    app = make_app(generator, start_worker=False)
    store, worker, client = studio_of(app).store, studio_of(app).backend, app.test_client()
    board_id = post_board(client, identity_lock=False).get_json()["id"]
    at, go = paused_take(store, monkeypatch, before)
    worker.start()
    assert at.wait(30)
    assert client.post(f"/api/storyboards/{board_id}/cancel").status_code == 202  # returns while the worker waits
    go.set()
    board = wait_for(client, board_id)
    assert board["status"] == "canceled" and {f["status"] for f in board["frames"]} == {"pending"}
    assert generator.requests == []


def test_a_cancel_while_drawing_stops_within_one_step_and_keeps_finished_panels(make_app):
    generator = FakeGenerator()
    generator.pause_at = (2, 2)  # panel 1 done, panel 2 two steps in
    app = make_app(generator)
    client = app.test_client()
    board_id = post_board(client, identity_lock=False).get_json()["id"]
    assert generator.paused.wait(30)
    assert client.post(f"/api/storyboards/{board_id}/cancel").status_code == 202
    generator.resume.set()
    board = wait_for(client, board_id)
    assert board["status"] == "canceled"
    assert [f["status"] for f in board["frames"]] == ["done", "pending", "pending"]
    assert generator.steps_run[-1] == (2, 2)  # the very next step saw the cancel


def test_a_cancel_after_the_board_finished_says_so(make_app):
    app = make_app(FakeGenerator())
    client = app.test_client()
    board_id = post_board(client, identity_lock=False).get_json()["id"]
    wait_for(client, board_id)
    worker = studio_of(app).backend
    assert worker.cancel(board_id) is False  # nothing left to cancel; the board stays done
    assert client.get(f"/api/storyboards/{board_id}").get_json()["status"] == "done"


# --- Bad input: uploads --------------------------------------------------------------------


@pytest.fixture
def upload_app(make_app):
    return make_app(FakeGenerator())


def upload(client, data: bytes, name="face.png"):
    return client.post("/api/storyboards", data={"story": "A face.", "reference": (io.BytesIO(data), name)})


def test_an_oversized_upload_is_413(upload_app):
    answer = upload(upload_app.test_client(), b"\0" * (2 * 1024 * 1024))
    assert answer.status_code == 413 and "at most 1 MB" in answer.get_json()["error"]


def chunked_post(port, path, content_type, chunks):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", content_type)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for chunk in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the end: that is the point
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_an_oversized_chunked_json_body_is_413(upload_app):
    body = [b'{"story": "', *([b"x" * 65536] * 40), b'"}']
    with serve(upload_app) as port:
        status, _ = chunked_post(port, "/api/storyboards", "application/json", body)
    assert status == 413


def test_an_oversized_chunked_upload_is_413(upload_app):
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"story\"\r\n\r\nA face.\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"reference\"; filename=\"face.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    with serve(upload_app) as port:
        status, _ = chunked_post(port, "/api/storyboards", f"multipart/form-data; boundary={boundary}",
                                 [head, *([b"\x89" * 65536] * 40), f"\r\n--{boundary}--\r\n".encode()])
    assert status == 413


def test_after_an_oversized_upload_the_server_carries_on(upload_app):
    with serve(upload_app) as port:
        chunked_post(port, "/api/storyboards", "application/json", [b"{", *([b" " * 65536] * 40), b"}"])
        assert raw_get(port, "/api/health")[0] == 200


def image_bytes(fmt, mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, (16, 16), "blue" if mode == "RGB" else 1).save(buffer, format=fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int) -> bytes:
    """A ~100 KB PNG that declares side x side 1-bit pixels (all zero), built row by row."""
    compressor, row = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


BAD_UPLOADS = {
    "text named png": lambda: b"just some words, not an image\n" * 10,
    "html named png": lambda: b"<html><body><script>alert(1)</script></body></html>",
    "php named png": lambda: b"<?php system($_GET['c']); ?>",
    "png signature only": lambda: b"\x89PNG\r\n\x1a\n",
    "truncated png": lambda: png_bytes()[:40],
    "gif": lambda: image_bytes("GIF"),
    "bmp": lambda: image_bytes("BMP"),
    "tiff": lambda: image_bytes("TIFF"),
    "bomb 30000x30000": lambda: bomb_png(30000),
    "bomb 12000x12000": lambda: bomb_png(12000),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_a_bad_upload_is_400_on_the_reference_field(upload_app, name):
    answer = upload(upload_app.test_client(), BAD_UPLOADS[name]())
    assert answer.status_code == 400 and answer.get_json()["field"] == "reference"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_does_not_blow_up_memory(upload_app):
    client = upload_app.test_client()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for side in (30000, 12000, 4090):
        upload(client, bomb_png(side))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 200


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_never_decoded(upload_app, monkeypatch, fmt):
    from PIL import ImageFile

    decoded, original = [], ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: (decoded.append(self.format), original(self))[1])
    upload(upload_app.test_client(), image_bytes(fmt))
    assert fmt not in decoded


def test_a_polyglot_png_is_stored_re_encoded(upload_app):
    client = upload_app.test_client()
    answer = upload(client, png_bytes() + b"<?php system($_GET['c']); ?>")
    stored = client.get(answer.get_json()["reference"]["image_url"]).data
    assert b"<?php" not in stored and fully_readable(stored)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_are_accepted(upload_app, fmt):
    assert upload(upload_app.test_client(), image_bytes(fmt)).status_code == 202


# --- Bad input: unknown ids, panel numbers and path tricks ---------------------------------

SECRET = "TOP-SECRET-OUTSIDE-THE-DATA-DIR"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """A served studio with three boards whose files were swapped for links to outside files."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text(SECRET)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=_secret_info())
    for name in ("frame-1-v1.png", "reference.png"):
        (outside / name).write_bytes(buffer.getvalue())
    generator = FakeGenerator()
    app = build_app(tmp_path_factory.mktemp("paths"), generator)
    client = app.test_client()
    store = studio_of(app).store
    ids = [wait_for(client, post_board(client, seed=s).get_json()["id"])["id"] for s in (1, 2, 3, 4)]
    good, linked_file, linked_folder, linked_reference = ids
    frame = store.board(linked_file)["frames"][0]["image_file"]
    (store.boards_dir / linked_file / frame).unlink()
    (store.boards_dir / linked_file / frame).symlink_to("/etc/passwd")
    folder = store.boards_dir / linked_folder
    assert store.board(linked_folder)["frames"][0]["image_file"] == "frame-1-v1.png"
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)
    reference = store.board(linked_reference)["references"][1]["file"]
    (store.boards_dir / linked_reference / reference).unlink()
    (store.boards_dir / linked_reference / reference).symlink_to(outside / "reference.png")
    with serve(app) as port:
        yield {"port": port, "app": app, "client": client, "outside": outside, "good": good,
               "linked_file": linked_file, "linked_folder": linked_folder, "linked_reference": linked_reference}
    studio_of(app).backend.stop()


def _secret_info():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("secret", SECRET)
    return info


TRICKS = [
    "/api/storyboards/nope",
    "/api/storyboards/nope/frames/1/image.png",
    "/api/storyboards/nope/reference.png",
    "/api/storyboards/nope/export.zip",
    "/api/storyboards/nope/export.pdf",
    "/api/storyboards/nope/events",
    "/api/storyboards/{good}/frames/0/image.png",
    "/api/storyboards/{good}/frames/4/image.png",
    "/api/storyboards/{good}/frames/-1/image.png",
    "/api/storyboards/{good}/frames/1.5/image.png",
    "/api/storyboards/{good}/frames/99999999999999999999999/image.png",
    "/api/storyboards/{good}/frames/1/../../../../etc/passwd",
    "/api/storyboards/{good}/frames/1/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/storyboards/{good}/frames/%2e%2e/image.png",
    "/api/storyboards/../../../../etc/passwd",
    "/api/storyboards/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/storyboards/%2e%2e%2f%2e%2e%2fstudio.sqlite3",
    "/api/storyboards/%2e%2e/%2e%2e/etc/passwd",
    "/api/storyboards/..%5c..%5c..%5cetc%5cpasswd",
    "/api/storyboards/..\\..\\..\\etc\\passwd",
    "/api/storyboards/%2fetc%2fpasswd",
    "/api/storyboards/{outside}/secret.txt",
    "/api/storyboards/{good}%2f..%2f{linked_file}/frames/1/image.png",
    "/api/storyboards/{good}/frames/1/image.png/../../../../../etc/passwd",
    "/api/storyboards/{good}/reference.png%00.txt",
    "/api/storyboards/{good}/..%252f..%252fetc%252fpasswd",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e%2fapp.py",
    "/static/..%5capp.py",
    "/static/..\\app.py",
    "/static/%2fetc%2fpasswd",
    "/static/{outside}/secret.txt",
    "/static/..%252fapp.py",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/etc/passwd",
    "/app.py",
    "/studio.sqlite3",
    "/boards/{good}/reference.png",
    "/api/storyboards/{linked_file}/frames/1/image.png",
    "/api/storyboards/{linked_folder}/frames/1/image.png",
    "/api/storyboards/{linked_folder}/reference.png",
    "/api/storyboards/{linked_reference}/reference.png",
    "/api/storyboards/{linked_reference}/references/1.png",
    "/api/storyboards/{good}/references/0.png",
    "/api/storyboards/{good}/references/2.png",
    "/api/storyboards/{good}/references/-1.png",
    "/api/storyboards/{good}/references/..%2f..%2fstudio.sqlite3",
    "/api/storyboards/{good}/references/1.png%00.txt",
]


@pytest.mark.parametrize("template", TRICKS)
def test_tricky_urls_are_404_and_serve_nothing_outside(paths, template):
    url = template.format(**{k: v for k, v in paths.items() if isinstance(v, str)}, outside=paths["outside"])
    status, body = raw_get(paths["port"], url, follow=2)
    assert status == 404 and b"root:" not in body and SECRET.encode() not in body and b"def create_app" not in body


def test_the_good_board_is_served(paths):
    # The control for the table above: the same URLs with nothing tricky in them do answer.
    status, body = raw_get(paths["port"], f"/api/storyboards/{paths['good']}/frames/1/image.png")
    assert status == 200 and fully_readable(body)
    for reference in ("reference.png", "references/1.png"):
        status, body = raw_get(paths["port"], f"/api/storyboards/{paths['good']}/{reference}")
        assert status == 200 and fully_readable(body)


@pytest.mark.parametrize("board", ["linked_file", "linked_folder", "linked_reference"])
def test_exports_never_include_files_outside(paths, board):
    status, body = raw_get(paths["port"], f"/api/storyboards/{paths[board]}/export.zip")
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert status == 200 and not any(SECRET.encode() in archive.read(n) or b"root:" in archive.read(n)
                                     for n in archive.namelist())


def test_deleting_a_board_never_deletes_files_outside(paths):
    before = sorted(p.name for p in paths["outside"].iterdir())
    answer = paths["client"].delete(f"/api/storyboards/{paths['linked_folder']}")
    assert answer.status_code == 204 and sorted(p.name for p in paths["outside"].iterdir()) == before


# --- Bad input: markup in user text --------------------------------------------------------

MARKUP = {
    "caption": "<script>alert('cap')</script> & <b>bold</b>",
    "character": "<img src=x onerror=alert('char')>",
    "style": "\"><svg onload=alert('style')>",
}


@pytest.fixture
def markup(make_app):
    app = make_app(FakeGenerator())
    client = app.test_client()
    story = f"{MARKUP['caption']}\nThe second panel."
    board = wait_for(client, post_board(client, story=story, character=MARKUP["character"],
                                        style=MARKUP["style"]).get_json()["id"])
    return client, board


def test_markup_comes_back_verbatim_in_the_json(markup):
    _, board = markup
    got = (board["frames"][0]["caption"], board["character"], board["style"], board["title"])
    assert got == (MARKUP["caption"], MARKUP["character"], MARKUP["style"], MARKUP["caption"])


def test_markup_is_literal_text_in_the_pdf(markup):
    from pypdf import PdfReader

    client, board = markup
    text = PdfReader(io.BytesIO(client.get(board["export"]["pdf"]).data)).pages[0].extract_text()
    assert MARKUP["caption"] in text


def test_markup_is_verbatim_in_the_zip(markup):
    client, board = markup
    saved = json.loads(zipfile.ZipFile(io.BytesIO(client.get(board["export"]["zip"]).data)).read("storyboard.json"))
    assert (saved["frames"][0]["caption"], saved["character"]) == (MARKUP["caption"], MARKUP["character"])


def test_markup_is_verbatim_in_the_png_metadata(markup):
    client, board = markup
    assert read_png_parameters(client.get(board["frames"][0]["image_url"]).data)["caption"] == MARKUP["caption"]


def test_a_file_name_with_markup_is_not_echoed(make_app):
    client = make_app(FakeGenerator()).test_client()
    name = "<img src=x onerror=alert(1)>.png"
    answer = upload(client, png_bytes(), name=name)
    assert answer.status_code == 202 and "onerror" not in answer.get_data(as_text=True)


def _strip_js_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    return re.sub(r"(?m)(^|[^:\\'\"])//.*$", r"\1", source)


def test_the_page_never_puts_user_text_into_html():
    scripts = sorted((ROOT / "static" / "js").glob("*.js"))
    assert scripts, "the page's modules are in static/js"
    code = _strip_js_comments("\n".join(script.read_text(encoding="utf-8") for script in scripts))
    sinks = re.findall(r"\.(?:inner|outer)HTML\s*\+?=\s*([^;\n]*)|(insertAdjacentHTML|document\.write)", code)
    unsafe = [s for s in sinks if s[1] or not re.fullmatch(r"\s*(\"[^\"$]*\"|'[^'$]*'|``)\s*", s[0])]
    assert unsafe == []


# --- Bad input: requests from other sites --------------------------------------------------

FOREIGN = {
    "other origin": {"Origin": "http://evil.example"},
    "other port": {"Origin": "http://localhost:9999"},
    "lookalike host": {"Origin": "http://localhost.evil.example"},
    "null origin": {"Origin": "null"},
    "cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
}

CHANGES = [
    ("POST", "/api/storyboards", {"story": "An intruder."}),
    ("POST", "/api/storyboards/{id}/cancel", None),
    ("POST", "/api/storyboards/{id}/resume", None),
    ("POST", "/api/storyboards/{id}/frames/1/regenerate", {"seed": 1}),
    ("PUT", "/api/storyboards/{id}/order", {"order": [3, 2, 1]}),
    ("DELETE", "/api/storyboards/{id}", None),
]


@pytest.fixture
def done_board(make_app):
    app = make_app(FakeGenerator())
    client = app.test_client()
    return client, wait_for(client, post_board(client).get_json()["id"])


@pytest.mark.parametrize("headers", FOREIGN.values(), ids=FOREIGN.keys())
@pytest.mark.parametrize("method,url,body", CHANGES, ids=[f"{m} {u}" for m, u, _ in CHANGES])
def test_a_change_from_another_site_is_403(done_board, headers, method, url, body):
    client, board = done_board
    answer = client.open(url.format(id=board["id"]), method=method, json=body, headers=headers)
    assert answer.status_code == 403


def test_refused_changes_change_nothing(done_board):
    client, board = done_board
    for method, url, body in CHANGES:
        client.open(url.format(id=board["id"]), method=method, json=body, headers=FOREIGN["other origin"])
    after = client.get(f"/api/storyboards/{board['id']}").get_json()
    assert after == board and len(client.get("/api/storyboards").get_json()["storyboards"]) == 1


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"}],
                         ids=["no origin", "own origin", "same-origin fetch"])
def test_the_pages_own_changes_work(done_board, headers):
    client, board = done_board
    answer = client.put(f"/api/storyboards/{board['id']}/order", json={"order": [3, 2, 1]}, headers=headers)
    assert answer.status_code == 200


def test_the_pages_own_origin_works_on_the_real_server(done_board):
    client, _ = done_board
    app = client.application
    with serve(app) as port:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/storyboards", method="POST",
                                         data=json.dumps({"story": "Mine."}).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Origin": f"http://127.0.0.1:{port}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202


# --- Bad input: fields ---------------------------------------------------------------------


@pytest.mark.parametrize("fields,field", [
    ({"frames": []}, "frames"),
    ({"frames": {"n": 3}}, "frames"),
    ({"frames": "9" * 5000}, "frames"),
    ({"frames": 1e300}, "frames"),
    ({"preset": 5}, "preset"),
    ({"preset": ["fast"]}, "preset"),
    ({"aspect": 16}, "aspect"),
    ({"aspect": "16/9"}, "aspect"),
    ({"seed": 2**31}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": "1e3"}, "seed"),
    ({"seed": [1]}, "seed"),
    ({"identity_lock": 2}, "identity_lock"),
    ({"identity_lock": []}, "identity_lock"),
    ({"identity_lock": {"on": True}}, "identity_lock"),
    ({"style": 42}, "style"),
    ({"style": "s" * 2001}, "style"),
    ({"character": ["a"]}, "character"),
    ({"story": ["A line."]}, "story"),
    ({"story": "x" * 4001}, "story"),
    ({"story": "\n".join(f"Line {i}." for i in range(9))}, "story"),
    ({"reference_image": 42}, "reference_image"),
])
def test_a_bad_create_field_is_400_naming_it(done_board, fields, field):
    client, _ = done_board
    answer = client.post("/api/storyboards", json={"story": "One line", **fields})
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


@pytest.mark.parametrize("raw,field", [
    ('{"story": "One", "seed": NaN}', "seed"),
    ('{"story": "One", "seed": Infinity}', "seed"),
    ('{"story": "One", "frames": -Infinity}', "frames"),
    ('{"story": "One"', "body"),
    ("null", "body"),
    ('"a story"', "body"),
])
def test_a_bad_create_body_is_400_naming_the_field(done_board, raw, field):
    client, _ = done_board
    answer = client.post("/api/storyboards", data=raw, content_type="application/json")
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


def test_a_bad_form_field_is_400_naming_it(done_board):
    client, _ = done_board
    answer = client.post("/api/storyboards", data={"story": "One", "frames": "lots"})
    assert (answer.status_code, answer.get_json()["field"]) == (400, "frames")


def test_a_story_over_the_upload_limit_is_413(done_board):
    client, _ = done_board
    answer = client.post("/api/storyboards", json={"story": "x" * (2 * 1024 * 1024)})
    assert answer.status_code == 413 and "too large" in answer.get_json()["error"]


@pytest.mark.parametrize("body,field", [
    ({"seed": -1}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"seed": True}, "seed"),
    ({"seed": 2**31}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"caption": 42}, "caption"),
    ({"caption": ["a"]}, "caption"),
    ({"caption": "c" * 2001}, "caption"),
    ([1, 2], "body"),
    ("seed", "body"),
])
def test_a_bad_regenerate_field_is_400_naming_it(done_board, body, field):
    client, board = done_board
    answer = client.post(f"/api/storyboards/{board['id']}/frames/1/regenerate", json=body)
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


def test_a_regenerate_body_that_is_not_json_is_400(done_board):
    client, board = done_board
    answer = client.post(f"/api/storyboards/{board['id']}/frames/1/regenerate", data="seed=1",
                         content_type="application/json")
    assert (answer.status_code, answer.get_json()["field"]) == (400, "body")


@pytest.mark.parametrize("body", [
    {"order": [1.0, 2.0, 3.0]},
    {"order": ["1", "2", "3"]},
    {"order": None},
    {"order": {"1": 1}},
    {"order": [[1], [2], [3]]},
    {"order": [3, 2, 1, 1]},
    {"order": list(range(10000))},
    {},
    [3, 2, 1],
])
def test_a_bad_order_is_400_naming_it(done_board, body):
    client, board = done_board
    answer = client.put(f"/api/storyboards/{board['id']}/order", json=body)
    assert (answer.status_code, answer.get_json()["field"]) == (400, "order")


@pytest.mark.parametrize("method,url", [
    ("POST", "/api/storyboards/nope/cancel"),
    ("POST", "/api/storyboards/nope/resume"),
    ("POST", "/api/storyboards/nope/frames/1/regenerate"),
    ("POST", "/api/storyboards/{id}/frames/0/regenerate"),
    ("POST", "/api/storyboards/{id}/frames/4/regenerate"),
    ("PUT", "/api/storyboards/nope/order"),
    ("DELETE", "/api/storyboards/nope"),
])
def test_changes_to_unknown_boards_or_panels_are_404(done_board, method, url):
    client, board = done_board
    answer = client.open(url.format(id=board["id"]), method=method, json={})
    assert answer.status_code == 404 and answer.get_json()["error"] == "Not found."


def test_after_all_the_bad_input_the_server_carries_on(done_board):
    client, _ = done_board
    for fields in ({"frames": "x"}, {"seed": []}, {"preset": None, "aspect": 1}):
        client.post("/api/storyboards", json={"story": "One", **fields})
    assert wait_for(client, post_board(client).get_json()["id"])["status"] == "done"
