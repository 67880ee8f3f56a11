"""The studio on Redis + RQ workers, with real parts: Debian's redis-server on a free
loopback port, worker processes (python worker.py) on the tiny models, the studio in
this process. Faults are real too: kill -9 of a worker, a studio stopped and started
again, Redis stopped and started."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from studio import studio_of
from config import PRESETS, load_settings
from helpers import post_board, wait_for, wait_until
from bench.local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "test-only-secret"
EIGHT = "\n".join(f"Panel {i}: the fox crosses field {i}." for i in range(1, 9))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = LocalRedis(tmp_path_factory.mktemp("redis"), PASSWORD, binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workers(redis_server, hf_cache, tmp_path_factory):
    """workers.ensure(n): n live worker processes on the tiny models; workers.kill(name)."""
    pool = WorkerPool(redis_server, hf_cache, tmp_path_factory.mktemp("workers"))
    yield pool
    pool.stop_all()


class WorkerPool:
    def __init__(self, redis_server, hf_cache, folder: Path):
        self.redis_server, self.hf_cache, self.folder = redis_server, hf_cache, folder
        self.processes: dict[str, subprocess.Popen] = {}
        self.started = 0

    def ensure(self, count: int) -> list[str]:
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                del self.processes[name]
        while len(self.processes) < count:
            self.start()
        return list(self.processes)

    def start(self, hf_cache: Path | None = None) -> str:
        """One more worker (its models from ``hf_cache``, the tiny ones unless told)."""
        self.started += 1
        name = f"w{self.started}"
        env = {**os.environ, "STORYBOARD_QUEUE_PASSWORD": PASSWORD, "HF_HUB_OFFLINE": "1",
               "STORYBOARD_HF_CACHE_DIR": str(hf_cache or self.hf_cache), "STORYBOARD_IDENTITY_SCORING": "false"}
        log = open(self.folder / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "worker.py", "--queue", self.redis_server.url, "--model", "tiny",
             "--data-dir", str(self.folder / name), "--name", name], cwd=ROOT, env=env, stdout=log, stderr=log)
        return name

    def freeze(self) -> None:
        """SIGSTOP every worker: the board in progress waits exactly where it is."""
        for process in self.processes.values():
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(30)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(30)
        if self.processes:  # their heartbeats, gone now rather than when they expire
            self.redis_server.client().delete(*(f"sb:worker:{name}" for name in self.processes))


@pytest.fixture
def studio(redis_server, tmp_path):
    """make(data_dir=None, start=True, **settings) -> a studio app on Redis (this process);
    stopped after the test. start=False: its backend's loops do not run (a test runs them)."""
    apps = []

    def make(data_dir=None, start=True, **overrides):
        settings = load_settings({"STORYBOARD_QUEUE_PASSWORD": PASSWORD}, {
            "data_dir": str(data_dir or tmp_path / "studio"), "model": "tiny", "identity_scoring": False,
            "queue_url": redis_server.url, **overrides})
        app = create_app(settings, start_worker=start)
        apps.append(app)
        return app

    yield make
    for app in apps:
        studio_of(app).backend.stop()


def live_workers(client, count: int) -> list[dict]:
    return wait_until(lambda: (lambda w: w if len(w) >= count else None)(client.get("/api/health").get_json()["workers"]),
                      f"{count} workers never reported", timeout=180)


def post(client, story=EIGHT, preset="quality"):
    answer = post_board(client, story, preset=preset, seed=3, identity_lock=False, aspect="1:1")
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"]


def done_panels(client, board_id) -> int:
    return sum(f["status"] == "done" for f in client.get(f"/api/storyboards/{board_id}").get_json()["frames"])


def test_two_workers_draw_two_boards_at_once_and_health_lists_them(studio, workers, redis_server):
    app = studio()
    client = app.test_client()
    workers.ensure(2)
    listed = live_workers(client, 2)
    assert {"name", "host", "device", "model", "board", "last_heartbeat"} <= set(listed[0])
    first, second = post(client), post(client, "Four.\nFive.\nSix.")
    boards = [wait_for(client, board_id, timeout=180) for board_id in (first, second)]
    assert [b["status"] for b in boards] == ["done", "done"]
    drawn_by = {rq_worker_name(redis_server, app, board_id) for board_id in (first, second)}
    assert len(drawn_by) == 2, f"one worker drew both: {drawn_by}"


