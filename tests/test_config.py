"""Settings: declared once, parsed from a mapping, errors name the setting, all documented."""

import re
from pathlib import Path

import pytest

from config import PRESETS, SettingsError, SpeedPreset, load_settings, setting_fields
from errors import InputError


def test_defaults_need_no_environment():
    settings = load_settings({})
    assert (settings.model, settings.preset, settings.port, settings.host) == ("sdxl", "fast", 8080, "127.0.0.1")


@pytest.mark.parametrize("name,steps,cfg,ip", [
    ("ultra_fast", 10, 6.0, 0.40), ("fast", 12, 6.5, 0.50), ("balanced", 15, 7.0, 0.65), ("quality", 20, 7.5, 0.80),
])
def test_speed_presets_are_as_the_user_asked(name, steps, cfg, ip):
    preset = PRESETS[name]
    assert (preset.steps, preset.guidance_scale, preset.ip_adapter_scale) == (steps, cfg, ip)


def test_environment_variables_are_read():
    settings = load_settings({"STORYBOARD_PRESET": "Quality", "STORYBOARD_PORT": "9000", "STORYBOARD_PRELOAD": "yes"})
    assert (settings.preset, settings.port, settings.preload) == ("quality", 9000, True)


def test_overrides_win_over_the_environment():
    assert load_settings({"STORYBOARD_PORT": "9000"}, {"port": 9100}).port == 9100


@pytest.mark.parametrize("env,setting", [
    ({"STORYBOARD_PRESET": "turbo"}, "preset"),
    ({"STORYBOARD_PORT": "eighty"}, "port"),
    ({"STORYBOARD_PORT": "70000"}, "port"),
    ({"STORYBOARD_DEVICE": "tpu"}, "device"),
    ({"STORYBOARD_USE_IDENTITY_LOCK": "perhaps"}, "use_identity_lock"),
    ({"STORYBOARD_IP_ADAPTER_SCALE": "1.5"}, "ip_adapter_scale"),
    ({"STORYBOARD_IP_ADAPTER_SCALE": "nan"}, "ip_adapter_scale"),
    ({"STORYBOARD_IP_ADAPTER_WEIGHT": "ip-adapter.bin"}, "ip_adapter_weight"),
    ({"STORYBOARD_PORTT": "1"}, "portt"),
    ({"STORYBOARD_LIGHTNING_STEPS": "3"}, "lightning_steps"),
    ({"STORYBOARD_LIGHTNING_FAMILY": "turbo"}, "lightning_family"),
    ({"STORYBOARD_LIGHTNING_LORA_WEIGHT": "lightning.ckpt"}, "lightning_lora_weight"),
    ({"STORYBOARD_LIGHTNING_LORA_MODE": "merge"}, "lightning_lora_mode"),
])
def test_a_bad_value_names_the_setting(env, setting):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert caught.value.setting == setting and setting.upper() in str(caught.value)


def test_ip_adapter_scale_override_replaces_the_presets():
    assert load_settings({"STORYBOARD_IP_ADAPTER_SCALE": "0.7"}).preset_for("fast").ip_adapter_scale == 0.7


def test_variants_pick_adapter_and_encoder():
    plain = load_settings({"STORYBOARD_IP_ADAPTER_VARIANT": "plain"})
    assert (plain.adapter_weight, plain.adapter_image_encoder) == ("ip-adapter_sdxl.safetensors", "sdxl_models/image_encoder")
    face = load_settings({})
    assert (face.adapter_weight, face.adapter_image_encoder) == (
        "ip-adapter-plus-face_sdxl_vit-h.safetensors", "models/image_encoder")


@pytest.mark.parametrize("aspect,sdxl,tiny", [
    ("1:1", (1024, 1024), (64, 64)), ("16:9", (1344, 768), (80, 48)), ("9:16", (768, 1344), (48, 80)),
    ("4:3", (1152, 896), (72, 56)), ("3:4", (896, 1152), (56, 72)),
])
def test_sizes_are_sdxls_and_tiny_scales_them_by_16(aspect, sdxl, tiny):
    assert load_settings({}).size_for(aspect) == sdxl
    assert load_settings({}, {"model": "tiny"}).size_for(aspect) == tiny


SETTINGS_PAGE = Path(__file__).parent.parent / "docs" / "settings.md"


def test_every_setting_is_documented_in_the_settings_page():
    documented = set(re.findall(r"STORYBOARD_[A-Z0-9_]+", SETTINGS_PAGE.read_text()))
    missing = [f"STORYBOARD_{f.name.upper()}" for f in setting_fields() if f"STORYBOARD_{f.name.upper()}" not in documented]
    assert not missing


