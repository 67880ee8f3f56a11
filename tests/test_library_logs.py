"""The library messages the studio silences at their source, and only those.

diffusers' and transformers' loggers do not propagate to the root logger, so each test lets
them propagate for its duration and reads what reaches caplog.
"""

import logging

import pytest

from local_image_generator import PanelJob, StoryboardRequest, quiet_library_logs


@pytest.fixture
def library_logs(caplog, monkeypatch):
    for library in ("diffusers", "transformers"):
        monkeypatch.setattr(logging.getLogger(library), "propagate", True)
    caplog.set_level("INFO")
    quiet_library_logs()
    return caplog


def messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_counting_a_long_prompt_does_not_warn_about_indexing_errors(tmp_path, library_logs):
    # The studio counts a prompt's tokens uncut to cut it itself (prompt_enhancer's budget);
    # the tokenizer's warning about running such a sequence through the model is not for it.
    from transformers import CLIPTokenizer

    import tiny_models

    tiny_models.write_clip_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer("a lighthouse at dusk, " * 40, truncation=False).input_ids) > 77
    assert not messages(library_logs, "Token indices sequence length is longer")


@pytest.mark.parametrize("source, message", [
    ("transformers.tokenization_utils_base", "a warning worth reading"),
    ("diffusers.loaders.lora_base", "No LoRA keys associated to UNet2DConditionModel found"),
])
def test_other_messages_of_those_loggers_still_show(library_logs, source, message):
    logging.getLogger(source).warning(message)
    assert messages(library_logs, message)


def test_the_first_lightning_board_does_not_warn_about_text_encoder_lora_keys(tiny_settings_factory, library_logs):
    # The distilled LoRAs carry UNet keys only: the text encoders are meant to get none.
    from local_image_generator import StoryboardGenerator

    generator = StoryboardGenerator.load(tiny_settings_factory())
    preset = generator.settings.preset_for("lightning")
    job = PanelJob(1, "a girl with red hair", "blurry", 1, "scene")
    generator.generate(StoryboardRequest((job,), 48, 48, preset, identity_lock=False))
    assert not messages(library_logs, "No LoRA keys associated to CLIPTextModel")
