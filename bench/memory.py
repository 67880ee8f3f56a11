"""Peak memory of one locked panel on full-size SDXL with random weights (bench/sdxl_random.py).

    .venv/bin/python bench/memory.py [--size 1024] [--device cpu] [--json PATH] [--consistent-look]

Draws one panel (identity lock on, one step: the peak is a UNet step or the VAE decode, not
their count) after a warm-up panel, and prints the weights and the peak above them: on CUDA
torch's allocator (torch.cuda.max_memory_allocated), elsewhere the process's resident memory
sampled every 20 ms. Half precision: fp16 on CUDA/MPS, bf16 on a CPU (the same bytes).
``--consistent-look``: two steps with it on (its reference row in the batch, consistent_look.py).
The peak is also given apart for the steps (encoders and UNet) and for the decode, and the panel's
metadata says what ran (its steps, the references it shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="width and height in pixels (default 1024)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--consistent-look", action="store_true",
                        help="with the consistent look (two steps: a one-step panel draws without it)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import psutil
    import torch
    from PIL import Image

    from bench import sdxl_random
    from config import load_settings
    from local_image_generator import CharacterLock, PanelJob, StoryboardRequest, resolve_device

    device = resolve_device(args.device)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    settings = load_settings({}, {"model": "sdxl", "device": device, "identity_scoring": False,
                                  "data_dir": os.environ.get("STORYBOARD_DATA_DIR", "/tmp/bench-memory")})
    generator = sdxl_random.build_generator(settings, device, dtype, force_upcast=False)
    weights = sum(p.numel() * p.element_size() for module in generator.pipe.components.values()
                  if isinstance(module, torch.nn.Module) for p in module.parameters())
    request = StoryboardRequest((PanelJob(1, "a woman with red hair in a forest", "blurry", 1),), args.size,
                                args.size, settings.preset_for("fast"), identity_lock=True,
                                steps=2 if args.consistent_look else 1, consistent_look=args.consistent_look,
                                characters=(CharacterLock(reference=Image.new("RGB", (224, 224), "tan")),))
    generator.generate(request)  # the warm-up: the image encoder's first call, allocator caches

    process, peak, stop = psutil.Process(), [0], threading.Event()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = peak[0] = process.memory_info().rss

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        threading.Thread(target=sample, daemon=True).start()

    def read_peak() -> int:
        if device == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        return peak[0]

    # The steps' peak apart from the decode's: the consistent look's reference row is in the steps.
    steps_peak, vae_decode = [0], generator.pipe.vae.decode

    def decode(*decode_args, **decode_kwargs):
        steps_peak[0] = read_peak()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            peak[0] = process.memory_info().rss
        return vae_decode(*decode_args, **decode_kwargs)

    generator.pipe.vae.decode = decode
    started = time.perf_counter()
    panel = generator.generate(request).panels[0]
    decode_peak = read_peak()
    stop.set()
    del generator.pipe.vae.decode  # the VAE's own method again
    ran = panel.ran.to_json() if panel.ran is not None else {}
    figures = {"device": device, "consistent_look": args.consistent_look, "dtype": str(dtype).replace("torch.", ""),
               "size": args.size, "status": panel.status,
               # What ran, from the panel's metadata: the characters whose reference it shared (none: off).
               "look_references": ran.get("look_references"), "steps": ran.get("steps"),
               "weights_gb": round(weights / 1e9, 2),
               "peak_above_start_gb": round((max(steps_peak[0], decode_peak) - base) / 1e9, 2),
               "peak_steps_gb": round((steps_peak[0] - base) / 1e9, 2),
               "peak_decode_gb": round((decode_peak - base) / 1e9, 2),
               "measure": "torch.cuda.max_memory_allocated" if device == "cuda" else "process RSS, sampled",
               "panel_s": round(time.perf_counter() - started, 2)}
    figures["estimate_one_panel_gb"] = round(figures["weights_gb"] + figures["peak_above_start_gb"], 2)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
