"""A job's spec (what travels to a worker) and the facts a drawing reports."""

import copy
import re

import pytest

from drawing import JobSpec, PanelSpec, SpecError, draw
from helpers import png_bytes


def spec(**changes) -> JobSpec:
    values = dict(job_id=7, board_id="0123456789ab",
                  panels=(PanelSpec(1, 1, "Мара бежит.", "Mara runs", "establishing shot", 5),
                          PanelSpec(2, 2, "She stops.", "She stops.", "wide shot", 6)),
                  board_panels=2, character="red hair", style="ink", negative_prompt="blurry", preset="fast",
                  steps=2, guidance_scale=6.5, ip_adapter_scale=0.5, width=48, height=48, seed=5,
                  identity_lock=True, model="tiny", reference_png=png_bytes((64, 64)))
    values.update(changes)
    return JobSpec(**values)


def test_a_spec_survives_json_unchanged():
    assert JobSpec.from_json(spec().to_json()) == spec()


@pytest.mark.parametrize("path,value,field", [
    (("version",), 99, "version"),
    (("steps",), 0, "steps"),
    (("steps",), "12", "steps"),
    (("identity_lock",), "yes", "identity_lock"),
    (("width",), 50, "width"),
    (("panels",), [], "panels"),
    (("panels", 0, "shot"), "drone shot", "panels[0].shot"),
    (("panels", 1, "seed"), -1, "panels[1].seed"),
    (("reference_png",), "not base64!", "reference_png"),
    (("reference_png",), "aGVsbG8=", "reference_png"),  # base64, but not a PNG
    (("character",), "", "character"),
])
def test_a_bad_payload_is_refused_naming_the_field(path, value, field):
    data = copy.deepcopy(spec().to_json())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError, match=f"^{re.escape(field)}:"):
        JobSpec.from_json(data)


class Recorder:
    def __init__(self):
        self.facts = []

    def __getattr__(self, name):
        return lambda *args: self.facts.append((name, *args))


def test_drawing_reports_facts_in_order_and_skips_delivered_panels(tiny_generator):
    sink = Recorder()
    draw(tiny_generator, spec(), sink, skip=frozenset({1}))
    kinds = [fact[0] for fact in sink.facts]
    assert kinds[0] == "prompts" and set(sink.facts[0][1]) == {2}
    saved = [fact[1] for fact in sink.facts if fact[0] == "panel_saved"]
    assert [panel.frame_id for panel in saved] == [2] and saved[0].png.startswith(b"\x89PNG")
    assert "panel_started" in kinds and "progress" in kinds and "reference" not in kinds  # uploaded reference


def test_without_a_reference_the_portrait_is_reported(tiny_generator):
    sink = Recorder()
    draw(tiny_generator, spec(reference_png=None), sink)
    assert [fact[0] for fact in sink.facts].count("reference") == 1


def test_the_prompt_describes_the_scene_and_the_png_keeps_the_caption(tiny_generator):
    from exporting import read_png_parameters

    sink = Recorder()
    draw(tiny_generator, spec(identity_lock=False, reference_png=None), sink)
    prompts = sink.facts[0][1]
    assert "Mara runs" in prompts[1].prompt and "Мара" not in prompts[1].prompt
    saved = next(fact[1] for fact in sink.facts if fact[0] == "panel_saved")
    assert read_png_parameters(saved.png)["caption"] == "Мара бежит."
