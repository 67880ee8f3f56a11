"""How much the studio adds on top of the generator, measured in one run.

    python bench/overhead.py [--repeat 3] [--preset fast] [--cache-dir data/tiny-models]
                             [--model tiny|sdxl-random] [--json PATH]

Draws the same 6-panel board (same prompts, seeds and reference) twice per round: with the
generator alone, and through the HTTP API of a real server (submit to last panel saved:
validation, SQLite, PNG encoding with metadata, fsync, events). Prints both medians and
their ratio. On the tiny models a panel takes ~0.1 s, so this is the worst case on a CPU.
``--model sdxl-random`` (full-size SDXL + IP-Adapter with random weights, bench/sdxl_random.py)
measures the GPU path: there a panel takes well under a second, the fixed costs no longer
vanish in it, and PNG encoding of 1-megapixel panels weighs more (bench/gpu.sh runs it).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--cache-dir", default="data/tiny-models")
    parser.add_argument("--model", choices=("tiny", "sdxl-random"), default="tiny")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from PIL import Image
    from werkzeug.serving import make_server

    import tiny_models
    from app import create_app
    from studio import studio_of
    from config import load_settings
    from board_params import panel_seed
    from local_image_generator import PanelJob, StoryboardGenerator, StoryboardRequest
    from prompt_enhancer import build_prompt, split_story

    data_dir = tempfile.mkdtemp(prefix="bench-overhead-")
    values = {"model": "tiny" if args.model == "tiny" else "sdxl", "data_dir": data_dir, "identity_scoring": False,
              "preset": args.preset}
    if args.model == "tiny":
        tiny_models.build(args.cache_dir)
        settings = load_settings({}, {**values, "hf_cache_dir": args.cache_dir})
        generator = StoryboardGenerator.load(settings)
    else:
        from bench import sdxl_random

        settings = load_settings(os.environ, values)
        generator = sdxl_random.build_generator(settings)
    story = "\n".join(f"The keeper climbs stair {i} of the lighthouse." for i in range(1, 7))
    reference = Image.new("RGB", (64, 64), (180, 120, 90))
    buffer = io.BytesIO()
    reference.save(buffer, format="PNG")
    preset = settings.preset_for()
    width, height = settings.size_for(settings.aspect)
    seed = 1234

    def alone() -> float:
        started = time.perf_counter()
        panels = []
        for index, plan in enumerate(split_story(story, None), start=1):
            prompt = build_prompt(plan, settings.character_traits, settings.style, settings.negative_prompt,
                                  generator.count_tokens)
            panels.append(PanelJob(index, prompt.prompt, prompt.negative_prompt, panel_seed(seed, index)))
        generator.generate(StoryboardRequest(tuple(panels), width, height, preset, True, reference))
        return time.perf_counter() - started

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(settings, load_generator=lambda: generator)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def through_api() -> float:
        body = json.dumps({"story": story, "seed": seed, "reference_image": _b64(buffer.getvalue())}).encode()
        started = time.perf_counter()
        post = urllib.request.Request(f"{base}/api/storyboards", body, {"Content-Type": "application/json"})
        board_id = json.load(urllib.request.urlopen(post))["id"]
        # Listen as the page does (Server-Sent Events) rather than polling, which would
        # compete with the worker for the CPU.
        with urllib.request.urlopen(f"{base}/api/storyboards/{board_id}/events") as stream:
            kind = None
            for line in stream:
                if line.startswith(b"event:"):
                    kind = line.split(b":", 1)[1].strip()
                elif kind == b"status" and line.startswith(b"data:") and json.loads(line[5:])["status"] == "done":
                    break
        return time.perf_counter() - started

    alone()  # warm-up
    through_api()
    rounds = [(alone(), through_api()) for _ in range(args.repeat)]
    server.shutdown()
    studio_of(app).backend.stop()
    generator_s = statistics.median(r[0] for r in rounds)
    api_s = statistics.median(r[1] for r in rounds)
    print(f"6-panel board, preset {preset.name}, {width}x{height}, {args.model} on {generator.device}, "
          f"{args.repeat} rounds (median)")
    print(f"  generator alone : {generator_s:.3f} s")
    print(f"  through the API : {api_s:.3f} s")
    print(f"  ratio           : {api_s / generator_s:.3f}  (target <= 1.10)")
    if args.json:
        figures = {"model": args.model, "device": generator.device, "preset": preset.name, "width": width,
                   "height": height, "repeat": args.repeat, "generator_s": generator_s, "api_s": api_s,
                   "ratio": api_s / generator_s, "rounds": rounds}
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    return 0


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the studio's modules
    raise SystemExit(main())
