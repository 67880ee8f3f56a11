"""Reliability, second round: each test reproduces a fault or an input that once got through.

The full disk is real (a small tmpfs, mounted where the machine allows it); the rest drive
the app in-process with the fake generator, or the studio's own server on loopback.
"""

import functools
import io
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request

import pytest

import app as app_module
from studio import studio_of
from exporting import read_png_parameters
from fakes import FakeGenerator
from helpers import build_app, png_bytes, post_board, wait_for
from storage import DatabaseDamaged



post = functools.partial(post_board, identity_lock=False)


@pytest.fixture
def serve():
    """serve(app) -> the port of the studio's own server (waitress) on loopback."""
    servers = []

    def start(app):
        server = app_module.make_server(app, studio_of(app).settings, port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        return int(server.effective_port)

    yield start
    for server, thread in servers:
        app_module.stop_server(server)
        thread.join(10)


# --- 1. A full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (CI runs as root and can): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder) -> object:
    """Fill the file system of ``folder`` to the last byte; returns the filler's path."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to fail at close
        for size in (1 << 20, 4096, 1):
            try:
                while handle.write(b"\0" * size):
                    pass
            except OSError:
                pass
    return filler


def test_a_full_disk_fails_the_board_keeps_the_worker_and_recovers(make_app, small_disk):
    generator = FakeGenerator()
    generator.pause_at = (2, 1)  # panel 1 saved, panel 2 started
    app = make_app(generator, data_dir=small_disk / "data")
    client = app.test_client()
    board_id = post(client).get_json()["id"]
    assert generator.paused.wait(30)
    filler = fill(small_disk)
    generator.pause_at = None
    generator.resume.set()
    # The worker cannot save panel 2, nor (probably) record the failure: it waits, alive.
    deadline = time.monotonic() + 60
    while client.get("/api/health").get_json()["status"] == "ok" and \
            client.get(f"/api/storyboards/{board_id}").get_json()["status"] == "running":
        assert time.monotonic() < deadline, "the board neither failed nor reported a problem"
        time.sleep(0.05)
    assert client.get("/api/health").get_json()["status"] != "worker_stopped"
    refused = post(client, story="Another board.")
    assert refused.status_code == 507 and "disk is full" in refused.get_json()["error"]
    assert str(small_disk) not in refused.get_json()["error"]
    filler.unlink()  # space is back
    board = wait_for(client, board_id, ("failed",))
    assert "disk is full" in board["error"] and str(small_disk) not in board["error"]
    assert board["frames"][0]["status"] == "done" and client.get(board["frames"][0]["image_url"]).status_code == 200
    after = post(client, story="After the disk was freed.")
    assert after.status_code == 202 and wait_for(client, after.get_json()["id"])["status"] == "done"
    assert client.get("/api/health").get_json()["status"] == "ok"


# --- 2. Every path that adds work counts against the queue limit -------------------------


def test_resume_counts_against_the_queue_limit(make_app):
    generator = FakeGenerator()
    generator.release.clear()
    app = make_app(generator, queue_limit=1)
    client = app.test_client()
    running = post(client).get_json()["id"]
    wait_for(client, running, ("running",))
    parked = post(client).get_json()["id"]
    assert client.post(f"/api/storyboards/{parked}/cancel").status_code == 202
    waiting = post(client)
    assert waiting.status_code == 202  # the queue now holds its one job
    answer = client.post(f"/api/storyboards/{parked}/resume")
    generator.release.set()
    assert answer.status_code == 429 and answer.get_json()["field"] == "queue"
    assert client.get(f"/api/storyboards/{parked}").get_json()["status"] == "canceled"


def test_redraw_counts_against_the_queue_limit_in_the_same_transaction(make_app):
    generator = FakeGenerator()
    app = make_app(generator, queue_limit=1)
    client = app.test_client()
    done = post(client).get_json()["id"]
    wait_for(client, done)
    generator.release.clear()
    running = post(client).get_json()["id"]
    wait_for(client, running, ("running",))
    assert post(client).status_code == 202
    answer = client.post(f"/api/storyboards/{done}/frames/1/regenerate", json={})
    generator.release.set()
    assert answer.status_code == 429
    assert client.get(f"/api/storyboards/{done}").get_json()["frames"][0]["status"] == "done"


# --- 3. A board's status is derived, never remembered ------------------------------------


def canceled_after_panel_one(client, generator):
    generator.pause_at = (1, 12)
    board_id = post(client).get_json()["id"]
    assert generator.paused.wait(30)
    client.post(f"/api/storyboards/{board_id}/cancel")
    generator.pause_at = None
    generator.resume.set()
    board = wait_for(client, board_id)
    assert [f["status"] for f in board["frames"]] == ["done", "pending", "pending"]
    return board_id


def test_redrawing_one_panel_of_a_canceled_board_does_not_make_it_done(make_app):
    generator = FakeGenerator()
    client = make_app(generator).test_client()
    board_id = canceled_after_panel_one(client, generator)
    client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={})
    board = wait_for(client, board_id, ("canceled", "done"))
    assert board["status"] == "canceled" and board["frames"][2]["status"] == "pending"


def test_redrawing_two_panels_in_quick_succession_then_the_last_makes_it_done(make_app):
    generator = FakeGenerator()
    client = make_app(generator).test_client()
    board_id = canceled_after_panel_one(client, generator)
    generator.release.clear()  # both redraws are queued before either is drawn
    assert client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={}).status_code == 202
    assert client.post(f"/api/storyboards/{board_id}/frames/3/regenerate", json={}).status_code == 202
    assert client.get(f"/api/storyboards/{board_id}").get_json()["status"] in ("queued", "running")
    generator.release.set()
    board = wait_for(client, board_id, ("done",))
    assert [f["status"] for f in board["frames"]] == ["done"] * 3


def test_canceling_a_queued_redraw_of_a_finished_panel_keeps_the_board_done(make_app):
    generator = FakeGenerator()
    app = make_app(generator)
    client = app.test_client()
    board_id = post(client).get_json()["id"]
    image_url = wait_for(client, board_id)["frames"][1]["image_url"]
    generator.release.clear()
    blocker = post(client, story="Blocker.").get_json()["id"]  # keeps the redraw queued
    wait_for(client, blocker, ("running",))
    client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={})
    assert client.post(f"/api/storyboards/{board_id}/cancel").status_code == 202
    generator.release.set()
    board = client.get(f"/api/storyboards/{board_id}").get_json()
    assert board["status"] == "done" and board["frames"][1]["status"] == "done"
    assert client.get(image_url).status_code == 200


# --- 4. Framing and sniffing -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/health", "/api/storyboards", "/static/js/main.js", "/api/nope"])
def test_every_response_refuses_framing_and_sniffing(make_app, path):
    answer = make_app(start_worker=False).test_client().get(path)
    csp = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "default-src 'self'" in csp
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_has_no_inline_script_or_handler_the_policy_would_block(make_app):
    html = make_app(start_worker=False).test_client().get("/").get_data(as_text=True)
    assert "<script>" not in html and " onclick=" not in html and " style=" not in html


# --- 5. Malformed requests are 400s, and a failed insert leaves no files ------------------


DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/storyboards"),
    ("POST", "/api/storyboards/{id}/frames/1/regenerate"),
    ("PUT", "/api/storyboards/{id}/order"),
    ("POST", "/api/plans"),
])
def test_deeply_nested_json_is_a_400_on_every_json_route(make_app, method, path):
    client = make_app().test_client()
    board_id = post(client).get_json()["id"]
    answer = client.open(path.format(id=board_id), method=method, data=DEEP, content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["field"] == "body"


def test_a_lone_surrogate_is_a_400_naming_the_field(make_app):
    client = make_app().test_client()
    body = '{"story": "A girl finds a map.", "character": "red hair \\ud800"}'
    answer = client.post("/api/storyboards", data=body, content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["field"] == "character"


def test_bytes_that_are_not_utf8_are_a_400(make_app):
    answer = make_app().test_client().post("/api/storyboards", data=b'{"story": "\xff\xfe"}',
                                         content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["field"] == "body"


def raw_request(port, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_conflicting_duplicate_content_lengths_are_a_400(make_app, serve):
    port = serve(make_app())
    body = b'{"story": "A map."}'
    head = (b"POST /api/storyboards HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nContent-Length: 5\r\nConnection: close\r\n\r\n" % len(body))
    assert raw_request(port, head, body).split(b"\r\n", 1)[0].split()[1] == b"400"


def test_a_failed_insert_leaves_no_board_folder(make_app, monkeypatch):
    app = make_app()
    store = studio_of(app).store

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("simulated failure inside the insert")

    monkeypatch.setattr(store, "_insert_board", broken)
    form = {"story": "A face.", "reference": (io.BytesIO(png_bytes()), "face.png")}
    assert app.test_client().post("/api/storyboards", data=form).status_code == 500
    assert list((store.root / "boards").iterdir()) == []


def test_orphaned_board_folders_are_removed_at_start(tmp_path, make_app):
    orphan = tmp_path / "data" / "boards" / "0123456789ab"
    orphan.mkdir(parents=True)
    (orphan / "reference.png").write_bytes(png_bytes())
    keep = tmp_path / "data" / "boards" / "notes.txt"  # not a board folder: not ours to remove
    keep.write_text("mine")
    make_app(data_dir=tmp_path / "data", start_worker=False)
    assert not orphan.exists() and keep.exists()


# --- 6. Weaker answers --------------------------------------------------------------------


def test_an_empty_upload_is_a_400(make_app):
    form = {"story": "A face.", "reference": (io.BytesIO(b""), "face.png")}
    answer = make_app().test_client().post("/api/storyboards", data=form)
    assert answer.status_code == 400 and answer.get_json()["field"] == "reference"


def test_control_characters_never_reach_prompts_or_metadata(make_app):
    client = make_app().test_client()
    board_id = post(client, story="A girl\x00 finds\x1b a map.\nShe\x07 climbs.",
                    character="red\x00 hair\x08").get_json()["id"]
    board = wait_for(client, board_id)
    text = json.dumps(board)
    assert "\\u0000" not in text and "\\u001b" not in text and "\\u0007" not in text and "\\b" not in text
    assert board["frames"][0]["caption"] == "A girl finds a map."
    meta = read_png_parameters(client.get(board["frames"][0]["image_url"]).data)
    assert "\x00" not in json.dumps(meta) and meta["caption"] == "A girl finds a map."


def test_too_many_form_parts_says_so_not_too_large(make_app):
    fields = {f"f{i}": "x" for i in range(1200)}
    form = {"story": "A map.", **fields, "reference": (io.BytesIO(png_bytes()), "face.png")}  # multipart
    answer = make_app().test_client().post("/api/storyboards", data=form)
    assert answer.status_code == 400 and "too many parts" in answer.get_json()["error"]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_file_is_named_and_never_overwritten(tmp_path, make_app, damage):
    data = tmp_path / "data"
    studio_of(make_app(data_dir=data, start_worker=False)).store.close()
    db = data / "studio.sqlite3"
    original = db.read_bytes()
    db.write_bytes(b"this is not a database" * 100 if damage == "garbage" else original[:len(original) // 3 + 1])
    before = db.read_bytes()
    with pytest.raises(DatabaseDamaged) as caught:
        build_app(data, start_worker=False)
    assert str(db) in str(caught.value) and "move that file aside" in str(caught.value)
    assert db.read_bytes() == before


def test_random_damage_inside_the_database_is_found_at_start(tmp_path, make_app):
    data = tmp_path / "data"
    app = make_app(data_dir=data)
    client = app.test_client()
    for i in range(30):
        post(client, story="\n".join(f"Board {i} panel {j} " + "words " * 40 for j in range(8)))
    studio_of(app).close()
    db = data / "studio.sqlite3"
    for suffix in ("-wal", "-shm"):
        (data / f"studio.sqlite3{suffix}").unlink(missing_ok=True)
    raw = bytearray(db.read_bytes())
    assert len(raw) > 5 * 4096
    raw[4096: 4096 + 12] = os.urandom(12)  # page 2's b-tree header: a table the history reads
    raw[4096] = 0x07  # never a valid page type
    db.write_bytes(bytes(raw))
    with pytest.raises(DatabaseDamaged, match="damaged"):
        build_app(data, start_worker=False)


def test_main_says_which_file_is_damaged_and_exits(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    (data / "studio.sqlite3").write_bytes(b"garbage" * 1000)
    assert app_module.main(["--model", "tiny", "--data-dir", str(data)]) == 2
    assert "studio.sqlite3" in caplog.text and "damaged" in caplog.text


def test_a_damaged_png_is_marked_in_the_pdf_and_the_rest_exported(make_app):
    from pypdf import PdfReader

    app = make_app()
    client = app.test_client()
    board = wait_for(client, post(client).get_json()["id"])
    store = studio_of(app).store
    path = store.file_path(board["id"], store.board(board["id"])["frames"][1]["image_file"])
    path.write_bytes(path.read_bytes()[:40])  # truncated mid-header
    answer = client.get(f"/api/storyboards/{board['id']}/export.pdf")
    assert answer.status_code == 200
    reader = PdfReader(io.BytesIO(answer.data))
    text = "".join(page.extract_text() for page in reader.pages)
    assert "Image damaged" in text and text.count("Image damaged") == 1
    assert len(reader.pages[0].images) == 2  # panels 1 and 3


@pytest.mark.parametrize("stray", ["file", "folder"])
def test_delete_removes_stray_files_and_leaves_nothing(make_app, stray):
    app = make_app()
    client = app.test_client()
    board = wait_for(client, post(client).get_json()["id"])
    folder = studio_of(app).store.root / "boards" / board["id"]
    if stray == "file":
        (folder / "notes.txt").write_text("left here by hand")
    else:
        (folder / "sub" / "deeper").mkdir(parents=True)
        (folder / "sub" / "deeper" / "x.bin").write_bytes(b"x")
    assert client.delete(f"/api/storyboards/{board['id']}").status_code == 204
    assert not folder.exists() and list(folder.parent.iterdir()) == []
    assert client.get(f"/api/storyboards/{board['id']}").status_code == 404


def test_the_data_path_never_reaches_a_user_facing_error(tmp_path, make_app):
    from local_image_generator import ModelNotAvailable

    data = tmp_path / "data"

    def load():
        raise ModelNotAvailable(f"Cannot load SDXL: nothing in {(data / 'tiny-models').resolve()}")

    app = make_app(load_generator=load, data_dir=data)
    client = app.test_client()
    board = wait_for(client, post(client).get_json()["id"])
    studio_of(app).backend.stop()
    assert "data folder" in board["error"] and str(data.resolve()) not in json.dumps(board)


# --- 7. Slow clients ----------------------------------------------------------------------


@pytest.mark.slow  # a real server and its timeouts
def test_slow_clients_hold_connections_not_threads_and_time_out(make_app, serve):
    app = make_app(start_worker=False, request_timeout=2, max_connections=50, server_threads=8)
    port = serve(app)
    threads_before = threading.active_count()
    slow = []
    for _ in range(300):  # bounded: 300 connections to our own loopback server, closed below
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        slow.append(sock)
    try:
        for sock in slow[:50]:
            try:
                sock.send(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end
            except OSError:
                pass
        assert threading.active_count() <= threads_before + 2
        # A normal request is answered once the silent ones have timed out (2 s).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=60) as answer:
            assert answer.status == 200
        assert threading.active_count() <= threads_before + 2
    finally:
        for sock in slow:
            sock.close()