def board_under_way(client, workers, count: int) -> str:
    """An 8-panel board that ``count`` live workers have started: its first panel is saved."""
    workers.ensure(count)
    live_workers(client, count)
    board_id = post(client)
    wait_until(lambda: done_panels(client, board_id) >= 1, "no panel was drawn")
    return board_id


def rq_worker_name(redis_server, app, board_id) -> str:
    from rq.job import Job

    from redis_backend import rq_job_id

    job = studio_of(app).store.jobs(board_id)[-1]
    return Job.fetch(rq_job_id(job), connection=redis_server.client()).worker_name


def test_a_worker_killed_mid_board_is_taken_over_and_no_panel_is_lost_or_drawn_twice(studio, workers,
                                                                                     redis_server):
    app = studio()
    client = app.test_client()
    board_id = board_under_way(client, workers, 2)
    workers.freeze()
    try:
        before = done_panels(client, board_id)
        assert before < 8, "the board finished before its worker could be stopped"
        drawing = rq_worker_name(redis_server, app, board_id)
        workers.kill(drawing)
    finally:
        workers.thaw()
    board = wait_for(client, board_id, timeout=180)
    assert board["status"] == "done", (board, workers.log(drawing))
    versions = [studio_of(app).store.board(board_id)["frames"][i]["version"] for i in range(8)]
    assert versions == [1] * 8  # every panel saved once: none lost, none drawn twice


def test_a_studio_restarted_mid_board_loses_nothing(studio, workers, tmp_path):
    first = studio(tmp_path / "data")
    client = first.test_client()
    board_id = board_under_way(client, workers, 1)
    studio_of(first).close()  # the studio goes; the worker draws on
    second = studio(tmp_path / "data")
    board = wait_for(second.test_client(), board_id, timeout=180)
    assert board["status"] == "done" and [f["status"] for f in board["frames"]] == ["done"] * 8
    versions = [f["version"] for f in studio_of(second).store.board(board_id)["frames"]]
    assert versions == [1] * 8


def test_cancel_and_resume_across_processes(studio, workers):
    app = studio()
    client = app.test_client()
    board_id = board_under_way(client, workers, 1)
    workers.freeze()  # the cancel lands mid-board, however fast the board is
    try:
        assert client.post(f"/api/storyboards/{board_id}/cancel").status_code == 202
    finally:
        workers.thaw()
    board = wait_for(client, board_id, timeout=120)
    assert board["status"] == "canceled" and "pending" in {f["status"] for f in board["frames"]}
    kept = {f["id"] for f in board["frames"] if f["status"] == "done"}
    assert client.post(f"/api/storyboards/{board_id}/resume").status_code == 202
    board = wait_for(client, board_id, ("done",), timeout=180)
    versions = {f["id"]: f["version"] for f in studio_of(app).store.board(board_id)["frames"]}
    assert all(versions[i] == 1 for i in kept)  # panels finished before the cancel were not redrawn


def test_redis_down_is_said_refuses_new_work_and_everything_resumes(studio, workers, redis_server):
    app = studio()
    client = app.test_client()
    workers.ensure(1)
    live_workers(client, 1)
    done = wait_for(client, post(client, "One.\nTwo.", preset="ultra_fast"), timeout=120)
    redis_server.stop()
    try:
        health = wait_until(lambda: (lambda h: h if h["problem"] else None)(client.get("/api/health").get_json()),
                            "health never said Redis was down", timeout=60)
        assert health["status"] == "failing" and "Redis" in health["problem"] and PASSWORD not in json.dumps(health)
        refused = client.post("/api/storyboards", json={"story": "While Redis is down."})
        assert refused.status_code == 503 and refused.get_json()["field"] == "queue"
        assert client.get(done["frames"][0]["image_url"]).status_code == 200  # nothing made is lost
    finally:
        redis_server.start()
    wait_until(lambda: client.get("/api/health").get_json()["status"] == "ok", "health never recovered", 60)
    live_workers(client, 1)
    board = wait_for(client, post(client, "After.\nRedis.", preset="ultra_fast"), timeout=180)
    assert board["status"] == "done"