def test_importing_modules_does_nothing(tmp_path):
    import subprocess
    import sys

    code = ("import sys, threading; import app, config, storage, worker, local_image_generator, tiny_models, "
            "redis_protocol, redis_backend, redis_worker, exports_api; "
            "assert threading.active_count() == 1; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'")
    root = Path(__file__).parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(root)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_settings_page_table_is_the_generated_one():
    from config import settings_markdown

    assert settings_markdown() in SETTINGS_PAGE.read_text(), (
        "run `.venv/bin/python config.py` and paste the table into docs/settings.md")


@pytest.mark.parametrize("values,threads", [
    ({"model": "tiny"}, 1),  # tiny ops gain nothing from threads; on a busy CPU they only contend
    ({"model": "sdxl"}, None),  # torch's own choice, one per core
    ({"model": "tiny", "cpu_threads": 3}, 3),
    ({"model": "sdxl", "cpu_threads": 2}, 2),
])
def test_cpu_threads_default_per_model(values, threads):
    assert load_settings({}, values).torch_threads == threads


def test_cpu_threads_rejects_a_negative_count():
    with pytest.raises(SettingsError, match="cpu_threads"):
        load_settings({"STORYBOARD_CPU_THREADS": "-1"})


def test_lightning_and_draft_are_the_distilled_modes_beside_the_four():
    assert list(PRESETS) == ["ultra_fast", "fast", "balanced", "quality", "lightning", "draft"]
    assert [p.name for p in PRESETS.values() if p.distilled] == ["lightning", "draft"]
    assert load_settings({"STORYBOARD_PRESET": "lightning"}).preset == "lightning"
    assert load_settings({"STORYBOARD_PRESET": "draft"}).preset == "draft"


def test_the_lightning_mode_carries_the_distilled_family_it_runs_with():
    assert PRESETS["lightning"].family == "lightning" and PRESETS["fast"].family is None
    preset = load_settings({"STORYBOARD_LIGHTNING_FAMILY": "hyper-sd", "STORYBOARD_LIGHTNING_STEPS": "2"}).preset_for(
        "lightning")
    assert (preset.family, preset.steps, preset.distilled) == ("hyper-sd", 2, True)


def test_a_preset_survives_its_dict_and_a_bad_one_names_the_key():
    preset = load_settings({"STORYBOARD_LIGHTNING_FAMILY": "lcm"}).preset_for("lightning")
    assert SpeedPreset.from_dict(preset.to_dict()) == preset
    for key, value in (("steps", 0), ("guidance_scale", "7"), ("ip_adapter_scale", 1.5), ("family", "turbo"),
                       ("label", ""), ("decoder", "taesd")):
        with pytest.raises(InputError) as caught:
            SpeedPreset.from_dict({**preset.to_dict(), key: value})
        assert caught.value.field == key


@pytest.mark.parametrize("env,repo,weight,steps", [
    ({}, "ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors", 4),
    ({"STORYBOARD_LIGHTNING_STEPS": "8"}, "ByteDance/SDXL-Lightning", "sdxl_lightning_8step_lora.safetensors", 8),
    ({"STORYBOARD_LIGHTNING_FAMILY": "hyper-sd", "STORYBOARD_LIGHTNING_STEPS": "2"}, "ByteDance/Hyper-SD",
     "Hyper-SDXL-2steps-lora.safetensors", 2),
    ({"STORYBOARD_LIGHTNING_FAMILY": "lcm"}, "latent-consistency/lcm-lora-sdxl", "pytorch_lora_weights.safetensors", 4),
    ({"STORYBOARD_LIGHTNING_LORA_REPO": "/models/lightning", "STORYBOARD_LIGHTNING_LORA_WEIGHT": "mine.safetensors"},
     "/models/lightning", "mine.safetensors", 4),
])
def test_the_lora_follows_family_and_steps(env, repo, weight, steps):
    settings = load_settings(env)
    assert (settings.lora_repo, settings.lora_weight, settings.preset_for("lightning").steps) == (repo, weight, steps)


@pytest.mark.parametrize("name,description", [
    ("fast", "12 steps with CFG (24 UNet passes a panel)"),
    ("quality", "20 steps with CFG (40 UNet passes a panel)"),
    ("lightning", "4 steps, no CFG (4 UNet passes a panel)"),
    ("draft", "1 step, no CFG, TAESDXL decode (1 UNet pass a panel)"),
])
def test_presets_describe_their_real_cost(name, description):
    assert load_settings({}).preset_for(name).description == description


@pytest.mark.parametrize("url", ["redis://localhost:6379/0?password=hunter2",
                                 "redis://localhost:6379/0?db=0&Password=hunter2", "redis://localhost/0?username=u"])
def test_a_password_in_the_queue_urls_query_is_refused_without_repeating_it(url):
    with pytest.raises(SettingsError) as refused:
        load_settings({}, {"queue_url": url})
    assert refused.value.setting == "queue_url" and "hunter2" not in str(refused.value)

