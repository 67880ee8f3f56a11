"""What the consistent look (consistent_look.py) costs, counted on the full-size SDXL UNet.

On the META device (no memory, no compute), with ``torch.utils.flop_counter.FlopCounterMode``:
a UNet call with the panels' rows and one reference row, the look on, against the same call
without the reference row and the look off. The difference is the reference row's UNet pass
plus the sharing's own attention; the latter is checked against ``consistent_look.extra_flops``.
Per panel, for FAST (CFG: two rows a panel, 12 steps) and lightning (one row, 4 steps), boards of
1, 4 and 8 panels in one call, one character; then the token sampling rates; then how much of the
reference is left at each mode's timesteps (its signal, sqrt(alpha_bar)); then what keeping the
reference's sampled hidden states instead would take per board (``bank_bytes``).

Importing this module does nothing.

    .venv/bin/python bench/look.py [--size 1024x1024] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = {"fast": (2, 12), "lightning": (1, 4)}  # rows a panel (CFG or not), steps
PANELS = (1, 4, 8)
RATES = (0.1, 0.25, 0.5, 1.0)


def call_flops(unet, look, width: int, height: int, rows: int, ghosts: int, rate: float) -> int:
    """FLOPs of one UNet call of ``rows`` panel rows, and ``ghosts`` reference rows sharing."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.sdxl_random import TEXT_ENCODER_2_CONFIG, UNET_CONFIG
    from consistent_look import level_sizes, region_mask, shared_count, strips, token_sample

    batch = rows + ghosts
    latent = level_sizes(height // 8, width // 8)
    look.ghosts = ghosts
    look.samples = {h * w: token_sample(h * w, rate, 500.0).to("meta") for h, w in latent}
    look.regions = {h * w: region_mask(h, w, strips(ghosts), shared_count(h * w, rate), "meta") for h, w in latent}
    try:
        with torch.device("meta"):
            sample = torch.randn(batch, 4, height // 8, width // 8)
            context = torch.randn(batch, 77, UNET_CONFIG["cross_attention_dim"])
            added = {"text_embeds": torch.randn(batch, TEXT_ENCODER_2_CONFIG["projection_dim"]),
                     "time_ids": torch.randn(batch, 6)}
            counter = FlopCounterMode(display=False)
            with counter:
                unet(sample, torch.tensor(500.0), context, added_cond_kwargs=added)
        return counter.get_total_flops()
    finally:
        look.ghosts, look.samples, look.regions = 0, {}, {}


def signal(mode: str) -> list[tuple[int, float]]:
    """Each step's timestep in ``mode`` and how much of a reference is left in its ghost there."""
    from diffusers import EulerDiscreteScheduler

    from config import DISTILLED_FAMILIES, PRESETS
    from model_loading import distilled_scheduler

    # SDXL base 1.0's scheduler/scheduler_config.json
    base = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  timestep_spacing="leading", steps_offset=1)
    preset = PRESETS[mode]
    scheduler = distilled_scheduler(DISTILLED_FAMILIES[preset.family], base.config) if preset.family else base
    scheduler.set_timesteps(preset.steps)
    return [(int(t), math.sqrt(float(base.alphas_cumprod[int(t)]))) for t in scheduler.timesteps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The consistent look's cost on the full-size UNet, counted.")
    parser.add_argument("--size", default="1024x1024", help="WxH (default 1024x1024)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from bench.sdxl_random import UNET_CONFIG, build_unet
    from config import Settings
    from consistent_look import Look, bank_bytes, extra_flops, install

    rate = Settings.__dataclass_fields__["look_sampling_rate"].default
    unet = build_unet("meta")
    look = Look()
    unet.set_attn_processor(install(dict(unet.attn_processors), look))
    row = call_flops(unet, look, width, height, 1, 0, rate)  # one plain UNet row
    figures: dict = {"size": [width, height], "rate": rate, "unet_row": row, "modes": {}, "rates": {}}
    print(f"SDXL UNet at {width}x{height}, one row: {row / 1e12:.3f} TFLOP; the look at rate {rate}, one character")
    print(f"{'mode':>10} {'panels':>6} {'sharing/step':>13} {'+ reference row':>16} {'per panel':>10} {'of a panel':>10}")
    for mode, (rows_each, steps) in MODES.items():
        for panels in PANELS:
            rows = rows_each * panels
            plain = call_flops(unet, look, width, height, rows, 0, rate)
            looked = call_flops(unet, look, width, height, rows, 1, rate)
            sharing = looked - plain - row
            counted = extra_flops(UNET_CONFIG, height, width, rate, panel_rows=rows)["total"]
            assert sharing == counted, (mode, panels, sharing, counted)
            per_panel = (looked - plain) * steps / panels
            share = (looked - plain) / plain
            figures["modes"].setdefault(mode, {})[panels] = {"sharing_per_step": sharing, "per_panel": per_panel,
                                                             "unet_share": share}
            print(f"{mode:>10} {panels:>6} {sharing / 1e9:>10.1f} GF {(looked - plain) / 1e12:>13.3f} TF "
                  f"{per_panel / 1e12:>7.2f} TF {share:>9.1%}")
    print("sharing's own FLOPs a step for one FAST panel (2 rows), by sampling rate:")
    for r in RATES:
        counted = extra_flops(UNET_CONFIG, height, width, r, panel_rows=2)
        figures["rates"][r] = counted
        print(f"  rate {r:<4}: {counted['total'] / 1e9:7.1f} GFLOP ({counted['attention'] / 1e9:.1f} attention, "
              f"{counted['projection'] / 1e9:.1f} key/value projections)")
    for mode in ("fast", "lightning", "draft"):
        steps = signal(mode)
        figures.setdefault("signal", {})[mode] = steps
        print(f"  {mode}: reference signal by timestep " + ", ".join(f"t={t} {s:.2f}" for t, s in steps))
    bank = bank_bytes(UNET_CONFIG, height, width, rate)
    figures["bank_bytes_per_step"] = bank
    print(f"keeping a reference's sampled hidden states instead: {bank / 1e6:.1f} MB a step (fp16), "
          f"{bank * 2 * 12 / 1e9:.2f} GB for a FAST board (12 steps, both CFG halves), "
          f"{bank * 4 / 1e6:.0f} MB for lightning (4 steps); kept now: 0 bytes beyond the reference PNG")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
