"""How fast is the storyboard generator? One table, optionally a JSON file.

After a warm-up, it times with the app's own StoryboardGenerator:

1. one image WITHOUT the IP-Adapter (identity lock off): a character portrait, which then
   serves as the reference image,
2. one image WITH the IP-Adapter (identity lock on, that reference),
3. a 3-panel storyboard (identity lock on, same reference),

and prints each figure, the panels' own times and their average, the time per panel of the
storyboard, an estimate for 6 panels (6 x that), the model load time (separately), the
device and the dtype. Every figure is the median of ``--repeat`` runs, timed with
``time.perf_counter`` between device synchronisations.

With ``--preset draft`` it also draws one board in FAST, lightning and draft in turn (FLOPs by
part, UNet passes, times side by side), counts and times a step's live preview beside a UNet
pass, and times a refine (strength x steps UNet passes) beside the same FAST board drawn afresh.

Models:
  sdxl         the real SDXL base 1.0 + IP-Adapter from the hub (downloads ~10 GB once)
  tiny         the tiny random models of tiny_models.py (offline; built if missing)
  sdxl-random  full-size SDXL + plus-face IP-Adapter with random weights (sdxl_random.py):
               real speed and memory without the download. Also prints the parameter
               count, FLOPs, the device's matmul rate, the FLOP floor, and a breakdown
               (build, text/image encoding, UNet step, VAE decode, per panel, 6-panel
               board, peak memory). On a CPU it is a smoke test: 256x256, one step, bf16.

    python test_speed.py --model tiny
    python test_speed.py --model sdxl-random --size 1024x1024 --preset fast --repeat 3

Importing this module does nothing: all work happens in main().
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

MODELS = ("sdxl", "tiny", "sdxl-random")
DEFAULT_TINY_CACHE = "data/tiny-models"
CPU_SMOKE_SIZE = (256, 256)
CPU_SMOKE_STEPS = 1
ESTIMATE_FRAMES = 6
BOARD_FRAMES = 3
STORY = (
    "She steps off the night train into the rain, holding a battered suitcase.",
    "She reads a crumpled letter under a flickering streetlamp.",
    "She climbs the fire escape of an old brick building.",
    "She finds the rooftop garden empty except for a single lantern.",
    "She turns as footsteps approach behind her.",
    "She smiles at the friend she thought she had lost.",
)
REQUIRED_KEYS = (
    "device", "dtype", "model", "preset", "steps", "width", "height", "load_s",
    "single_no_ip_s", "single_ip_s", "storyboard_frames", "storyboard_s", "per_image_s",
    "estimate_6_s", "text_encoder_calls", "image_encoder_calls", "python", "torch",
    "diffusers", "timestamp", "layout",
)


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1024x1024") from None
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be positive multiples of 8")
    return width, height


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from config import PRESETS  # config imports nothing heavy

    p = argparse.ArgumentParser(
        prog="test_speed.py", description=__doc__.split("\n\n")[0],
        epilog="See BENCHMARKS.md for measured figures and the GPU command.",
    )
    p.add_argument("--model", choices=MODELS, default="sdxl", help="which weights (default sdxl)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="fast", help="speed preset (default fast)")
    p.add_argument("--steps", type=positive_int, help="override the preset's step count")
    p.add_argument("--size", type=parse_size,
                   help="WxH; default the model's 1:1 size (1024x1024 sdxl, 64x64 tiny; "
                        "sdxl-random on CPU: 256x256)")
    p.add_argument("--repeat", type=positive_int, default=1, help="runs per figure; the median is kept")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), help="default: STORYBOARD_DEVICE or auto")
    p.add_argument("--precision", choices=("auto", "fp16", "bf16", "fp32"),
                   help="default: STORYBOARD_PRECISION or auto (fp16 on GPU, fp32 on CPU; "
                        "sdxl-random on CPU: bf16, to halve its 18 GB of fp32 weights)")
    p.add_argument("--cache-dir", help=f"HF cache of the tiny models (default {DEFAULT_TINY_CACHE}, "
                                       "built if missing); with --model sdxl, the HF cache to use")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA only)")
    p.add_argument("--cfg-cutoff", type=float, metavar="F",
                   help="fraction of the steps with classifier-free guidance (STORYBOARD_CFG_CUTOFF); one "
                        "UNet pass a step after it. A mode without CFG (lightning) has none to cut: "
                        "the table says so")
    p.add_argument("--vae-force-upcast", choices=("on", "off"), default="on",
                   help="sdxl-random: build the VAE with force_upcast on (SDXL's VAE) or off (the "
                        "fp16-fix VAE's setting; same architecture). The breakdown times both.")
    p.add_argument("--lightning-lora", choices=("fuse", "adapter"),
                   help="with --preset lightning: how the LoRA is switched (STORYBOARD_LIGHTNING_LORA_MODE); "
                        "both are measured, this one is the headline")
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: STORYBOARD_CPU_THREADS, else 1 for tiny, torch's choice otherwise)")
    return p


# --- Timing helpers -------------------------------------------------------------------------


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def timed(fn, device: str):
    """(seconds, result) of ``fn()``, the device synchronised before and after."""
    sync(device)
    started = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - started, result


@contextlib.contextmanager
def quiet_libraries():
    """No progress bars or library warnings in the table (restored afterwards)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    saved = [(lib, lib.get_verbosity(), lib.is_progress_bar_enabled())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, verbosity, bars in saved:
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    if device == "mps":
        return f"Apple GPU (MPS), {platform.machine()}"
    return f"{_cpu_name()}, {os.cpu_count()} cores"


# --- Setting up ---------------------------------------------------------------------------


def make_settings(args, environ):
    from config import PRESETS, load_settings

    overrides = {
        "model": "tiny" if args.model == "tiny" else "sdxl",
        # A distilled mode's LoRA is loaded (and timed) by compare_distilled, after a FAST board
        # without it, not with SDXL as when it is the studio's default mode.
        "preset": "fast" if PRESETS[args.preset].distilled else args.preset,
        "device": args.device,
        "precision": args.precision,
        "use_identity_lock": True,
        "compile_unet": True if args.compile else None,
        "cpu_threads": args.threads,
        "lightning_lora_mode": args.lightning_lora,
    }
    if args.model == "tiny":
        overrides["hf_cache_dir"] = args.cache_dir or DEFAULT_TINY_CACHE
    elif args.cache_dir and args.model == "sdxl":
        overrides["hf_cache_dir"] = args.cache_dir
    return load_settings(environ, overrides)


def load_generator(args, settings):
    """(generator, device) for the chosen model; load_seconds is the load/build time."""
    from local_image_generator import StoryboardGenerator, resolve_device

    if args.model == "tiny":
        import tiny_models

        tiny_models.build(settings.cache_dir)
    if args.model == "sdxl-random":
        from bench import sdxl_random

        device = resolve_device(settings.device)
        return sdxl_random.build_generator(settings, device, force_upcast=args.vae_force_upcast == "on")
    return StoryboardGenerator.load(settings)


def make_jobs(generator, settings, frames: int):
    """The portrait (panel 0) and ``frames`` story panels, prompts built as the app does."""
    from local_image_generator import PanelJob
    from prompt_enhancer import PanelPlan, build_prompt, portrait_prompt, shot_for

    count = generator.count_tokens
    traits, style, negative = settings.character_traits, settings.style, settings.negative_prompt
    p = portrait_prompt(traits, style, negative, count)
    portrait = PanelJob(0, p.prompt, p.negative_prompt, seed=1234, caption=p.caption, shot=p.shot)
    panels = []
    for i in range(1, frames + 1):
        caption = STORY[(i - 1) % len(STORY)]
        plan = PanelPlan(caption, caption, shot_for(i, frames))
        q = build_prompt(plan, traits, style, negative, count)
        panels.append(PanelJob(i, q.prompt, q.negative_prompt, seed=1234 + i, caption=q.caption, shot=q.shot))
    return portrait, panels


# --- The benchmark ------------------------------------------------------------------------


def check_done(result):
    failed = [p for p in result.panels if p.status != "done"]
    if failed:
        raise RuntimeError(f"panel {failed[0].index} failed: {failed[0].error}")
    return result


def run_benchmark(generator, settings, args, width: int, height: int, steps: int | None,
                  full_warmup: bool, board6: bool) -> dict:
    from local_image_generator import StoryboardRequest

    device = generator.device
    preset = settings.preset_for(args.preset)
    portrait, panels = make_jobs(generator, settings, max(BOARD_FRAMES, ESTIMATE_FRAMES))

    def request(jobs, lock, reference=None):
        return StoryboardRequest(panels=tuple(jobs), width=width, height=height, preset=preset,
                                 identity_lock=lock, reference=reference, steps=steps)

    check = check_done
    out: dict = {}
    compiled = generator.compiled
    if compiled:
        # What --preload does after a start, for the size measured here (compiled and cached).
        out["warm_up_s"] = generator.warm_up(sizes=[(width, height)])

    # Warm-up (not timed): the portrait without the IP-Adapter becomes the reference.
    reference = check(generator.generate(request([portrait], False))).panels[0].image
    no_ip, ip = request([portrait], False), request(panels[:1], True, reference)
    board = request(panels[:BOARD_FRAMES], True, reference)
    if full_warmup:
        check(generator.generate(ip))
        check(generator.generate(board))
    if compiled:
        # Graphs those boards met and the warm-up had not (the lock off): compiled before timing,
        # as the worker would between boards.
        out["warm_up_s"] += generator.compile_pending()

    runs: dict[str, list] = {"single_no_ip_s": [], "single_ip_s": [], "storyboard_s": [], "first_panel_s": []}
    panel_seconds: list[list[float]] = []
    text_calls = image_calls = retries = 0
    for _ in range(args.repeat):
        seconds, _ = timed(lambda: check(generator.generate(no_ip)), device)
        runs["single_no_ip_s"].append(seconds)
        seconds, _ = timed(lambda: check(generator.generate(ip)), device)
        runs["single_ip_s"].append(seconds)
        text_before, image_before = generator.text_encoder_calls, generator.image_encoder_calls
        started, first = time.perf_counter(), []

        def on_panel(panel, started=started, first=first):
            if not first:
                first.append(time.perf_counter() - started)  # the first panel is on the page

        seconds, result = timed(lambda: check(generator.generate(board, on_panel=on_panel)), device)
        runs["first_panel_s"].append(first[0])
        text_calls = generator.text_encoder_calls - text_before
        image_calls = generator.image_encoder_calls - image_before
        runs["storyboard_s"].append(seconds)
        panel_seconds.append([p.seconds for p in result.panels])
        retries += sum(p.vae_fp32_retry for p in result.panels)

    out.update({name: statistics.median(values) for name, values in runs.items()})
    median_run = sorted(range(args.repeat), key=lambda i: runs["storyboard_s"][i])[(args.repeat - 1) // 2]
    out["storyboard_frames"] = BOARD_FRAMES
    out["panel_seconds"] = panel_seconds[median_run]
    out["panel_average_s"] = statistics.fmean(out["panel_seconds"])
    out["per_image_s"] = out["storyboard_s"] / BOARD_FRAMES
    out["average_image_s"] = statistics.fmean([out["single_no_ip_s"], out["single_ip_s"], out["per_image_s"]])
    out["estimate_6_s"] = ESTIMATE_FRAMES * out["per_image_s"]
    out["text_encoder_calls"] = text_calls
    out["image_encoder_calls"] = image_calls
    out["vae_fp32_retries"] = retries  # panels decoded twice (NaN/black in half precision)
    out["runs"] = runs
    if board6:
        from bench import sdxl_random

        six = request(panels[:ESTIMATE_FRAMES], True, reference)
        check(generator.generate(six))  # warm-up for the batch shape
        sdxl_random.reset_peak_memory(device)
        check(generator.generate(ip))
        out["peak_memory_panel_gb"] = sdxl_random.peak_memory_bytes(device) / 1e9
        sdxl_random.reset_peak_memory(device)
        out["board_6_s"] = statistics.median(
            timed(lambda: check(generator.generate(six)), device)[0] for _ in range(args.repeat))
        out["peak_memory_board_6_gb"] = sdxl_random.peak_memory_bytes(device) / 1e9
    if args.cfg_cutoff is not None:
        out["unet_batches_single_ip"] = unet_batches(generator, lambda: check(generator.generate(ip)))
    out["scoring"] = measure_scoring(generator, reference, [p.image for p in result.panels], settings)
    out["reference"] = reference
    return out


def compare_distilled(generator, settings, args, width: int, height: int) -> dict:
    """The lightning mode beside FAST, in the same run, on the same loaded pipeline.

    A 3-panel FAST board (identity lock on) is timed before the LoRA is ever loaded; then the
    LoRA's first load; then for each way of switching (fuse, adapter), ``--repeat`` rounds of:
    switch to FAST, a FAST board, switch to lightning, a lightning board, so that the two
    boards compared are timed side by side however the machine's load drifts. Every board's
    UNet passes (and UNet seconds) a panel are counted in one extra hooked run.
    """
    from local_image_generator import StoryboardRequest

    device, repeat = generator.device, args.repeat
    fast, lightning = settings.preset_for("fast"), settings.preset_for(args.preset)
    panels, reference = locked_board(generator, settings, width, height)
    requests = {preset.name: StoryboardRequest(tuple(panels), width, height, preset, True, reference)
                for preset in (fast, lightning)}

    def draw(preset):
        return check_done(generator.generate(requests[preset.name]))

    def counted(preset) -> dict:
        draw(preset)  # warm-up, and the switch into the mode
        if generator.compiled:
            generator.compile_pending()  # that board's graph, if it was drawn without compile
        calls = unet_calls(generator, lambda: draw(preset))
        return {"unet_passes_per_panel": sum(batch for batch, _ in calls) / BOARD_FRAMES,
                "unet_s": sum(seconds for _, seconds in calls)}

    def board(seconds: list[float]) -> dict:
        return {"board_s": statistics.median(seconds), "per_panel_s": statistics.median(seconds) / BOARD_FRAMES}

    out: dict = {"frames": BOARD_FRAMES, "mode": settings.lightning_lora_mode}
    out["fast"] = {**counted(fast), **board([timed(lambda: draw(fast), device)[0] for _ in range(repeat)])}
    out["lora_load_s"] = timed(lambda: generator._ensure_lora(lightning.family), device)[0]
    for mode in (out["mode"], *({"fuse", "adapter"} - {out["mode"]})):
        generator._use_preset(fast)
        generator.settings = dataclasses.replace(generator.settings, lightning_lora_mode=mode)
        result = counted(lightning)
        times: dict[str, list[float]] = {"to_fast": [], "fast": [], "to_lightning": [], "lightning": []}
        for _ in range(repeat):
            times["to_fast"].append(timed(lambda: generator._use_preset(fast), device)[0])
            times["fast"].append(timed(lambda: draw(fast), device)[0])
            times["to_lightning"].append(timed(lambda: generator._use_preset(lightning), device)[0])
            times["lightning"].append(timed(lambda: draw(lightning), device)[0])
        result.update(board(times["lightning"]))
        result["fast_beside_s"] = statistics.median(times["fast"])  # FAST, LoRA loaded and off
        result["ratio_to_fast"] = statistics.median(
            [light / fast_s for light, fast_s in zip(times["lightning"], times["fast"])])
        result["ratio_to_fast_before_lora"] = result["board_s"] / out["fast"]["board_s"]
        result["unet_ratio_to_fast"] = result["unet_s"] / out["fast"]["unet_s"]
        result["switch_to_fast_s"] = statistics.median(times["to_fast"])
        result["switch_to_lightning_s"] = statistics.median(times["to_lightning"])
        result["runs"] = times
        out[mode] = result
    generator._use_preset(fast)
    generator.settings = dataclasses.replace(generator.settings, lightning_lora_mode=out["mode"])
    return out


DRAFT_COMPARED = ("fast", "lightning", "draft")


def flops_by_part(preset, parts: dict) -> dict:
    """A one-panel board's FLOPs in ``preset`` (config.SpeedPreset.panel_flops, lock on), by part."""
    per_step = 2 if preset.uses_cfg else 1
    decoder = {"vae": "vae_decode", "taesdxl": "taesdxl_decode"}[preset.decoder]
    return {"encode": per_step * (parts["text_prompt"] + parts["image"]),
            "unet": preset.unet_passes * parts["unet_forward_identity"],
            "decode": parts[decoder], "total": preset.panel_flops(parts)}


# A layout may add at most this share to a FAST panel's FLOPs (why an adapter, not a ControlNet).
LAYOUT_FLOPS_TARGET = 0.03


def layout_flops() -> dict:
    """A FAST panel's FLOPs (identity lock on) at 1024x1024 on the full-size models without and
    with a layout: the layout adds one run of its T2I-Adapter (counted on the meta device with
    the real config), whatever the steps; its features' additions into the UNet (a few
    element-wise adds a step) are not counted, as FlopCounterMode counts no additions."""
    from bench import sdxl_random
    from config import PANEL_PART_FLOPS, PRESETS

    without = PRESETS["fast"].panel_flops(PANEL_PART_FLOPS)
    adapter = sdxl_random.t2i_adapter_flops(1024, 1024)
    return {"adapter": adapter, "fast_panel": without, "fast_panel_with_layout": without + adapter,
            "extra": adapter / without, "target": LAYOUT_FLOPS_TARGET}


def locked_board(generator, settings, width: int, height: int):
    """A board's panels and the reference portrait that locks them (drawn in FAST, unlocked)."""
    from local_image_generator import StoryboardRequest

    portrait, panels = make_jobs(generator, settings, BOARD_FRAMES)
    reference = check_done(generator.generate(StoryboardRequest(
        (portrait,), width, height, settings.preset_for("fast"), identity_lock=False))).panels[0].image
    return panels, reference


def compare_modes(generator, settings, args, width: int, height: int, parts: dict | None, board) -> dict:
    """The draft mode beside FAST and lightning, in one run, on the same loaded pipeline.

    Each mode's FLOPs by part (``parts``: counted at this size for sdxl-random, else the
    full-size counts at 1024x1024 kept in config), its UNet passes (and UNet seconds) a panel
    counted in one hooked run, then ``--repeat`` rounds of a 3-panel board (identity lock on)
    in each mode in turn, so the boards compared are timed side by side however the machine's
    load drifts. Each switch into a mode (LoRA unfused and fused) is timed apart from its board:
    a user drafting a board after a board pays it once.
    """
    from config import PANEL_PART_FLOPS
    from local_image_generator import StoryboardRequest

    device = generator.device
    presets = [settings.preset_for(name) for name in DRAFT_COMPARED]
    panels, reference = board
    requests = {p.name: StoryboardRequest(tuple(panels), width, height, p, True, reference) for p in presets}

    def draw(preset):
        return check_done(generator.generate(requests[preset.name]))

    out: dict = {"frames": BOARD_FRAMES, "flops_at": "this size" if parts else "1024x1024, full-size models"}
    for preset in presets:
        draw(preset)  # warm-up: the LoRA's first load, TAESDXL's, the switch into the mode
        if generator.compiled:
            generator.compile_pending()
        calls = unet_calls(generator, lambda: draw(preset))
        out[preset.name] = {"flops": flops_by_part(preset, parts or PANEL_PART_FLOPS),
                            "unet_passes_per_panel": sum(batch for batch, _ in calls) / BOARD_FRAMES,
                            "unet_s": sum(seconds for _, seconds in calls), "runs": [], "switches": []}
    for _ in range(args.repeat):
        for preset in presets:
            out[preset.name]["switches"].append(timed(lambda: generator._use_preset(preset), device)[0])
            out[preset.name]["runs"].append(timed(lambda: draw(preset), device)[0])
    fast_runs = out["fast"]["runs"]
    for preset in presets:
        mode = out[preset.name]
        mode["board_s"] = statistics.median(mode["runs"])
        mode["switch_s"] = statistics.median(mode["switches"])
        mode["per_panel_s"] = mode["board_s"] / BOARD_FRAMES
        mode["ratio_to_fast"] = statistics.median([a / b for a, b in zip(mode["runs"], fast_runs)])
        mode["flops_ratio_to_fast"] = mode["flops"]["total"] / out["fast"]["flops"]["total"]
    return out


def measure_preview(generator, settings, width: int, height: int, parts: dict | None, board, repeat: int) -> dict:
    """A step's live preview beside a UNet pass: counted (TAESDXL on the latents pooled by
    previews.PREVIEW_POOL; at this size for sdxl-random, else at 1024x1024 on the full-size
    models), then on this model: the previews a FAST panel drawn with them gets (one a step),
    the UNet's calls in that panel (hooked), and the preview's decode timed alone."""
    import torch

    from bench import sdxl_random
    from config import PANEL_PART_FLOPS
    from local_image_generator import StoryboardRequest
    from previews import PREVIEW_POOL

    if parts:
        preview_flops, pass_flops = parts["preview_small"], parts["unet_forward_identity"]
    else:
        taesdxl = sdxl_random.build_taesdxl("meta")
        preview_flops = sdxl_random.decode_flops(taesdxl, 1024 // PREVIEW_POOL, 1024 // PREVIEW_POOL)
        pass_flops = PANEL_PART_FLOPS["unet_forward_identity"]
    panels, reference = board
    request = StoryboardRequest(panels[:1], width, height, settings.preset_for("fast"), True, reference)
    seen: list[int] = []
    calls = unet_calls(generator, lambda: check_done(generator.generate(
        request, on_preview=lambda job, step, steps, image: seen.append(step))))
    latents = torch.randn(1, 4, height // 8, width // 8)
    generator.previews.decode(latents)  # warm-up (TAESDXL is loaded by the draft mode already)
    decode_s = statistics.median(timed(lambda: generator.previews.decode(latents), generator.device)[0]
                                 for _ in range(max(3, repeat)))
    pass_s = sum(seconds for _, seconds in calls) / sum(batch for batch, _ in calls)
    return {"flops": preview_flops, "flops_at": "this size" if parts else "1024x1024, full-size models",
            "flops_share_of_unet_pass": preview_flops / pass_flops, "pool": PREVIEW_POOL,
            "previews_per_panel": len(seen), "steps": request.num_steps, "unet_calls": len(calls),
            "decode_s": decode_s, "unet_pass_s": pass_s,
            "unet_step_s": statistics.median(seconds for _, seconds in calls), "share_of_unet_pass": decode_s / pass_s}


def compare_refine(generator, settings, args, width: int, height: int, board) -> dict:
    """A refine of a FAST board (FAST, at settings.refine_strength, identity lock on) beside
    drawing that board afresh: UNet passes a panel counted in one hooked run of each (a refine
    runs strength x steps of the steps), then ``--repeat`` rounds of the two in turn, timed."""
    from local_image_generator import StoryboardRequest

    panels, reference = board
    fresh = StoryboardRequest(tuple(panels), width, height, settings.preset_for("fast"), True, reference)
    drawn = check_done(generator.generate(fresh)).panels
    sources = tuple(dataclasses.replace(job, init_image=panel.image) for job, panel in zip(panels, drawn))
    requests = {"fresh": fresh, "refine": dataclasses.replace(fresh, panels=sources, strength=settings.refine_strength)}
    check_done(generator.generate(requests["refine"]))  # warm-up: img2img's pipeline, made once from SDXL's
    out: dict = {"frames": len(panels), "preset": "fast", "strength": settings.refine_strength,
                 "steps": fresh.num_steps, "denoising_steps": requests["refine"].denoising_steps}
    for name, request in requests.items():
        calls = unet_calls(generator, lambda request=request: check_done(generator.generate(request)))
        out[name] = {"unet_passes_per_panel": sum(batch for batch, _ in calls) / len(panels),
                     "unet_s": sum(seconds for _, seconds in calls), "runs": []}
    for _ in range(args.repeat):
        for name, request in requests.items():
            out[name]["runs"].append(timed(lambda request=request: check_done(generator.generate(request)),
                                           generator.device)[0])
    for name in requests:
        out[name]["board_s"] = statistics.median(out[name]["runs"])
    out["ratio_to_fresh"] = statistics.median(a / b for a, b in zip(out["refine"]["runs"], out["fresh"]["runs"]))
    out["passes_ratio_to_fresh"] = out["refine"]["unet_passes_per_panel"] / out["fresh"]["unet_passes_per_panel"]
    return out


def measure_scoring(generator, reference, images, settings) -> dict:
    """What the identity score costs per panel: dlib face distance + CLIP similarity."""
    try:
        from identity import FaceScorer

        started = time.perf_counter()
        scorer = FaceScorer.load()
        load_s = time.perf_counter() - started
    except Exception as error:  # noqa: BLE001 - the benchmark goes on without scoring
        return {"available": False, "reason": f"{type(error).__name__}: {error}"}
    face, clip = [], []
    for image in images:
        # The detector and descriptor are the cost; a panel's score is one descriptor plus a
        # subtraction (and with no face in the reference score() would skip the work).
        started = time.perf_counter()
        scorer.descriptor(image)
        face.append(time.perf_counter() - started)
        started = time.perf_counter()
        generator.clip_similarity(reference, image)
        clip.append(time.perf_counter() - started)
    return {"available": True, "load_s": load_s, "face_per_panel_s": statistics.median(face),
            "clip_per_panel_s": statistics.median(clip),
            "per_panel_s": statistics.median(face) + statistics.median(clip)}


def unet_batches(generator, fn) -> list[int]:
    """The batch size of every UNet call while ``fn`` runs (2 = a CFG pass for one panel)."""
    return [batch for batch, _ in unet_calls(generator, fn)]


def unet_calls(generator, fn) -> list[tuple[int, float]]:
    """(batch size, seconds) of every UNet call while ``fn`` runs, the device synchronised
    around each call (so time these runs apart from the timed ones)."""
    seen: list[tuple[int, float]] = []
    started: list[float] = []

    def before(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        sync(generator.device)
        started.append(time.perf_counter())
        seen.append((int(sample.shape[0]), 0.0))

    def after(module, args, kwargs, output):
        sync(generator.device)
        seen[-1] = (seen[-1][0], time.perf_counter() - started[-1])

    unet = generator.pipe.unet
    handles = [unet.register_forward_pre_hook(before, with_kwargs=True),
               unet.register_forward_hook(after, with_kwargs=True)]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def panels_per_call(generator, width: int, height: int) -> int:
    try:
        return generator.batch_size(width, height)
    except TypeError:  # a generator whose batch size does not depend on the size
        return generator.batch_size()


def sdxl_random_extras(generator, reference, args, width, height, steps, flops, results) -> dict:
    """Breakdown, matmul rate and FLOP floor for the random full-size model."""
    from bench import sdxl_random

    device, dtype = generator.device, generator.dtype
    prompt = make_jobs(generator, generator.settings, 1)[1][0].prompt
    components = sdxl_random.component_timings(generator, reference, width, height, prompt,
                                               repeat=args.repeat)
    rate = sdxl_random.matmul_rate(device, dtype)
    floor = sdxl_random.floor_seconds(flops, rate, steps, ESTIMATE_FRAMES,
                                      cfg=generator.settings.preset_for(args.preset).uses_cfg)
    board = results.get("board_6_s", results["estimate_6_s"])
    return {
        "unet_parameters": generator.build_info["parameters"]["unet"],
        "parameters": generator.build_info["parameters"],
        "build_seconds": generator.build_info["seconds"],
        "flops": flops,
        "matmul_tflops": rate / 1e12,
        "floor_panel_s": floor["panel_s"],
        "floor_board_6_s": floor["board_s"],
        "board_6_measured": "board_6_s" in results,
        "board_6_s": board,
        "ratio_measured_over_floor": board / floor["board_s"],
        **components,
        "per_panel_s": results["per_image_s"],
        "vae_force_upcast": args.vae_force_upcast == "on",
    }


# --- Output -------------------------------------------------------------------------------


def format_table(r: dict) -> str:
    width = 50

    def row(label: str, seconds: float, note: str = "") -> str:
        return f"{label:<{width}}{seconds:10.3f} s" + (f"   {note}" if note else "")

    frames = r["storyboard_frames"]
    lines = [
        f"model       {r['model']}" + ("   (CPU SMOKE TEST: small size, few steps; not a speed figure "
                                       "for real use)" if r.get("smoke_test") else ""),
        f"device      {r['device']} ({r['device_name']})"
        + (f", {r['threads']} torch thread(s)" if r.get("threads") else ""),
        f"dtype       {r['dtype']}",
        f"preset      {r['preset']}, {r['steps']} steps, {r['width']}x{r['height']}, "
        f"median of {r['repeat']} run(s), batch of {r['batch_size']} panel(s) per call",
        f"versions    python {r['python']}, torch {r['torch']}, diffusers {r['diffusers']}",
        "-" * 72,
        row("model load (separate, not in any figure below)", r["load_s"]),
        row("one image, no IP-Adapter", r["single_no_ip_s"]),
        row("one image, IP-Adapter (identity lock)", r["single_ip_s"]),
        row(f"{frames}-panel storyboard, identity lock", r["storyboard_s"]),
        row("first panel on the page (from the board's start)", r["first_panel_s"]),
        "  its panels: " + ", ".join(f"{v:.3f}" for v in r["panel_seconds"])
        + f" s (average {r['panel_average_s']:.3f} s)",
        row(f"per image in the storyboard (board / {frames})", r["per_image_s"]),
        row("average of the three per-image figures", r["average_image_s"]),
        row(f"estimate, {ESTIMATE_FRAMES}-panel storyboard ({ESTIMATE_FRAMES} x per image)", r["estimate_6_s"]),
        f"encoder calls in the storyboard: text {r['text_encoder_calls']}, image {r['image_encoder_calls']}"
        + (f"; VAE decoded twice (fp32 retry) {r['vae_fp32_retries']}x" if r.get("vae_fp32_retries") else ""),
    ]
    scoring = r.get("scoring") or {}
    if scoring.get("available"):
        lines.append(row("identity score per panel (face + CLIP similarity)", scoring["per_panel_s"],
                         f"face {scoring['face_per_panel_s']:.3f} s, CLIP {scoring['clip_per_panel_s']:.3f} s; "
                         f"scorer load {scoring['load_s']:.2f} s"))
    elif scoring:
        lines.append(f"identity score: not measured ({scoring['reason']})")
    if r.get("cfg_cutoff") is not None:
        batches = r.get("unet_batches_single_ip") or []
        lines.append(f"cfg_cutoff {r['cfg_cutoff']}: "
                     + ("applied" if r["cfg_cutoff_applied"] else f"SKIPPED (the {r['preset']} mode draws without CFG)")
                     + f"; UNet batch per step for one image: {batches}")
    d = r.get("distilled")
    if d:
        name = r["preset"]

        def board(label, b, extra=""):
            return row(f"  {label}", b["board_s"], f"{b['per_panel_s']:.3f} s a panel, "
                       f"{b['unet_passes_per_panel']:g} UNet passes a panel" + extra)

        lines += ["-" * 72, f"{name} beside FAST in this run ({d['frames']}-panel boards, identity lock on):",
                  board("FAST, before the LoRA is loaded", d["fast"])]
        for mode, label in (("fuse", "LoRA fused"), ("adapter", "LoRA as an adapter")):
            b = d[mode]
            lines += [
                board(f"{name}, {label}" + (" (the setting)" if mode == d["mode"] else ""), b),
                row("    FAST timed beside it (LoRA loaded, off)", b["fast_beside_s"],
                    f"{name} / FAST {b['ratio_to_fast']:.3f} (to FAST before the LoRA "
                    f"{b['ratio_to_fast_before_lora']:.3f}; UNet time alone {b['unet_ratio_to_fast']:.3f})"),
                f"    switch to FAST {b['switch_to_fast_s']:.3f} s, to {name} {b['switch_to_lightning_s']:.3f} s",
            ]
        lines.append(row("  LoRA first load (separate)", d["lora_load_s"]))
    m = r.get("modes")
    if m:
        lines += ["-" * 72, f"draft beside FAST and lightning in this run ({m['frames']}-panel boards, identity lock "
                            f"on; FLOPs a panel at {m['flops_at']}):"]
        for name in DRAFT_COMPARED:
            b, f = m[name], m[name]["flops"]
            lines += [
                row(f"  {name}", b["board_s"], f"{b['per_panel_s']:.3f} s a panel, {b['unet_passes_per_panel']:g} "
                    f"UNet pass{'es' if b['unet_passes_per_panel'] != 1 else ''} a panel ({b['unet_s']:.3f} s of UNet in a hooked board); / FAST "
                    f"{b['ratio_to_fast']:.3f}; the switch into it {b['switch_s']:.3f} s"),
                f"    FLOPs: encoders {f['encode'] / 1e12:.3f} T + UNet {f['unet'] / 1e12:.3f} T + decode "
                f"{f['decode'] / 1e12:.3f} T = {f['total'] / 1e12:.1f} T (/ FAST {b['flops_ratio_to_fast']:.3f})",
            ]
    v = r.get("preview")
    if v:
        lines += [
            "-" * 72,
            f"a step's live preview (TAESDXL, latents pooled by {v['pool']}): {v['flops'] / 1e12:.3f} TFLOP at "
            f"{v['flops_at']}, {100 * v['flops_share_of_unet_pass']:.1f}% of a UNet pass (counted)",
            row("  preview decode, timed alone", v["decode_s"],
                f"{1000 * v['decode_s']:.2f} ms: {100 * v['share_of_unet_pass']:.1f}% of a UNet pass here "
                f"({1000 * v['unet_pass_s']:.2f} ms; a FAST step {1000 * v['unet_step_s']:.2f} ms)"),
            f"  a FAST panel drawn with previews: {v['previews_per_panel']} previews for {v['steps']} steps, "
            f"{v['unet_calls']} UNet calls",
        ]
    rf = r.get("refine")
    if rf:
        lines += ["-" * 72, f"a refine beside a fresh FAST board ({rf['frames']} panels, identity lock on; strength "
                            f"{rf['strength']:g}: {rf['denoising_steps']} of {rf['steps']} steps):"]
        for name, label in (("fresh", "FAST, drawn afresh"), ("refine", "FAST refine of it")):
            b = rf[name]
            lines.append(row(f"  {label}", b["board_s"], f"{b['unet_passes_per_panel']:g} UNet passes a panel "
                                                         f"({b['unet_s']:.3f} s of UNet in a hooked board)"))
        lines.append(f"  refine / fresh: {rf['ratio_to_fresh']:.3f} timed, {rf['passes_ratio_to_fresh']:.3f} in UNet passes")
    lay = r["layout"]
    lines.append(f"a layout (T2I-Adapter, once a panel; 1024x1024, full-size models): FAST panel "
                 f"{lay['fast_panel'] / 1e12:.1f} T without, {lay['fast_panel_with_layout'] / 1e12:.1f} T with "
                 f"(adapter {lay['adapter'] / 1e12:.3f} T, +{100 * lay['extra']:.2f}%; target <= "
                 f"{100 * lay['target']:.0f}%)")
    x = r.get("sdxl_random")
    if x:
        f = x["flops"]
        board_label = "measured" if x["board_6_measured"] else f"estimated, {ESTIMATE_FRAMES} x per panel"
        lines += [
            "-" * 72,
            f"UNet parameters {x['unet_parameters']:,} (SDXL base 1.0: 2,567,463,684); "
            + ", ".join(f"{k} {v / 1e6:.0f}M" for k, v in x["parameters"].items() if k != "unet"),
            f"FLOPs (meta device): UNet forward {f['unet_forward'] / 1e12:.3f} T, CFG step "
            f"{f['unet_cfg_step'] / 1e12:.3f} T, VAE decode {f['vae_decode'] / 1e12:.3f} T, "
            f"prompt {f['text_prompt'] / 1e12:.3f} T, image {f['image'] / 1e12:.3f} T",
            f"{'matmul rate (' + r['dtype'] + ', measured in this run)':<{width}}{x['matmul_tflops']:10.2f} TFLOP/s",
            "model build: " + ", ".join(f"{k} {v:.1f} s" for k, v in x["build_seconds"].items())
            + f" (total {r['load_s']:.1f} s)",
            row("text encoding (one prompt, both encoders)", x["text_encode_s"]),
            row("image encoding (reference + zero image, ViT-H)", x["image_encode_s"]),
            row("UNet step, CFG batch 2, identity lock on", x["unet_step_ip_s"],
                f"{x['unet_ops_ip']} ATen ops (each constant recomputed, as diffusers does)"),
            row("UNet step, CFG batch 2, identity lock off", x["unet_step_plain_s"],
                f"{x['unet_ops_plain']} ATen ops"),
        ]
        for name, label in (("ip", "on"), ("plain", "off")):
            if f"unet_step_{name}_folded_s" in x:
                lines.append(row(f"  ... lock {label}, cross-attention constants folded",
                                 x[f"unet_step_{name}_folded_s"],
                                 f"{x[f'unet_ops_{name}_folded']} ATen ops (as inside a board)"))
        for key, label in (("vae_decode_upcast_s", "on (fp32 VAE)"), ("vae_decode_no_upcast_s", "off")):
            if key in x:
                lines.append(row(f"VAE decode, force_upcast {label}", x[key]))
        lines += [
            row(f"per panel (storyboard / {frames})", x["per_panel_s"]),
            row(f"{ESTIMATE_FRAMES}-panel board ({board_label})", x["board_6_s"]),
            row("FLOP floor, one panel", x["floor_panel_s"]),
            row(f"FLOP floor, {ESTIMATE_FRAMES}-panel board", x["floor_board_6_s"],
                f"measured / floor = {x['ratio_measured_over_floor']:.1f}x"),
            f"peak memory: {r['peak_memory_gb']:.2f} GB ({r['peak_memory_kind']}); "
            f"after build {r['build_peak_memory_gb']:.2f} GB"
            + (f"; one locked panel {r['peak_memory_panel_gb']:.2f} GB, a {ESTIMATE_FRAMES}-panel board "
               f"{r['peak_memory_board_6_gb']:.2f} GB" if "peak_memory_panel_gb" in r else ""),
            f"memory format {r['memory_format']}; compile {r['compile_mode'] or 'off'}"
            + (f", warm-up {r['warm_up_s']:.1f} s" if "warm_up_s" in r else ""),
            "attention processors, identity lock on: "
            + ", ".join(f"{k} x{v}" for k, v in x["attention_processors_ip"].items()),
        ]
    return "\n".join(lines)


def _json_ready(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model in ("tiny", "sdxl-random"):
        # Nothing to download: never ask the hub (read when huggingface_hub is imported).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import torch

    with quiet_libraries():
        return _run(args, diffusers, torch)


def _run(args, diffusers, torch) -> int:
    from local_image_generator import (ModelNotAvailable, apply_cpu_threads, channels_last, resolve_device,
                                       resolve_dtype)

    settings = make_settings(args, os.environ)
    apply_cpu_threads(settings)
    device = resolve_device(settings.device)
    smoke = args.model == "sdxl-random" and device == "cpu"
    if smoke and args.precision is None and settings.precision == "auto":
        settings = dataclasses.replace(settings, precision="bf16")
    if args.compile and device != "cuda":
        print(f"--compile: ignored on {device} (the generator compiles on CUDA only)")
    # The generator reads settings.cfg_cutoff, and cuts guidance only where a mode has some.
    cfg_applied = args.cfg_cutoff is not None and settings.preset_for(args.preset).uses_cfg
    if args.cfg_cutoff is not None:
        settings = dataclasses.replace(settings, cfg_cutoff=args.cfg_cutoff)
    dtype = resolve_dtype(settings.precision, device)
    width, height = args.size or (CPU_SMOKE_SIZE if smoke else settings.size_for("1:1"))
    distilled = settings.preset_for(args.preset).distilled
    steps = args.steps or (CPU_SMOKE_STEPS if smoke and not distilled else None)
    if smoke:
        print(f"sdxl-random on CPU: a SMOKE TEST at {width}x{height}, "
              f"{steps or settings.preset_for(args.preset).steps} step(s), {str(dtype).replace('torch.', '')}. "
              "Its times say nothing about a GPU; see BENCHMARKS.md for the GPU command.")

    flops = None
    if args.model == "sdxl-random":
        from bench import sdxl_random

        print("counting FLOPs on the meta device ...")
        flops = sdxl_random.count_flops(width, height)
    print(f"loading {args.model} on {device} ({str(dtype).replace('torch.', '')}) ...")
    try:
        generator = load_generator(args, settings)
    except ModelNotAvailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    build_peak = None
    if args.model == "sdxl-random":
        from bench import sdxl_random

        build_peak = sdxl_random.peak_memory_bytes(generator.device)
        sdxl_random.reset_peak_memory(generator.device)

    comparison = modes = preview = refine = None
    if args.preset == "draft":
        print("draft beside FAST and lightning on this pipeline ...")
        board = locked_board(generator, settings, width, height)
        modes = compare_modes(generator, settings, args, width, height, flops, board)
        print("a step's live preview beside a UNet pass; a refine beside a fresh FAST board ...")
        preview = measure_preview(generator, settings, width, height, flops, board, args.repeat)
        refine = compare_refine(generator, settings, args, width, height, board)
    elif distilled:
        print(f"{args.preset} beside FAST on this pipeline (both ways of switching) ...")
        comparison = compare_distilled(generator, settings, args, width, height)
    print("warming up, then timing ...")
    measured = run_benchmark(generator, settings, args, width, height, steps,
                             full_warmup=not smoke, board6=args.model == "sdxl-random" and not smoke)
    reference = measured.pop("reference")
    described = generator.describe()
    results = {
        "model": args.model,
        "device": generator.device,
        "device_name": device_name(generator.device),
        "dtype": described["dtype"],
        "preset": args.preset,
        "steps": steps or settings.preset_for(args.preset).steps,
        "width": width,
        "height": height,
        "repeat": args.repeat,
        "batch_size": panels_per_call(generator, width, height),
        "threads": torch.get_num_threads() if generator.device == "cpu" else None,
        "compile": bool(args.compile and generator.device == "cuda"),
        "compile_mode": settings.compile_mode if args.compile and generator.device == "cuda" else None,
        "memory_format": "channels_last" if channels_last(settings, generator.device) else "contiguous",
        "first_panel_alone": settings.first_panel_alone,
        "cfg_cutoff": args.cfg_cutoff,
        "cfg_cutoff_applied": cfg_applied,
        "smoke_test": smoke,
        "load_s": generator.load_seconds,
        **measured,
        "distilled": comparison,
        "modes": modes,
        "preview": preview,
        "refine": refine,
        "layout": layout_flops(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "platform": platform.platform(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if args.model == "sdxl-random":
        from bench import sdxl_random

        if args.json:  # what took the hour so far is kept, whatever happens to the extras
            _write_json(Path(args.json), results)
        results["sdxl_random"] = sdxl_random_extras(
            generator, reference, args, width, height, results["steps"], flops, results)
        results["peak_memory_gb"] = sdxl_random.peak_memory_bytes(generator.device) / 1e9
        results["peak_memory_kind"] = {
            "cuda": "torch.cuda.max_memory_allocated since the build",
            "mps": "MPS driver memory at the end",
        }.get(generator.device, "process max RSS, build included")
        results["build_peak_memory_gb"] = build_peak / 1e9
    print(format_table(results))
    if args.json:
        _write_json(Path(args.json), results)
        print(f"wrote {args.json}")
    return 0


def _write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_ready(results), indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