@pytest.mark.parametrize("function", ["redis_worker.draw_job", "redis_backend.draw_job"])
def test_a_worker_refuses_a_bad_payload_with_words(studio, workers, redis_server, function):
    # The studio's job under its name, or under the one an earlier studio queued it with.
    from rq import Queue
    from rq.serializers import JSONSerializer

    workers.ensure(1)
    redis = redis_server.client()
    board = f"badpayload{function[6]}"
    payload = {"version": 1, "job_id": 424242, "board_id": board, "panels": [{"shot": "drone shot"}]}
    Queue("storyboard", connection=redis, serializer=JSONSerializer).enqueue(function, payload)

    def ended():
        for _, fields in redis.xrange("sb:results"):
            if fields[b"board"] == board.encode() and fields[b"type"] == b"end":
                return json.loads(fields[b"data"])
        return None

    end = wait_until(ended, "the worker never answered the bad payload", timeout=120)
    assert end["status"] == "failed" and "could not be read" in end["error"]


def test_a_job_out_of_retries_fails_its_board_with_words(studio, workers, redis_server):
    from redis_backend import GAVE_UP, rq_job_id

    workers.stop_all()  # nobody takes the job: it is failed as if its workers kept dying
    app = studio()
    client = app.test_client()
    board_id = post(client, "One.\nTwo.")
    store = studio_of(app).store
    job = wait_until(lambda: next(iter(store.running_jobs()), None), "the job was never handed to RQ")
    queue = studio_of(app).backend.queue
    rq_job = queue.fetch_job(rq_job_id(job))
    queue.remove(rq_job)
    queue.failed_job_registry.add(rq_job, ttl=600, exc_string="AbandonedJobError")
    board = wait_for(client, board_id, timeout=60)
    assert board["status"] == "failed" and board["error"] == GAVE_UP
    assert {f["status"] for f in board["frames"]} == {"failed"}


def test_a_cast_travels_to_a_worker_and_each_portrait_comes_back_as_its_characters(studio, workers):
    import base64

    from helpers import png_bytes

    app = studio()
    client = app.test_client()
    workers.ensure(1)
    live_workers(client, 1)
    face = png_bytes((64, 64), "blue")
    answer = client.post("/api/storyboards", json={
        "story": "Bo waves.\nIlya and Bo talk.\nMara arrives.", "seed": 3, "preset": "ultra_fast", "characters": [
            {"name": "Mara", "traits": "young woman, red hair"}, {"name": "Ilya", "traits": "old man, grey beard",
                                                                  "reference_image": base64.b64encode(face).decode()},
            {"name": "Bo", "traits": "boy, freckles"}]})
    assert answer.status_code == 202, answer.get_json()
    board = wait_for(client, answer.get_json()["id"], timeout=180)
    assert board["status"] == "done" and [f["cast"] for f in board["frames"]] == [["Bo"], ["Ilya", "Bo"], ["Mara"]]
    assert [c["reference"]["kind"] for c in board["characters"]] == ["generated", "uploaded", "generated"]
    assert client.get(board["characters"][1]["reference"]["image_url"]).data == face
    mara, bo = (client.get(board["characters"][i]["reference"]["image_url"]).data for i in (0, 2))
    assert mara.startswith(b"\x89PNG") and bo.startswith(b"\x89PNG") and mara != bo
    assert board["frames"][1]["prompt"].startswith("left: old man, grey beard; right: boy, freckles")


def test_layouts_travel_to_a_worker_and_each_take_comes_back_with_the_one_it_was_drawn_with(studio, workers):
    from test_layouts_api import CAST, panels, pose, sketch

    app = studio()
    client = app.test_client()
    workers.ensure(1)
    live_workers(client, 1)
    answer = client.post("/api/storyboards", json={"story": "", "seed": 3, "preset": "ultra_fast", "characters": CAST,
                                                   "panels": panels(sketch(), pose(("Ivan", 0.2), ("Mara", 0.7)))})
    assert answer.status_code == 202, answer.get_json()
    board = wait_for(client, answer.get_json()["id"], timeout=180)
    assert board["status"] == "done"
    sketched, posed = (frame["takes"][0] for frame in board["frames"])
    assert (sketched["layout"]["kind"], sketched["settings"]["layout"]["adapter"]) == (
        "sketch", "TencentARC/t2i-adapter-sketch-sdxl-1.0")
    assert posed["settings"]["layout"]["kind"] == "pose"
    assert board["frames"][1]["prompt"].startswith("left: a beard; right: red hair")  # Ivan posed on the left


