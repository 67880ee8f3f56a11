"""Peak memory of concurrent exports of an 8-panel 1344x768 board.

    .venv/bin/python bench/exports.py [--clients 20] [--json PATH]

Writes 8 noise panels at 1344x768 (noise: the largest PNGs a panel can be, ~3 MB each),
then, for the PDF and the ZIP, runs each case in a fresh process: a studio on a temporary
data dir holding a board with those panels, served by the studio's own server (waitress) on
loopback, one export first (warm-up: imports, the font), then the case: 1 export, or
``--clients`` at once with the default STORYBOARD_EXPORT_CONCURRENCY (the rest are told
429), or ``--clients`` at once with the limit raised to ``--clients`` (the streaming alone).
The process's resident memory is sampled every 5 ms; the table gives its peak and the peak
above its level before the case. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PANELS = 8
SIZE = (1344, 768)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # KIND,CLIENTS,LIMIT,PANELS_DIR: one case (a child)
    args = parser.parse_args(argv)
    if args.case:
        kind, clients, limit, panels = args.case.split(",", 3)
        print(json.dumps(run_case(kind, int(clients), int(limit), Path(panels))))
        return 0

    from config import Settings

    default_limit = Settings().export_concurrency
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as panels:
        write_panels(Path(panels))
        for kind in ("pdf", "zip"):
            for clients, limit in ((1, default_limit), (args.clients, default_limit), (args.clients, args.clients)):
                child = subprocess.run([sys.executable, __file__, "--case", f"{kind},{clients},{limit},{panels}"],
                                       capture_output=True, text=True, check=True, cwd=ROOT)
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"{'export':6} {'clients':>7} {'limit':>5} {'200':>4} {'429':>4} {'size MB':>8} {'peak MB':>8} "
          f"{'above MB':>9} {'vs one':>7}")
    for row in rows:
        one = next(r for r in rows if r["kind"] == row["kind"] and r["clients"] == 1)
        print(f"{row['kind']:6} {row['clients']:7d} {row['limit']:5d} {row['ok']:4d} {row['busy']:4d} "
              f"{row['size_mb']:8.1f} {row['peak_mb']:8.1f} {row['above_mb']:9.1f} "
              f"{row['above_mb'] / max(one['above_mb'], 0.1):6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def write_panels(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for n in range(1, PANELS + 1):
        pixels = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"panel-{n}.png")


def run_case(kind: str, clients: int, limit: int, panels: Path) -> dict:
    import psutil

    from app import create_app, make_server, stop_server
    from config import load_settings
    from studio import studio_of

    data_dir = tempfile.mkdtemp(prefix="bench-exports-data-")
    settings = load_settings({}, {"data_dir": data_dir, "model": "sdxl", "identity_scoring": False,
                                  "export_concurrency": limit, "server_threads": max(8, clients + 4)})
    app = create_app(settings, load_generator=lambda: None, start_worker=False)
    store = studio_of(app).store
    story = "\n".join(f"Panel {n}: the fox crosses field {n}." for n in range(1, PANELS + 1))
    answer = app.test_client().post("/api/storyboards", json={"story": story, "seed": 1, "aspect": "16:9"})
    board_id = answer.get_json()["id"]
    for n in range(1, PANELS + 1):
        store.save_take(board_id, n, (panels / f"panel-{n}.png").read_bytes(), seed=n, mode=None)

    server = make_server(app, settings, port=0)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}/api/storyboards/{board_id}/export.{kind}"
    results: list[tuple[int, int]] = []

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=600) as response:
                size = 0
                while chunk := response.read(1 << 16):  # read and drop: the client keeps nothing
                    size += len(chunk)
                results.append((response.status, size))
        except urllib.error.HTTPError as error:
            results.append((error.code, 0))

    fetch()  # warm-up: imports, the font
    results.clear()
    process = psutil.Process()
    before = process.memory_info().rss
    peak, done = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=fetch) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sampler.join()
    stop_server(server)
    studio_of(app).close()
    mb = 1 << 20
    return {"kind": kind, "clients": clients, "limit": limit, "ok": sum(s == 200 for s, _ in results),
            "busy": sum(s == 429 for s, _ in results), "size_mb": max(size for _, size in results) / mb,
            "peak_mb": peak / mb, "above_mb": (peak - before) / mb}


if __name__ == "__main__":
    raise SystemExit(main())
