"""What reaches the studio from outside one request: host names and proxies, other
processes on the same data dir, reads racing a delete or a redraw, and header and query
values that only look like numbers."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import STORY, post_board, wait_for, wait_until


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


# --- Host names ---------------------------------------------------------------------------


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_another_host_name_is_refused_whatever_the_bind_address(make_app, bind):
    client = make_app(host=bind).test_client()
    board_id = post_board(client).get_json()["id"]
    rebound = {"base_url": "http://evil.example:8080", "headers": {"Origin": "http://evil.example:8080"}}
    assert client.get("/api/storyboards", **rebound).status_code == 403
    assert client.delete(f"/api/storyboards/{board_id}", **rebound).status_code == 403
    assert client.get(f"/api/storyboards/{board_id}").status_code == 200


@pytest.mark.parametrize("base_url", ["http://localhost:8080", "http://127.0.0.1", "http://[::1]:8080"])
def test_the_loopback_names_are_allowed_by_default(make_app, base_url):
    assert make_app(host="0.0.0.0").test_client().get("/api/storyboards", base_url=base_url).status_code == 200


def test_allowed_hosts_names_the_hosts_the_studio_answers_to(make_app):
    client = make_app(host="0.0.0.0", allowed_hosts="Studio.Example.com, 10.0.0.5").test_client()
    assert client.get("/api/storyboards", base_url="http://studio.example.com").status_code == 200
    assert client.get("/api/storyboards", base_url="http://10.0.0.5:8080").status_code == 200
    assert client.get("/api/storyboards", base_url="http://localhost:8080").status_code == 403


@pytest.mark.parametrize("value", ["http://studio.example.com", "studio.example.com:8080", "a/b"])
def test_an_allowed_host_with_a_scheme_port_or_path_is_a_settings_error(value):
    from config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ALLOWED_HOSTS.*is not a host name"):
        load_settings({"STORYBOARD_ALLOWED_HOSTS": value})


BOARD = {"story": STORY, "seed": 7}
PROXIED = {"base_url": "http://127.0.0.1:8080",
           "headers": {"X-Forwarded-Host": "studio.example.com", "X-Forwarded-Proto": "https",
                       "Origin": "https://studio.example.com"}}


def test_a_trusted_proxy_s_forwarded_host_is_the_request_s_host(make_app):
    client = make_app(allowed_hosts="studio.example.com", trusted_proxies=1).test_client()
    assert client.post("/api/storyboards", json=BOARD, **PROXIED).status_code == 202


def test_without_a_trusted_proxy_forwarded_headers_are_not_believed(make_app):
    client = make_app(allowed_hosts="studio.example.com,127.0.0.1").test_client()
    assert client.post("/api/storyboards", json=BOARD, **PROXIED).status_code == 403


# --- Through a real nginx -----------------------------------------------------------------


def _nginx_binary() -> str:
    binary = shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing; .ci/run installs it (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _documented_nginx_block() -> str:
    page = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text(encoding="utf-8")
    return re.search(r"```nginx\n(.*?)```", page, re.S).group(1)


@contextmanager
def nginx(folder: Path, studio_port: int, forward_host: bool):
    """Debian's nginx in front of the studio with docs/deployment.md's block, on a free loopback port;
    without its ``Host`` line nginx sends the upstream's own Host (127.0.0.1:PORT)."""
    port = _free_port()
    block = _documented_nginx_block().replace("listen 80;", f"listen 127.0.0.1:{port};")
    block = block.replace("127.0.0.1:8080", f"127.0.0.1:{studio_port}")
    if not forward_host:
        block = block.replace("        proxy_set_header Host $host;\n", "")
    temp = {name: folder / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    (folder / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events {}\nhttp {\n"
        f"access_log off;\nclient_body_temp_path {temp['client_body']};\nproxy_temp_path {temp['proxy']};\n"
        f"fastcgi_temp_path {temp['fastcgi']};\nuwsgi_temp_path {temp['uwsgi']};\nscgi_temp_path {temp['scgi']};\n"
        f"{block}}}\n")
    process = subprocess.Popen([_nginx_binary(), "-p", str(folder), "-c", str(folder / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: process.poll() is not None or _listening(port), "nginx did not start", timeout=30)
        assert process.poll() is None, process.stderr.read().decode()
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _through(port: int, method: str, path: str, public: str) -> int:
    """A browser's request on the public name (``public``, e.g. studio.test:8443) sent to nginx's port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"story": STORY, "seed": 7}).encode() if method == "POST" else None
        conn.request(method, path, body=body, headers={
            "Host": public, "Origin": f"http://{public}", "Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


@contextmanager
def served(app):
    from app import make_server, stop_server
    from studio import studio_of

    server = make_server(app, studio_of(app).settings, port=0)
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stop_server(server)
        thread.join(10)


@pytest.mark.parametrize("forward_host", [True, False], ids=["public Host", "upstream Host"])
def test_the_documented_nginx_block_serves_the_studio_under_its_public_name(make_app, tmp_path, forward_host):
    app = make_app(allowed_hosts="studio.test", trusted_proxies=1)
    with served(app) as studio_port, nginx(tmp_path / "nginx", studio_port, forward_host) as port:
        public = f"studio.test:{port}"
        assert _through(port, "GET", "/api/storyboards", public) == 200
        assert _through(port, "POST", "/api/storyboards", public) == 202


@pytest.mark.parametrize("forward_host", [True, False], ids=["public Host", "upstream Host"])
def test_behind_nginx_without_the_settings_writes_are_refused(make_app, tmp_path, forward_host):
    with served(make_app()) as studio_port, nginx(tmp_path / "nginx", studio_port, forward_host) as port:
        assert _through(port, "POST", "/api/storyboards", f"studio.test:{port}") == 403


# --- One studio per data dir ---------------------------------------------------------------


def test_a_second_studio_on_one_data_dir_refuses_to_start_naming_the_dir_and_the_holder(tmp_path):
    import sys

    from test_robustness import ROOT, free_port, http_json, start_studio, stop

    data = tmp_path / "data"
    first, base = start_studio(data, tmp_path / "hf", tmp_path / "first.log")
    try:
        second = subprocess.run([sys.executable, "app.py", "--model", "tiny", "--data-dir", str(data),
                                 "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and str(data.resolve()) in errors[0], second.stderr[-2000:]
        assert f"process {first.pid}" in errors[0] and "--data-dir" in errors[0]
        assert http_json("GET", base + "/api/health")["status"] == "ok"
    finally:
        stop(first)  # SIGKILL: the OS drops its lock, and the next studio starts
    third, _ = start_studio(data, tmp_path / "hf", tmp_path / "third.log")
    stop(third)


def test_the_demo_keeps_its_boards_apart_from_real_ones_by_default():
    from config import load_settings

    assert load_settings({}, {"model": "tiny"}).data_path == Path("data/demo")
    assert load_settings({}).data_path == Path("data")
    assert load_settings({}, {"model": "tiny", "data_dir": "boards"}).data_path == Path("boards")


# --- Reads racing a delete or a redraw ------------------------------------------------------


BOARD_ROUTES = [
    ("GET", "/api/storyboards/{id}", None),
    ("DELETE", "/api/storyboards/{id}", None),
    ("PUT", "/api/storyboards/{id}/order", {"order": [3, 2, 1]}),
    ("POST", "/api/storyboards/{id}/frames/2/regenerate", {"seed": 5}),
    ("POST", "/api/storyboards/{id}/resume", None),
    ("POST", "/api/storyboards/{id}/refine", {}),
    ("POST", "/api/storyboards/{id}/frames/1/refine", {}),
    ("PUT", "/api/storyboards/{id}/frames/1/take", {"take": 1}),
    ("PATCH", "/api/storyboards/{id}/frames/1", {"dialogue": "Later."}),
    ("POST", "/api/storyboards/{id}/cancel", None),
    ("GET", "/api/storyboards/{id}/frames/1/image.png", None),
    ("GET", "/api/storyboards/{id}/reference.png", None),
    ("GET", "/api/storyboards/{id}/export.zip", None),
    ("GET", "/api/storyboards/{id}/export.pdf", None),
    ("GET", "/api/storyboards/{id}/events", None),
]


def _done_board(make_app, status="done"):
    """A finished board, or one canceled after its first panel (so it can be resumed)."""
    from fakes import FakeGenerator

    generator = FakeGenerator()
    app = make_app(generator)
    client = app.test_client()
    if status == "canceled":
        generator.pause_at = (1, 1)
    board_id = post_board(client).get_json()["id"]
    if status == "canceled":
        generator.paused.wait(30)
        client.post(f"/api/storyboards/{board_id}/cancel")
        generator.resume.set()
    assert wait_for(client, board_id)["status"] == status
    return app, client, board_id


@pytest.mark.parametrize("method,path,body", BOARD_ROUTES, ids=[f"{m} {p[20:]}" for m, p, _ in BOARD_ROUTES])
@pytest.mark.parametrize("status", ["done", "canceled"])
def test_a_board_deleted_mid_request_is_a_404_or_the_board_never_500_or_null(make_app, method, path, body, status):
    from studio import studio_of

    app, client, board_id = _done_board(make_app, status)
    store = studio_of(app).store
    real_board = store.board

    def board_then_deleted(board_id):  # the request reads the board, then another deletes it
        board = real_board(board_id)
        store.board = real_board
        store.delete_board(board_id)
        return board

    store.board = board_then_deleted
    response = client.open(path.format(id=board_id), method=method, json=body)
    # 409 only for what the board was when read (a finished board cannot be canceled); a
    # deleted board is not "being drawn", nor "already drawn" to a resume or a refine.
    allowed = (200, 202, 204, 404, 409) if path.endswith("/cancel") else (200, 202, 204, 404)
    assert response.status_code in allowed, response.get_data(as_text=True)[:300]
    if response.is_json:
        assert response.get_json() is not None


@pytest.mark.parametrize("path", ["frames/1/image.png", "frames/1/takes/1/image.png", "export.zip", "export.pdf"])
@pytest.mark.parametrize("then", ["redrawn", "deleted"])
def test_a_file_replaced_or_deleted_mid_request_is_sent_old_or_new_or_404_never_500(make_app, path, then):
    from helpers import png_bytes
    from studio import studio_of

    app, client, board_id = _done_board(make_app)
    store = studio_of(app).store
    real_file_path = store.file_path
    redrawn = png_bytes(color="blue")

    def path_then_changed(board_id_, name):  # the request finds the file; then a redraw or a delete
        path = real_file_path(board_id_, name)
        if name and name.startswith("frame-1-"):
            store.file_path = real_file_path
            if then == "redrawn":  # a new take, and the old one's file pruned (one take kept)
                store.takes_per_panel = 1
                store.save_take(board_id_, 1, redrawn, seed=5, mode=None)
            else:
                store.delete_board(board_id_)
        return path

    store.file_path = path_then_changed
    response = client.get(f"/api/storyboards/{board_id}/{path}")
    # Take 1 itself is pruned by the redraw: read again, it is gone.
    sent = then == "redrawn" and "takes/" not in path
    assert response.status_code == (200 if sent else 404), response.get_data(as_text=True)[:300]
    if sent and path.endswith(".png"):
        assert response.data == redrawn


# --- Exports: spooled to a file, a few at once ------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "pdf"])
def test_exports_past_the_concurrency_are_told_the_studio_is_busy(make_app, monkeypatch, kind):
    import exporting

    app = make_app(export_concurrency=1)
    client = app.test_client()
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id)
    writing, release = threading.Event(), threading.Event()
    write = getattr(exporting, f"storyboard_{kind}")

    def held(*args, **kwargs):
        writing.set()
        assert release.wait(30)
        return write(*args, **kwargs)

    monkeypatch.setattr(exporting, f"storyboard_{kind}", held)
    first = {}
    thread = threading.Thread(target=lambda: first.update(answer=app.test_client().get(
        f"/api/storyboards/{board_id}/export.{kind}")))
    thread.start()
    assert writing.wait(30)
    busy = client.get(f"/api/storyboards/{board_id}/export.{kind}")
    release.set()
    thread.join(30)
    assert busy.status_code == 429 and busy.get_json()["field"] == "export" and "busy" in busy.get_json()["error"]
    assert first["answer"].status_code == 200 and len(first["answer"].data) > 1000
    assert client.get(f"/api/storyboards/{board_id}/export.{kind}").status_code == 200  # the slot is free again


@pytest.mark.parametrize("kind", ["zip", "pdf"])
def test_an_export_is_streamed_from_a_file_not_held_in_memory(make_app, kind):
    import io

    app = make_app()
    client = app.test_client()
    board_id = post_board(client).get_json()["id"]
    wait_for(client, board_id)
    with app.test_request_context(f"/api/storyboards/{board_id}/export.{kind}"):
        response = app.full_dispatch_request()
    try:
        body = response.response.file  # werkzeug's FileWrapper around what send_file was given
        assert not isinstance(body, io.BytesIO) and body.fileno() >= 0
        assert body.read(4) in (b"PK\x03\x04", b"%PDF")
    finally:
        response.close()


@pytest.mark.parametrize("headers", [{"Host": "[evil"}, {"Host": "localhost", "Origin": "http://[evil"},
                                     {"Host": "localhost", "Origin": "null"}])
def test_a_host_or_origin_that_does_not_parse_is_a_403_not_a_500(make_app, headers):
    assert make_app().test_client().post("/api/storyboards", json=BOARD, headers=headers).status_code == 403


class WatchedLock:
    """The store's lock, saying when a thread has to wait for it."""

    def __init__(self):
        self._lock, self.waiting = threading.RLock(), threading.Event()

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self.waiting.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc_info):
        self._lock.release()


def test_a_board_is_read_as_one_snapshot_while_another_thread_deletes_it(make_app):
    from studio import studio_of

    app, client, board_id = _done_board(make_app)
    store = studio_of(app).store
    store._lock = WatchedLock()
    real_query, deleted = store._query, threading.Event()
    deleter = threading.Thread(target=lambda: (store.delete_board(board_id), deleted.set()))

    def query_then_delete_elsewhere(sql, args=()):  # between the board's reads, a delete
        rows = real_query(sql, args)
        if not deleter.is_alive() and not deleted.is_set():
            deleter.start()
            wait_until(lambda: deleted.is_set() or store._lock.waiting.is_set(), "the delete neither ran nor waited")
        return rows

    store._query = query_then_delete_elsewhere
    board = client.get(f"/api/storyboards/{board_id}").get_json()
    store._query = real_query
    deleter.join(30)
    assert len(board["frames"]) == 3 and client.get(f"/api/storyboards/{board_id}").status_code == 404


def test_an_rq_job_id_in_redis_that_only_looks_numeric_is_not_the_studios():
    from redis_backend import parse_rq_job_id
    from redis_protocol import superseded

    assert parse_rq_job_id("sb-0123456789ab-12-ab12") == ("0123456789ab", 12)
    for foreign in ("sb-0123456789ab-²-ab12", "sb-0123456789ab-١٢-ab12", "sb-x-1_0-y"):
        assert parse_rq_job_id(foreign) is None  # int() would raise or read another number
    assert superseded(1, b"2") and not superseded(2, "²".encode())