def test_a_refine_travels_to_a_worker_with_its_take_and_comes_back_as_a_new_take(studio, workers):
    app = studio()
    client = app.test_client()
    workers.ensure(1)
    live_workers(client, 1)
    board = wait_for(client, post(client, "One.\nTwo.", preset="ultra_fast"), timeout=180)
    assert client.post(board["frames"][0]["links"]["refine"], json={"strength": 0.5}).status_code == 202
    frame = wait_for(client, board["id"], ("done",), timeout=180)["frames"][0]
    first, refined = frame["takes"]
    assert frame["take"] == 2 and (refined["parent"], refined["mode"]) == (1, "quality")
    assert (first["mode"], refined["settings"]["strength"], refined["settings"]["denoising_steps"]) == (
        "ultra_fast", 0.5, PRESETS["quality"].steps // 2)


def test_workers_send_live_previews_over_pub_sub_and_the_studio_relays_them_to_the_page(studio, workers,
                                                                                      redis_server):
    app = studio()
    hub = studio_of(app).hub
    relayed, publish = [], hub.publish
    hub.publish = lambda board_id, kind, data: (relayed.append((board_id, kind, data)), publish(board_id, kind, data))
    client = app.test_client()
    workers.ensure(1)
    live_workers(client, 1)
    channel = redis_server.client().pubsub()
    channel.subscribe("sb:events")
    board_id = post(client, "One fox.", preset="ultra_fast")
    assert wait_for(client, board_id, timeout=180)["status"] == "done"
    sent = []
    while (message := channel.get_message(timeout=0.1)) is not None:
        if message["type"] == "message":  # not the subscription's own answer
            sent.append(json.loads(message["data"]))
    channel.close()
    assert any(event["board"] == board_id and event.get("preview", {}).get("step") == 1 for event in sent)
    previews = [data for board, kind, data in relayed if board == board_id and kind == "preview"]
    assert previews and previews[0]["image"].startswith("data:image/jpeg;base64,")


def test_an_idle_worker_compiles_its_waiting_graphs_and_says_how_far_it_is(studio, redis_server):
    import threading

    from backend import ModelState
    from fakes import FakeGenerator, Warming
    from redis_worker import StudioWorker

    generator = Warming(FakeGenerator(), graphs=3, hold=2)
    settings = load_settings({}, {"model": "tiny", "queue_url": redis_server.url})
    worker = StudioWorker(redis_server.client(), settings, lambda: generator, None, "warming-test", "cpu")
    worker.host.ensure()  # as a first job does: the graphs are planned, not compiled
    assert generator.log == [] and worker.host.state == ModelState.WARMING_UP
    client = studio().test_client()
    seen = {}

    def look_while_held():  # RQ's work() wants the main thread: the test looks from this one
        if generator.held.wait(60):
            seen.update({w["name"]: w for w in client.get("/api/health").get_json()["workers"]})
        generator.go.set()

    looker = threading.Thread(target=look_while_held)
    looker.start()
    try:
        worker.work(burst=True, logging_level="WARNING")  # the queue is empty: it compiles
    finally:
        generator.go.set()
        looker.join(60)
        redis_server.client().delete("sb:worker:warming-test")
    warming = seen["warming-test"]
    assert warming["model"] == "warming_up" and warming["warm_up"]["done"] == 1 and warming["warm_up"]["of"] == 3
    assert isinstance(warming["warm_up"]["eta_s"], int)
    assert generator.log == ["compile"] * 3 and worker.host.state == ModelState.READY and worker.host.warm_up is None


def test_a_stop_asked_for_during_a_compile_stops_the_worker_after_that_graph(redis_server):
    import signal

    from fakes import FakeGenerator, Warming
    from redis_worker import StudioWorker

    generator = Warming(FakeGenerator(), graphs=3, hold=0)
    settings = load_settings({}, {"model": "tiny", "queue_url": redis_server.url})
    worker = StudioWorker(redis_server.client(), settings, lambda: generator, None, "stopping-test", "cpu")
    compile_one = generator.warm_up_next

    def signal_lands_mid_compile():
        compile_one()
        worker.request_stop(signal.SIGTERM, None)  # what RQ's handler does: raises StopRequested here

    generator.warm_up_next = signal_lands_mid_compile
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.host.ensure()
        worker.work(burst=True, logging_level="WARNING")
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        redis_server.client().delete("sb:worker:stopping-test")
    assert generator.log == ["compile"]  # the warm-up swallowed RQ's StopRequested; the worker stopped anyway


def test_a_worker_refuses_a_job_naming_any_other_function_and_draws_on(studio, workers, redis_server, tmp_path):
    from rq import Queue
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    marker = tmp_path / "ran"
    workers.ensure(1)
    redis = redis_server.client()
    planted = Queue("storyboard", connection=redis, serializer=JSONSerializer).enqueue("os.system", f"touch {marker}")
    wait_until(lambda: Job.fetch(planted.id, connection=redis, serializer=JSONSerializer).get_status()
               == JobStatus.FAILED, "the worker never refused the planted job", timeout=180)
    assert not marker.exists()
    client = studio().test_client()
    assert wait_for(client, post(client, "One.\nTwo.", preset="ultra_fast"), timeout=180)["status"] == "done"


def test_a_foreign_callback_in_rqs_registry_is_never_imported_and_dispatching_goes_on(studio, redis_server):
    import sys

    from rq.job import Callback, Job
    from rq.serializers import JSONSerializer

    redis = redis_server.client()
    planted = Job.create("planted.ran", connection=redis, serializer=JSONSerializer, id="planted-callback",
                         on_failure=Callback("planted.ran"))
    planted.save()
    redis.zadd("rq:wip:storyboard", {f"{planted.id}:1": 1})  # an execution long expired: RQ's clean-up takes it
    app = studio()
    store = studio_of(app).store
    post(app.test_client(), "One.\nTwo.")
    wait_until(lambda: store.running_jobs(), "no board was handed to RQ after the planted job", timeout=60)
    assert "planted" not in sys.modules
    assert app.test_client().get("/api/health").get_json()["problem"] is None


def test_a_malformed_result_is_set_aside_once_and_everything_after_it_is_recorded(studio, workers, redis_server,
                                                                                 caplog):
    workers.stop_all()  # the test writes the workers' facts itself
    app = studio()
    store = studio_of(app).store
    board_id = post(app.test_client(), "One.\nTwo.")
    job = wait_until(lambda: next(iter(store.running_jobs()), None), "the job was never handed to RQ")
    redis = redis_server.client()
    redis.xadd("sb:results", {"type": "saved", "job": "not json", "board": b"\xff\xfe"})
    redis.xadd("sb:results", {"type": "end", "job": json.dumps(job["id"]), "board": board_id,
                              "data": json.dumps({"status": "canceled", "error": None})})
    board = wait_for(app.test_client(), board_id, timeout=60)
    assert board["status"] == "canceled"
    assert redis.xlen("sb:results:rejected") >= 1
    assert sum("set aside result" in r.getMessage() for r in caplog.records) == 1


def test_health_reads_odd_heartbeats_from_redis_without_failing(studio, redis_server):
    redis = redis_server.client()
    redis.hset("sb:worker:odd", mapping={"name": "odd", "last_heartbeat": "soon", "model": b"\xff\xfe",
                                         "warm_up": "\u00b2 3", "device": b"cuda\xff"})
    redis.hset("sb:worker:bare", mapping={"last_heartbeat": "nan"})
    redis.set("sb:worker:string", "not a hash")
    try:
        answer = studio().test_client().get("/api/health")
    finally:
        redis.delete("sb:worker:odd", "sb:worker:bare", "sb:worker:string")
    assert answer.status_code == 200, answer.data[:300]
    odd = {w["name"]: w for w in answer.get_json()["workers"]}["odd"]
    assert odd["last_heartbeat"] == 0 and odd["model"] == "not_loaded" and odd["warm_up"] is None


def test_a_wrong_password_is_said_refused_naming_the_setting_by_the_studio_and_a_worker(redis_server, tmp_path):
    wrong = "not-the-password"
    env = {**os.environ, "STORYBOARD_QUEUE_PASSWORD": wrong, "HF_HUB_OFFLINE": "1"}
    worker = subprocess.run([sys.executable, "worker.py", "--queue", redis_server.url, "--model", "tiny",
                             "--data-dir", str(tmp_path / "w")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    said = worker.stdout + worker.stderr
    assert worker.returncode != 0 and "refused" in said and "STORYBOARD_QUEUE_PASSWORD" in said, said
    assert "Traceback" not in said and wrong not in said
    settings = load_settings({"STORYBOARD_QUEUE_PASSWORD": wrong}, {
        "data_dir": str(tmp_path / "studio"), "model": "tiny", "queue_url": redis_server.url})
    app = create_app(settings)
    try:
        health = wait_until(lambda: (lambda h: h if h["problem"] else None)(app.test_client().get("/api/health")
                                                                             .get_json()),
                            "health never said Redis refused", timeout=60)
    finally:
        studio_of(app).backend.stop()
    assert "refused" in health["problem"] and "STORYBOARD_QUEUE_PASSWORD" in health["problem"]
    assert wrong not in json.dumps(health)


def test_a_second_studio_on_the_same_redis_is_refused_with_words_and_the_first_draws_on(studio, workers, tmp_path):
    from config import SettingsError

    first = studio(tmp_path / "first")
    with pytest.raises(SettingsError) as refused:
        studio(tmp_path / "second")
    assert refused.value.setting == "queue_url" and "another studio" in str(refused.value)
    assert str(tmp_path / "first") in str(refused.value)  # which one, so that it can be found
    workers.ensure(1)
    client = first.test_client()
    assert wait_for(client, post(client, "One.\nTwo.", preset="ultra_fast"), timeout=180)["status"] == "done"
    studio_of(first).close()
    studio(tmp_path / "second")  # the first gone, its Redis is free at once


def test_the_queue_limit_counts_boards_waiting_for_a_worker_and_health_says_they_wait(studio, workers,
                                                                                     redis_server):
    from redis_protocol import rq_queue

    workers.stop_all()
    queue = rq_queue(redis_server.client())
    queue.empty()  # what earlier tests left for workers
    app = studio(start=False, queue_limit=2)
    client, backend = app.test_client(), studio_of(app).backend
    boards = [post(client, "Board 0.")]
    backend._dispatch_pass()  # what the dispatch loop does every second
    boards += [post(client, f"Board {n}.") for n in (1, 2)]
    backend._dispatch_pass()
    try:
        assert queue.count == 1  # one job handed to RQ, for the first worker to come
        assert post_board(client, "One too many.").status_code == 429
        assert [client.get(f"/api/storyboards/{b}").get_json()["status"] for b in boards] == [
            "running", "queued", "queued"]
        assert "No worker" in client.get("/api/health").get_json()["problem"]
    finally:
        queue.empty()


def test_a_worker_whose_model_cannot_load_takes_no_job_and_says_why(studio, workers, redis_server, tmp_path):
    workers.stop_all()
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("not a model cache")
    broken = workers.start(hf_cache=not_a_folder)
    app = studio()
    client = app.test_client()
    said = wait_until(lambda: next((w for w in client.get("/api/health").get_json()["workers"]
                                    if w["name"] == broken and w["model"] == "error"), None),
                      "the worker never said its model cannot load", timeout=180)
    assert said["error"]
    board_id = post(client, "One.\nTwo.", preset="ultra_fast")
    assert "No worker can load its model" in client.get("/api/health").get_json()["problem"]
    good = workers.start()
    board = wait_for(client, board_id, timeout=180)
    assert board["status"] == "done" and rq_worker_name(redis_server, app, board_id) == good



def test_a_late_report_of_a_finished_job_never_replaces_newer_work(studio, workers, redis_server):
    """What a worker SIGSTOPped mid-board and resumed after its board was taken over, finished
    and redrawn sends: its old job's panel, through the same RedisSink (a resumed worker's
    timing is not the test's to choose)."""
    from drawing import SavedPanel
    from helpers import png_bytes
    from redis_worker import RedisSink

    app = studio()
    client, store = app.test_client(), studio_of(app).store
    workers.ensure(1)
    live_workers(client, 1)
    board_id = post(client, "One.\nTwo.", preset="ultra_fast")
    assert wait_for(client, board_id, timeout=180)["status"] == "done"
    first_job = store.jobs(board_id)[-1]
    assert client.post(f"/api/storyboards/{board_id}/frames/2/regenerate", json={"seed": 777}).status_code == 202
    assert wait_for(client, board_id, ("done",), timeout=180)["status"] == "done"
    redrawn = store.board(board_id)["frames"][1]
    assert redrawn["seed"] == 777
    redis = redis_server.client()
    late = SavedPanel(redrawn["id"], png_bytes((64, 64), "red"), 3, None, 1, 0.1)
    RedisSink(redis, first_job["id"], board_id).panel_saved(late)
    wait_until(lambda: redis.xlen("sb:results") == 0, "the studio never read the late report")
    frame = store.board(board_id)["frames"][1]
    assert (frame["seed"], frame["version"]) == (777, redrawn["version"])


def test_a_job_lost_with_redis_data_interrupts_its_board_and_resume_draws_it(studio, workers, redis_server):
    app = studio()
    client = app.test_client()
    board_id = board_under_way(client, workers, 1)
    workers.freeze()  # mid-board, however fast the board is
    try:
        redis_server.client().flushall()  # what a Redis restarted without its data holds
        board = wait_for(client, board_id, ("interrupted",), timeout=60)
    finally:
        workers.thaw()
    assert board["status"] == "interrupted" and "Redis lost" in board["error"]
    assert client.post(f"/api/storyboards/{board_id}/resume").status_code == 202
    assert wait_for(client, board_id, ("done",), timeout=180)["status"] == "done"


def restart_empty(redis_server) -> None:
    """Stop redis-server and start it again without its data (its append-only file gone)."""
    redis_server.stop()
    shutil.rmtree(redis_server.folder / "appendonlydir", ignore_errors=True)
    redis_server.start()


def test_a_worker_outlives_redis_restarts_idle_and_mid_board_and_the_lost_board_is_interrupted(studio, workers,
                                                                                              redis_server):
    workers.stop_all()
    app = studio()
    client = app.test_client()
    name = workers.start()
    process = workers.processes[name]
    live_workers(client, 1)
    redis_server.stop()  # idle: the worker waits in RQ's dequeue, its beats fail meanwhile
    redis_server.start()
    wait_until(lambda: client.get("/api/health").get_json()["problem"] is None, "the studio never saw Redis back", 60)
    assert wait_for(client, post(client, "One.\nTwo.", preset="ultra_fast"), timeout=180)["status"] == "done"
    board_id = board_under_way(client, workers, 1)
    process.send_signal(signal.SIGSTOP)  # mid-board, however fast the board is
    try:
        restart_empty(redis_server)
        board = wait_for(client, board_id, ("interrupted",), timeout=60)
    finally:
        process.send_signal(signal.SIGCONT)
    assert board["status"] == "interrupted" and "Redis lost" in board["error"]
    problem = client.get("/api/health").get_json()["problem"]
    assert board_id in problem and "interrupted" in problem and "resume" in problem.lower()
    assert client.post(f"/api/storyboards/{board_id}/resume").status_code == 202
    assert wait_for(client, board_id, ("done",), timeout=180)["status"] == "done"
    assert process.poll() is None and rq_worker_name(redis_server, app, board_id) == name, workers.log(name)
    assert "unhandled exception" not in workers.log(name)


def test_a_report_of_a_superseded_attempt_is_dropped_and_logged_once(studio, workers, redis_server, caplog):
    """What a worker that raced its own check (or an older one) sends: its facts after the
    facts of the attempt that took its job over."""
    from helpers import png_bytes

    workers.stop_all()  # the test writes the two attempts' facts itself
    app = studio()
    store = studio_of(app).store
    board_id = post(app.test_client(), "One.\nTwo.")
    job = wait_until(lambda: next(iter(store.running_jobs()), None), "the job was never handed to RQ")
    first, second = (f["id"] for f in store.board(board_id)["frames"])
    redis = redis_server.client()

    def fact(kind, attempt, data, png=None):
        fields = {"type": kind, "job": json.dumps(job["id"]), "board": board_id, "attempt": json.dumps(attempt),
                  "data": json.dumps(data)}
        redis.xadd("sb:results", {**fields, "png": png} if png else fields)

    def saved(frame_id):
        return {"frame_id": frame_id, "seed": 5, "identity": None, "attempts": 1, "seconds": 0.1}

    fact("saved", 1, saved(first), png_bytes((64, 64), "red"))  # sent before the takeover: it counts
    fact("started", 2, {"frame_id": second})  # a second worker took the job over
    fact("saved", 1, saved(second), png_bytes((64, 64), "red"))  # the paused first worker, resumed
    fact("end", 1, {"status": "done", "error": None})
    fact("end", 2, {"status": "canceled", "error": None})  # the live attempt
    board = wait_for(app.test_client(), board_id, timeout=60)
    assert board["status"] == "canceled"
    assert [f["status"] for f in board["frames"]] == ["done", "pending"]
    assert sum("dropped the reports of attempt 1" in r.getMessage() for r in caplog.records) == 1


def test_a_superseded_attempt_says_nothing_of_a_panel_it_was_drawing_when_paused(redis_server, caplog):
    """A worker paused inside a panel's first step, resumed after a takeover, reaches the
    step's end: it neither reports the panel as started nor says it is drawing it (the step's
    cancel check then stops it); the live attempt does both."""
    import logging

    from redis_protocol import RESULTS, attempt_key
    from redis_worker import RedisSink

    redis = redis_server.client()
    redis.delete(RESULTS)
    redis.set(attempt_key("b1", 7), 2)  # attempt 2 took job 7 over while attempt 1 was paused
    with caplog.at_level(logging.INFO, logger="redis_worker"):
        RedisSink(redis, 7, "b1", attempt=1).panel_started(3)
        assert redis.xlen(RESULTS) == 0
        assert not [r for r in caplog.records if "drawing panel" in r.getMessage()]
        RedisSink(redis, 7, "b1", attempt=2).panel_started(3)
    assert redis.xlen(RESULTS) == 1
    assert [r.getMessage() for r in caplog.records if "drawing panel" in r.getMessage()] == \
        ["job 7, attempt 2: drawing panel 3"]


def whole_log(workers, name: str) -> str:
    """A worker's whole log (WorkerPool.log keeps its tail only): each panel it began is a line."""
    return (workers.folder / f"{name}.log").read_text(errors="replace")


def test_a_paused_worker_resumed_after_a_takeover_draws_nothing_more_and_overwrites_nothing(studio, workers,
                                                                                           redis_server):
    import re

    from redis_protocol import delivered_key

    workers.stop_all()
    app = studio()
    client, store = app.test_client(), studio_of(app).store
    first = workers.start()
    board_id = board_under_way(client, workers, 1)
    workers.processes[first].send_signal(signal.SIGSTOP)  # mid-board; its execution expires, RQ retries the job
    try:
        job = store.jobs(board_id)[-1]
        delivered = {int(x) for x in redis_server.client().smembers(delivered_key(board_id, job["id"]))}
        assert len(delivered) < 8, "the board finished before its worker could be paused"
        second = workers.start()
        assert wait_for(client, board_id, timeout=180)["status"] == "done", workers.log(second)
        assert client.post(f"/api/storyboards/{board_id}/frames/8/regenerate", json={"seed": 777}).status_code == 202
        assert wait_for(client, board_id, ("done",), timeout=180)["status"] == "done"
        drawn_before = whole_log(workers, first).count("drawing panel")
    finally:
        workers.processes[first].send_signal(signal.SIGCONT)
    wait_until(lambda: "report is not sent" in workers.log(first), "the resumed worker never noticed the takeover",
               timeout=60)
    frames = store.board(board_id)["frames"]
    assert (frames[7]["seed"], frames[7]["version"]) == (777, 2)  # the redraw stays
    assert [f["version"] for f in frames[:7]] == [1] * 7  # every other panel saved once, none lost
    assert whole_log(workers, first).count("drawing panel") == drawn_before  # resumed, it drew nothing more
    redrawn_by_second = {int(n) for n in re.findall(rf"job {job['id']}, attempt \d+: drawing panel (\d+)",
                                                    whole_log(workers, second))}
    assert not redrawn_by_second & delivered  # the takeover skipped every delivered panel
