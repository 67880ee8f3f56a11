"""Throughput of the Redis backend: the same boards through 1 worker, then through 2.

    python bench/workers.py [--boards 8] [--panels 8] [--preset quality] [--json out.json]

Everything is local and offline: a private redis-server on loopback, the tiny models, the
studio in this process, worker processes (`python worker.py`) with one CPU thread each.
Each round first warms its workers up (one small board per worker loads the model), then
times the boards from the first submission to the last panel. Prints the figures and the
ratio (2 workers' throughput / 1 worker's); on a machine with fewer free cores than
workers the ratio says so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-only-secret"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--panels", type=int, default=8)
    parser.add_argument("--preset", default="quality")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        results = run(Path(folder), args)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def run(folder: Path, args) -> dict:
    import tiny_models
    from local_image_generator import quiet_library_logs
    from bench.local_redis import LocalRedis

    quiet_library_logs(progress_bars=False)
    cache = folder / "hf-cache"
    tiny_models.build(cache)
    redis = LocalRedis(folder, PASSWORD)
    redis.start()
    try:
        rounds = {count: timed_round(folder / f"round-{count}", redis, cache, count, args) for count in (1, 2)}
    finally:
        redis.stop()
    one, two = rounds[1]["seconds"], rounds[2]["seconds"]
    return {
        "boards": args.boards, "panels_per_board": args.panels, "preset": args.preset,
        "seconds_1_worker": round(one, 2), "seconds_2_workers": round(two, 2),
        "throughput_ratio": round(one / two, 2),
        "cpu_cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "each worker uses one torch CPU thread; the ratio is only meaningful with a free core per worker",
    }


def timed_round(folder: Path, redis, cache: Path, count: int, args) -> dict:
    from app import create_app
    from studio import studio_of
    from config import load_settings

    folder.mkdir(parents=True)
    settings = load_settings({"STORYBOARD_QUEUE_PASSWORD": PASSWORD}, {
        "data_dir": str(folder / "studio"), "model": "tiny", "identity_scoring": False, "queue_url": redis.url})
    app = create_app(settings)
    client = app.test_client()
    workers = [start_worker(folder, redis, cache, f"bench-{count}-{i}") for i in range(count)]
    try:
        wait(lambda: len(client.get("/api/health").get_json()["workers"]) >= count, "workers never reported")
        for board in [submit(client, args.preset, 1) for _ in range(count)]:
            wait(lambda b=board: finished(client, b), "warm-up never finished")
        started = time.perf_counter()
        boards = [submit(client, args.preset, args.panels) for _ in range(args.boards)]
        for board in boards:
            wait(lambda b=board: finished(client, b), "a board never finished", timeout=1800)
        seconds = time.perf_counter() - started
    finally:
        for process in workers:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        studio_of(app).backend.stop()
    return {"workers": count, "seconds": seconds}


def start_worker(folder: Path, redis, cache: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "STORYBOARD_QUEUE_PASSWORD": PASSWORD, "STORYBOARD_HF_CACHE_DIR": str(cache),
           "STORYBOARD_IDENTITY_SCORING": "false", "STORYBOARD_CPU_THREADS": "1"}
    log = open(folder / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--queue", redis.url, "--model", "tiny",
                             "--data-dir", str(folder / name), "--name", name], env=env, stdout=log, stderr=log)


def submit(client, preset: str, panels: int) -> str:
    story = "\n".join(f"The fox crosses field {i}." for i in range(1, panels + 1))
    answer = client.post("/api/storyboards", json={"story": story, "preset": preset, "identity_lock": False,
                                                   "aspect": "1:1"})
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"]


def finished(client, board_id: str) -> bool:
    status = client.get(f"/api/storyboards/{board_id}").get_json()["status"]
    if status in ("failed", "canceled", "interrupted"):
        raise RuntimeError(f"board {board_id} ended {status}")
    return status == "done"


def wait(condition, message: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.1)  # the studio shares the CPU with the workers: poll gently


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the studio's modules
    raise SystemExit(main())
