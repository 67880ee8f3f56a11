"""Building the tiny offline models: safe when several processes build into one cache at once."""

import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

import tiny_models

ROOT = Path(__file__).resolve().parent.parent

# Says "ready" on stdout, then builds; prints "built" if the build wrote the models itself.
BUILDER = """
import logging, sys, tiny_models
written = []
class Seen(logging.Handler):
    def emit(self, record):
        written.append(record.getMessage())
logging.getLogger("tiny_models").addHandler(Seen())
logging.getLogger("tiny_models").setLevel(logging.INFO)
print("ready", flush=True)
tiny_models.build(sys.argv[1])
print("built" if any(m.startswith("tiny models written") for m in written) else "found", flush=True)
"""


@pytest.mark.slow  # two processes build the tiny models
def test_two_processes_building_into_one_cache_at_once_both_get_whole_models(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    lock = FileLock(cache / ".tiny-build.lock")
    lock.acquire()  # both start while the lock is held, so they contend for it together
    builders = [subprocess.Popen([sys.executable, "-c", BUILDER, str(cache)], cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        for builder in builders:
            assert builder.stdout.readline().strip() == "ready"
    finally:
        lock.release()
    outcomes = []
    for builder in builders:
        out, err = builder.communicate(timeout=600)
        assert builder.returncode == 0, err[-3000:]
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["built", "found"]  # one built, the other waited and found it whole
    assert tiny_models.is_built(cache)
    assert not list(cache.glob(".tiny-build-*"))  # nothing left aside


def test_a_build_killed_midway_leaves_nothing_that_looks_built(tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def killed(staging):
        tiny_models.repo_snapshot(staging, tiny_models.SDXL_REPO).mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_models, "_write", killed)
    with pytest.raises(KeyboardInterrupt):
        tiny_models.build(cache)
    assert not tiny_models.is_built(cache)
    assert not list(cache.glob("models--*/snapshots/*"))  # the half-written repo stayed aside
    assert not list(cache.glob(".tiny-build-*"))


def test_every_distilled_lora_twin_has_the_kohya_keys_of_its_real_file(hf_cache):
    from safetensors import safe_open

    for repo, files in tiny_models.LORA_REPOS.items():
        for file in files:
            path = next((hf_cache / ("models--" + repo.replace("/", "--"))).glob(f"snapshots/*/{file}"))
            with safe_open(path, "pt") as weights:
                keys = list(weights.keys())
            assert keys and all(key.startswith("lora_unet_") for key in keys), file
            assert 3 * sum(key.endswith(".alpha") for key in keys) == len(keys), file


def test_asking_whether_the_models_are_built_writes_nothing(tmp_path):
    assert not tiny_models.is_built(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_random_lora_for_a_unet_that_already_has_one_has_the_same_shapes(tiny_generator):
    """sdxl-random loads each distilled family's random LoRA into a UNet that may hold another's
    already (lightning, then draft): the layers peft wrapped must still get their own shapes (a
    conv's down weight with its kernel), or the second LoRA does not load."""
    import copy

    unet = copy.deepcopy(tiny_generator.pipe.unet)
    plain = tiny_models.kohya_lora_tensors(unet, tiny_models.LORA_RANK, tiny_models.LORA_ALPHA)
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=4, target_modules=["conv1", "to_q"]), adapter_name="other")
    wrapped = tiny_models.kohya_lora_tensors(unet, tiny_models.LORA_RANK, tiny_models.LORA_ALPHA)
    assert {k: v.shape for k, v in wrapped.items()} == {k: v.shape for k, v in plain.items()}
    assert any(t.dim() == 4 and t.shape[-1] == 3 for t in plain.values())  # a 3x3 conv's down weight is there
