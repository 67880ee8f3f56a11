"""test_speed.py (the benchmark) and sdxl_random.py (full-size SDXL shapes, random weights).

The benchmark runs here on the tiny models only; the full-size model is checked on the
meta device (no memory, no compute): its parameter count and its FLOPs.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_importing_test_speed_does_nothing():
    code = (
        "import sys, test_speed\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'local_image_generator') if m in sys.modules]\n"
        "print(','.join(heavy) or 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
    assert out.stderr == ""  # no argv parsing, no output


def test_the_help_says_which_modes_the_cfg_cutoff_applies_to():
    """Every mode with CFG applies it; the help used to hedge ("if the generator supports it")."""
    out = subprocess.run([sys.executable, "test_speed.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    words = " ".join(out.stdout.split())
    assert out.returncode == 0 and "supports it" not in words
    assert "A mode without CFG (lightning) has none to cut" in words


def test_importing_sdxl_random_does_not_import_torch():
    code = "import sys; from bench import sdxl_random; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_size_flag_is_checked():
    import test_speed

    assert test_speed.parse_size("1024x768") == (1024, 768)
    with pytest.raises(SystemExit):
        test_speed.main(["--model", "tiny", "--size", "100x100"])  # not a multiple of 8


def test_the_overhead_benchmark_measures_the_same_board_both_ways(hf_cache, tmp_path, capsys):
    from bench import overhead as bench_overhead

    path = tmp_path / "overhead.json"
    assert bench_overhead.main(["--repeat", "1", "--cache-dir", str(hf_cache), "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["model"] == "tiny" and data["device"] == "cpu" and len(data["rounds"]) == 1
    assert data["generator_s"] > 0 and data["ratio"] == pytest.approx(data["api_s"] / data["generator_s"])
    assert "through the API" in capsys.readouterr().out


def test_tiny_benchmark_writes_every_figure(hf_cache, tmp_path, capsys):
    import test_speed

    path = tmp_path / "speed.json"
    code = test_speed.main(["--model", "tiny", "--json", str(path), "--cache-dir", str(hf_cache), "--steps", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    for label in ("no IP-Adapter", "IP-Adapter (identity lock)", "3-panel storyboard", "estimate, 6-panel",
                  "model load", "float32", "cpu", "a layout (T2I-Adapter"):
        assert label in printed

    data = json.loads(path.read_text())
    missing = [key for key in test_speed.REQUIRED_KEYS if key not in data]
    assert not missing
    assert data["model"] == "tiny"
    assert data["device"] == "cpu" and data["dtype"] == "float32"
    assert data["preset"] == "fast" and data["steps"] == 2
    assert (data["width"], data["height"]) == (64, 64)  # the tiny model's 1:1 size
    for key in ("load_s", "single_no_ip_s", "single_ip_s", "storyboard_s", "per_image_s", "estimate_6_s"):
        assert data[key] > 0, key
    assert data["storyboard_frames"] == 3
    assert len(data["panel_seconds"]) == 3
    assert data["per_image_s"] == pytest.approx(data["storyboard_s"] / 3, rel=1e-3)
    assert 0 < data["first_panel_s"] <= data["storyboard_s"] and "first panel on the page" in printed
    assert data["memory_format"] == "contiguous" and data["compile_mode"] is None
    assert data["estimate_6_s"] == pytest.approx(6 * data["per_image_s"], rel=1e-3)
    # Computed once per board: the panels' prompts in one call plus the shared negative, one reference.
    assert data["text_encoder_calls"] == 2
    assert data["image_encoder_calls"] == 1
    assert data["torch"].startswith("2.") and data["diffusers"] and data["python"].count(".") == 2
    assert "T" in data["timestamp"]


def test_sdxl_unet_has_the_real_parameter_count_and_flops():
    from bench import sdxl_random

    unet = sdxl_random.build_unet("meta")
    count = sdxl_random.check_unet_parameters(unet)
    assert count == pytest.approx(2.567e9, rel=0.005)
    assert next(unet.parameters()).device.type == "meta"  # nothing allocated
    flops = sdxl_random.unet_flops(1024, 1024, batch=1, unet=unet)
    assert flops == pytest.approx(6.76e12, rel=0.15)


def test_the_full_size_generator_decodes_drafts_and_previews_with_a_random_taesdxl_not_the_hub(monkeypatch):
    # The draft benchmark on sdxl-random failed loading madebyollin/taesdxl: nothing downloads.
    import torch

    import model_loading
    from bench import sdxl_random
    from config import Settings

    def no_hub(*_args, **_kwargs):
        raise AssertionError("the benchmark asked the hub for TAESDXL")

    monkeypatch.setattr(model_loading, "load_taesdxl", no_hub)
    info = {"parameters": {}, "seconds": {}}
    decoder = sdxl_random.random_previews(Settings(), "cpu", torch.float32, info)
    taesd = decoder.model()
    # The real architecture: the same parameters as the hub's config builds (on meta, for free).
    assert info["parameters"]["taesdxl"] == sdxl_random.count_parameters(sdxl_random.build_taesdxl("meta"))
    assert sum(p.numel() for p in taesd.decoder.parameters()) == pytest.approx(1.22e6, rel=0.01)
    assert any(p.abs().sum() > 0 for p in taesd.parameters())  # random, not zeros
    (picture,) = decoder.decode(torch.randn(1, 4, 32, 32))
    assert max(picture.size) <= 256 and picture.getextrema() != ((0, 0), (0, 0), (0, 0))


def test_a_layout_costs_one_adapter_run_within_three_percent_of_a_fast_panel():
    import test_speed

    cost = test_speed.layout_flops()
    assert 0.2e12 < cost["adapter"] < 0.3e12  # 0.240 T: 79M parameters at 64x64 features, once
    assert cost["fast_panel_with_layout"] == cost["fast_panel"] + cost["adapter"]
    assert cost["extra"] <= test_speed.LAYOUT_FLOPS_TARGET


def test_a_wrong_config_fails_the_parameter_check():
    from bench import sdxl_random

    with pytest.raises(sdxl_random.ParameterCountError, match="2,567,463,684"):
        sdxl_random.check_unet_parameters(_FakeModule(2_500_000_000))


class _FakeModule:
    def __init__(self, n):
        self.n = n

    def parameters(self):
        class P:
            def __init__(self, n):
                self._n = n

            def numel(self):
                return self._n

        return [P(self.n)]


def test_lightning_benchmark_runs_beside_fast_and_counts_unet_passes(hf_cache, tmp_path, capsys):
    import test_speed

    path = tmp_path / "lightning.json"
    assert test_speed.main(["--model", "tiny", "--preset", "lightning", "--json", str(path),
                            "--cache-dir", str(hf_cache), "--cfg-cutoff", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "lightning beside FAST" in printed
    data = json.loads(path.read_text())
    # No CFG to cut in this mode: the figures say the cutoff was not applied, and why.
    assert data["cfg_cutoff"] == 0.5 and data["cfg_cutoff_applied"] is False
    assert "SKIPPED (the lightning mode draws without CFG)" in printed
    assert data["unet_batches_single_ip"] == [1] * 4
    assert (data["preset"], data["steps"], data["text_encoder_calls"]) == ("lightning", 4, 1)  # no negative prompt
    d = data["distilled"]
    assert d["mode"] == "fuse" and d["lora_load_s"] > 0
    assert d["fast"]["unet_passes_per_panel"] == 18  # FAST beside has CFG: 6 steps of 2 passes, then 6 of 1
    for mode in ("fuse", "adapter"):
        assert d[mode]["unet_passes_per_panel"] == 4
        assert d[mode]["board_s"] > 0 and d[mode]["fast_beside_s"] > 0
        assert d[mode]["switch_to_fast_s"] > 0 and d[mode]["switch_to_lightning_s"] > 0
        assert d[mode]["ratio_to_fast"] == pytest.approx(d[mode]["board_s"] / d[mode]["fast_beside_s"], rel=1e-3)


def test_draft_benchmark_prints_flops_by_part_and_times_beside_fast_and_lightning_and_a_preview_and_refine(hf_cache, tmp_path, capsys):
    import test_speed

    path = tmp_path / "draft.json"
    assert test_speed.main(["--model", "tiny", "--preset", "draft", "--json", str(path),
                            "--cache-dir", str(hf_cache)]) == 0
    printed = capsys.readouterr().out
    assert "draft beside FAST and lightning" in printed and "decode 0.565 T = 7.8 T (/ FAST 0.045)" in printed
    data = json.loads(path.read_text())
    assert (data["preset"], data["steps"]) == ("draft", 1)
    modes = data["modes"]
    assert [modes[name]["unet_passes_per_panel"] for name in ("fast", "lightning", "draft")] == [24, 4, 1]
    assert round(modes["draft"]["flops"]["total"] / 1e12, 1) == 7.8
    assert modes["draft"]["flops"]["decode"] == modes["draft"]["flops"]["total"] - 6_789_121_638_400 - 445_751_889_920
    for name in ("fast", "lightning", "draft"):
        mode = modes[name]
        assert len(mode["runs"]) == 1 and mode["board_s"] > 0 and mode["switch_s"] >= 0
    assert modes["draft"]["ratio_to_fast"] == pytest.approx(modes["draft"]["runs"][0] / modes["fast"]["runs"][0], rel=1e-3)
    # A step's live preview: counted on the full-size models (TAESDXL on pooled latents, about 2%
    # of a UNet pass) and timed here; a FAST panel drawn with previews gets one a step.
    preview = data["preview"]
    assert "a step's live preview (TAESDXL, latents pooled by 2): 0.141 TFLOP at 1024x1024" in printed
    assert round(preview["flops_share_of_unet_pass"], 3) == 0.021
    assert preview["previews_per_panel"] == preview["steps"] == 12  # FAST's steps
    assert preview["decode_s"] > 0 and preview["share_of_unet_pass"] == pytest.approx(
        preview["decode_s"] / preview["unet_pass_s"], rel=1e-3)
    # A refine at the default strength beside the same FAST board drawn afresh: strength x steps.
    refine = data["refine"]
    assert "a refine beside a fresh FAST board (3 panels, identity lock on; strength 0.35: 4 of 12 steps)" in printed
    assert (refine["fresh"]["unet_passes_per_panel"], refine["refine"]["unet_passes_per_panel"]) == (24, 8)
    assert len(refine["refine"]["runs"]) == len(refine["fresh"]["runs"]) == 1
    assert refine["ratio_to_fresh"] == pytest.approx(refine["refine"]["runs"][0] / refine["fresh"]["runs"][0], rel=1e-3)


def test_the_full_size_benchmarks_part_timings_run_on_the_generator_as_it_is(tiny_generator):
    # component_timings calls into the generator (its decode, its identity mode): run here on
    # the tiny model so that a changed signature fails a test, not an hour-long full-size run.
    from PIL import Image

    from bench import sdxl_random

    out = sdxl_random.component_timings(tiny_generator, Image.new("RGB", (64, 64), "tan"), 64, 64, "a fox")
    assert out["vae_decode_s"] > 0 and out["unet_step_ip_s"] > 0 and out["unet_ops_ip"] > 0
    assert out["unet_ops_ip_folded"] <= out["unet_ops_ip"]
