"""bench/gpu.sh, the GPU run made to work the first time: its wheel list, its preflight, its
guards, and a dry run on the tiny models that returns what the device tool brings back."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from bench import gpu_preflight

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu.sh"
NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what the device tool returns: letters, digits, '.', '_', '-'


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            found[name.strip().lower()] = version.strip()
    return found


def gpu_sh(tmp_path, *args, **env):
    values = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_WORK": str(tmp_path / "work"),
              "PYTHON": os.environ.get("PYTHON", __import__("sys").executable), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=values, capture_output=True, text=True,
                          timeout=900)


# --- the wheels ---------------------------------------------------------------------------


def test_the_wheel_list_carries_no_torch_and_pins_as_the_project_does():
    wheels = pins(ROOT / "bench" / "gpu-wheels.txt")
    assert not [name for name in wheels if name == "torch" or name.startswith("nvidia")]
    runtime = pins(ROOT / "requirements.txt")
    assert {name: v for name, v in wheels.items() if runtime.get(name, v) != v} == {}
    assert {"diffusers", "clip-anytorch", "flask", "fpdf2"} <= set(wheels)


def test_the_clip_vocabulary_has_one_pin_everywhere_it_is_named():
    pin = pins(ROOT / "bench" / "gpu-wheels.txt")["clip-anytorch"]
    named = f"clip-anytorch=={pin}"
    assert f"CLIP_VOCAB := {named}" in (ROOT / "Makefile").read_text()
    assert f"pip install --no-deps {named}" in (ROOT / "requirements.txt").read_text()
    assert f"pip install --no-deps {named}" in (ROOT / "tiny_models.py").read_text()


def test_a_carried_torch_wheel_is_refused_before_anything_runs(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    (wheels / "torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"")
    done = gpu_sh(tmp_path, "--dry-run", GPU_WHEELS=str(wheels))
    assert done.returncode == 2
    assert "never carry torch" in done.stderr
    assert not (tmp_path / "out" / "summary.txt").exists()  # stopped before the preflight


def test_caches_inside_out_are_refused(tmp_path):
    done = gpu_sh(tmp_path, "--dry-run", GPU_WORK=str(tmp_path / "out" / "work"))
    assert done.returncode == 2 and "must be outside $OUT" in done.stderr


# --- the preflight ------------------------------------------------------------------------


def test_preflight_names_a_missing_module_and_the_wheels_to_carry(monkeypatch, capsys):
    monkeypatch.setattr(gpu_preflight, "MODULES", ("json", "no_such_module_here"))
    assert gpu_preflight.main(["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "import no_such_module_here" in err and "bench/gpu-wheels.txt" in err and "json" not in err


def test_preflight_names_a_missing_clip_vocabulary(monkeypatch, capsys):
    import tiny_models

    def missing():
        raise tiny_models.MissingVocabulary("The tiny models need CLIP's BPE vocabulary")

    monkeypatch.setattr(gpu_preflight, "MODULES", ())
    monkeypatch.setattr(tiny_models, "clip_bpe_merges", missing)
    assert gpu_preflight.main(["--dry-run"]) == 2
    assert "preflight FAILED: CLIP vocabulary" in capsys.readouterr().err


def test_preflight_without_a_gpu_says_so_unless_dry_run(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(gpu_preflight, "MODULES", ())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_preflight.main([]) == 2
    assert "sees no GPU" in capsys.readouterr().err
    assert gpu_preflight.main(["--dry-run"]) == 0


# --- the dry run --------------------------------------------------------------------------


def returned_files(out: Path) -> list[Path]:
    """What the device tool brings back from $OUT, checked against its rules."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files
    for path in files:
        parts = path.relative_to(out).parts
        assert len(parts) <= 3, path  # $OUT/a/b/file at most
        assert all(NAME.match(part) for part in parts), path
    return files


@pytest.mark.slow
def test_a_stage_that_does_not_fit_the_budget_is_skipped_and_said(tmp_path):
    done = gpu_sh(tmp_path, "--dry-run", "fast-defaults", GPU_BUDGET_S="1")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "preflight ok" in summary
    assert "fast-defaults: skipped" in summary and "(bash bench/gpu.sh fast-defaults)" in summary


def test_the_dry_run_returns_every_stage_in_at_most_eight_files(tmp_path, hf_cache):
    done = gpu_sh(tmp_path, "--dry-run", "fast-fold-off", "overhead", GPU_TINY_CACHE=str(hf_cache))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in returned_files(out)) == ["logs.tar.gz", "results.json", "summary.txt"]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"fast-fold-off", "overhead"}
    assert results["fast-fold-off"]["model"] == "tiny" and results["fast-fold-off"]["steps"] == 2
    assert results["overhead"]["generator_s"] > 0
    summary = (out / "summary.txt").read_text()
    for stage in results:
        assert f"{stage}: exit 0" in summary
    assert not (out / "data").exists()  # the data dir and the tiny models stay in GPU_WORK
