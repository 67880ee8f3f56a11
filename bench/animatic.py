"""Time and peak memory of an 8-panel 1080p animatic.

    .venv/bin/python bench/animatic.py [--panels 8] [--seconds 3] [--resolution 1080p] [--json PATH]

Writes ``--panels`` noise panels at SDXL's 1344x768 (noise: the largest PNGs a panel can be),
then writes the animatic (animatic.write_animatic, as the studio's job does: one panel's PNG
read at a time) three ways: plain; with the captions burned in; with the push-in and the
captions burned in (a new picture every frame). For each: the wall time, the frames per
second, the MP4's size, the Python heap's peak (tracemalloc: the studio's own images and
buffers) and the process's resident memory (RSS, sampled every 5 ms: FFmpeg's and x264's
buffers too, which tracemalloc cannot see) as its peak and its peak above the level before.
Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = (1344, 768)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssPeak:
    """The process's resident memory, sampled every 5 ms while in the block."""

    def __enter__(self):
        self.before = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def noise_png(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="each panel's duration")
    parser.add_argument("--resolution", default="1080p")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import av

    from animatic import AnimaticOptions, video_size, write_animatic
    from cut import Cut

    board = {"id": "bench", "title": "Bench", "fps": 24.0, "settings": {"aspect": "16:9"},
             "frames": [{"id": n, "caption": f"Panel {n}: a girl climbs the hill at dawn, the map in her hand.",
                         "duration": args.seconds} for n in range(1, args.panels + 1)]}
    cut = Cut.from_board(board)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-animatic-") as folder:
        files = {}
        for n in range(1, args.panels + 1):
            files[n] = Path(folder) / f"panel-{n}.png"
            files[n].write_bytes(noise_png(n))

        class Panels:  # each PNG read when its panel is written, as the studio's PanelFiles does
            def get(self, n, default=None):
                return files[n].read_bytes() if n in files else default

        out = Path(folder) / "animatic.mp4"
        write_animatic(Cut.from_board({**board, "frames": board["frames"][:1]}), Panels(), out)  # warm-up
        for label, options in (("plain", AnimaticOptions(args.resolution)),
                               ("burned-in captions", AnimaticOptions(args.resolution, burn_in=True)),
                               ("push-in + captions", AnimaticOptions(args.resolution, push_in=True, burn_in=True))):
            tracemalloc.start()
            with RssPeak() as rss:
                started = time.perf_counter()
                write_animatic(cut, Panels(), out, options)
                seconds = time.perf_counter() - started
            _current, heap_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            with av.open(str(out)) as container:
                frames = container.streams.video[0].frames
            rows.append({"case": label, "seconds": round(seconds, 2), "frames": frames,
                         "fps": round(frames / seconds, 1), "mp4_mb": round(out.stat().st_size / 2**20, 2),
                         "heap_peak_mb": round(heap_peak / 2**20, 1), "rss_peak_mb": round(rss.peak, 1),
                         "rss_above_mb": round(rss.peak - rss.before, 1)})
    width, height = video_size(cut.aspect, args.resolution)
    print(f"{args.panels} panels x {args.seconds:g} s at {cut.fps:g} fps, {width}x{height}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'case':20} {'seconds':>8} {'frames':>6} {'fps':>6} {'MP4 MB':>7} {'heap MB':>8} {'RSS MB':>7} {'above':>6}")
    for row in rows:
        print(f"{row['case']:20} {row['seconds']:8.2f} {row['frames']:6d} {row['fps']:6.1f} {row['mp4_mb']:7.2f} "
              f"{row['heap_peak_mb']:8.1f} {row['rss_peak_mb']:7.1f} {row['rss_above_mb']:6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"panels": args.panels, "seconds": args.seconds, "width": width,
                                               "height": height, "fps": cut.fps, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
