"""A job's spec (what travels to a worker) and the facts a drawing reports."""

import copy
import io
import re
import threading

import pytest

from board_params import BoardParams, Character
from config import PRESETS, SpeedPreset
from drawing import CharacterSpec, JobSpec, PanelSpec, draw, spec_for
from errors import InputError
from exporting import read_png_parameters
from helpers import png_bytes

# What a studio set to STORYBOARD_LIGHTNING_FAMILY=hyper-sd, STORYBOARD_LIGHTNING_STEPS=8 draws with
HYPER = SpeedPreset("lightning", "Lightning", 8, 0.0, 0.6, family="hyper-sd")


def spec(reference_png=png_bytes((64, 64)), **changes) -> JobSpec:
    values = dict(job_id=7, board_id="0123456789ab",
                  panels=(PanelSpec(1, 1, "Мара бежит.", "Mara runs", "establishing shot", 5),
                          PanelSpec(2, 2, "She stops.", "She stops.", "wide shot", 6)),
                  board_panels=2, characters=(CharacterSpec("", "red hair", reference_png),), style="ink",
                  negative_prompt="blurry", preset=SpeedPreset("fast", "Fast", 2, 6.5, 0.5),
                  width=48, height=48, seed=5, identity_lock=True, model="tiny")
    values.update(changes)
    return JobSpec(**values)


def cast_spec(**changes) -> JobSpec:
    """Two named characters, Ilya with a reference, Mara without (her portrait is drawn)."""
    values = dict(characters=(CharacterSpec("Mara", "young woman, red hair, green jacket"),
                              CharacterSpec("Ilya", "old man, grey beard, navy coat", png_bytes((64, 64), "blue"))),
                  panels=(PanelSpec(1, 1, "Mara and Ilya argue.", "Mara and Ilya argue.", "two-shot", 5, (1, 2)),
                          PanelSpec(2, 2, "Ilya leaves.", "Ilya leaves.", "wide shot", 6, (2,)),
                          PanelSpec(3, 3, "The empty pier.", "The empty pier.", "wide shot", 7, ())),
                  board_panels=3)
    values.update(changes)
    return spec(**values)


def refine_spec(strength=0.5, **changes) -> JobSpec:
    """A refine of both panels of spec(), each from its take 3 (a flat picture)."""
    sources = (png_bytes((48, 48), "green"), png_bytes((48, 48), "blue"))
    panels = tuple(PanelSpec(p.frame_id, p.position, p.caption, p.scene, p.shot, p.seed, p.cast, 3, png)
                   for p, png in zip(spec().panels, sources))
    return spec(panels=panels, strength=strength, preset=SpeedPreset("quality", "Quality", 4, 7.5, 0.8), **changes)


def test_a_spec_survives_json_unchanged():
    assert JobSpec.from_json(spec().to_json()) == spec()
    assert JobSpec.from_json(cast_spec().to_json()) == cast_spec()
    assert cast_spec().to_json()["characters"][1]["reference_png"]  # the faces travel: workers are stateless
    refine = JobSpec.from_json(refine_spec().to_json())
    assert refine == refine_spec() and refine.panels[1].source_png == png_bytes((48, 48), "blue")  # so do the takes


@pytest.mark.parametrize("changes", [{"strength": None}, {"strength": 0}, {"strength": 2}, {"strength": "0.5"}])
def test_a_refine_payload_without_its_strength_or_pictures_is_refused(changes):
    data = {**refine_spec().to_json(), **changes}
    with pytest.raises(InputError) as caught:
        JobSpec.from_json(data)
    assert caught.value.field == "strength"


def test_a_refine_draws_each_panel_from_its_take_and_says_so(tiny_generator):
    sink = Recorder()
    draw(tiny_generator, refine_spec(), sink)
    saved = [fact[1] for fact in sink.facts if fact[0] == "panel_saved"]
    assert [(panel.parent, panel.mode) for panel in saved] == [(3, "quality"), (3, "quality")]
    assert saved[0].ran["strength"] == 0.5 and saved[0].ran["denoising_steps"] == 2


@pytest.mark.parametrize("path,value,field", [
    (("version",), 99, "version"),
    (("preset", "steps"), 0, "preset.steps"),
    (("preset", "guidance_scale"), "12", "preset.guidance_scale"),
    (("preset", "family"), "turbo", "preset.family"),
    (("preset",), "fast", "preset"),
    (("identity_lock",), "yes", "identity_lock"),
    (("width",), 50, "width"),
    (("panels",), [], "panels"),
    (("panels", 0, "shot"), "drone shot", "panels[0].shot"),
    (("panels", 1, "seed"), -1, "panels[1].seed"),
    (("characters", 0, "reference_png"), "not base64!", "characters[0].reference_png"),
    (("characters", 0, "reference_png"), "aGVsbG8=", "characters[0].reference_png"),  # base64, not a PNG
    (("characters", 0, "traits"), "", "characters[0].traits"),
    (("characters",), [], "characters"),
    (("characters",), [{"name": f"C{i}", "traits": "x"} for i in range(5)], "characters"),
    (("panels", 0, "cast"), [2], "panels[0].cast"),
    (("panels", 0, "cast"), [1, 1], "panels[0].cast"),
    (("panels", 0, "cast"), None, "panels[0].cast"),
])
def test_a_bad_payload_is_refused_naming_the_field(path, value, field):
    data = copy.deepcopy(spec().to_json())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InputError, match=f"^{re.escape(field)}:") as caught:
        JobSpec.from_json(data)
    assert caught.value.field == field


def test_the_spec_carries_the_boards_preset_whole_not_rebuilt_by_its_name():
    params = BoardParams(characters=(Character("", "red hair"),), style="ink", preset=HYPER, aspect="1:1", width=64,
                         height=64, seed=5, identity_lock=False, negative_prompt="", model="tiny")
    board = {"id": "0123456789ab", "params": params,
             "frames": [{"id": 1, "caption": "Rain.", "scene": None, "shot": "wide shot", "seed": 5, "cast": ("",),
                         "status": "queued"}]}
    job_spec = spec_for({"id": 3, "kind": "board", "frame_id": None}, board, {})
    assert job_spec.preset == HYPER != PRESETS["lightning"]
    assert JobSpec.from_json(job_spec.to_json()).preset == HYPER
    refine = spec_for({"id": 4, "kind": "refine", "frame_id": None, "preset": "balanced", "strength": 0.4}, board,
                      {}, {1: (2, b"\x89PNG take")})
    assert (refine.preset, refine.strength) == (PRESETS["balanced"], 0.4)
    assert [(p.frame_id, p.source_take, p.source_png) for p in refine.panels] == [(1, 2, b"\x89PNG take")]


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
    assert [fact[:2] for fact in sink.facts if fact[0] == "reference"] == [("reference", 1)]


def test_a_cast_draws_each_panel_with_its_characters(tiny_generator):
    sink = Recorder()
    draw(tiny_generator, cast_spec(), sink)
    prompts = sink.facts[0][1]
    assert prompts[1].prompt.startswith("left: young woman, red hair, green jacket; right: old man, grey beard")
    assert prompts[2].prompt.startswith("old man, grey beard, navy coat, Ilya leaves")
    assert prompts[3].prompt.startswith("The empty pier")
    # Only Mara has no reference: her portrait is drawn, reported as character 1's, and labelled with her name.
    assert [fact[1] for fact in sink.facts if fact[0] == "reference"] == [1]
    labels = {fact[1]["label"] for fact in sink.facts if fact[0] == "progress"}
    assert "Character reference: Mara" in labels and "Panel 3 of 3" in labels
    saved = [fact[1] for fact in sink.facts if fact[0] == "panel_saved"]
    assert [panel.frame_id for panel in saved] == [1, 2, 3]


def test_a_portrait_is_drawn_only_for_characters_this_job_shows(tiny_generator):
    sink = Recorder()
    only_ilya = cast_spec(panels=(PanelSpec(2, 2, "Ilya leaves.", "Ilya leaves.", "wide shot", 6, (2,)),))
    draw(tiny_generator, only_ilya, sink)
    assert "reference" not in [fact[0] for fact in sink.facts]


def test_trait_cuts_are_reported_by_name(tiny_generator):
    long = ", ".join(["tall young woman with a round freckled face"] * 4)
    sink = Recorder()
    draw(tiny_generator, cast_spec(characters=(CharacterSpec("Mara", long + ", red coat"),
                                               CharacterSpec("Ilya", long + ", blue coat")),
                                   panels=cast_spec().panels[:1]), sink)
    cut = sink.facts[0][1][1].traits_dropped
    assert set(cut) == {"Mara", "Ilya"} and all(words.endswith("coat") for words in cut.values())


def test_scores_are_reported_per_character_by_name(tiny_generator):
    def judge(references, image):
        return {"status": "match", "distance": 0.2, "characters": [
            {"status": "match", "distance": 0.2, "face": i} for i in range(len(references))]}

    sink = Recorder()
    draw(tiny_generator, cast_spec(), sink, judge=judge)
    saved = {fact[1].frame_id: fact[1] for fact in sink.facts if fact[0] == "panel_saved"}
    assert [c["name"] for c in saved[1].identity["characters"]] == ["Mara", "Ilya"]
    assert [c["name"] for c in saved[2].identity["characters"]] == ["Ilya"] and saved[3].identity is None


def test_the_prompt_describes_the_scene_and_the_png_keeps_the_caption(tiny_generator):
    from exporting import read_png_parameters

    sink = Recorder()
    draw(tiny_generator, spec(identity_lock=False, reference_png=None), sink)
    prompts = sink.facts[0][1]
    assert "Mara runs" in prompts[1].prompt and "Мара" not in prompts[1].prompt
    saved = next(fact[1] for fact in sink.facts if fact[0] == "panel_saved")
    assert read_png_parameters(saved.png)["caption"] == "Мара бежит."
    assert read_png_parameters(saved.png)["cast"] == [""]


def saved_parameters(sink) -> dict:
    """Each saved panel's PNG: (its storyboard JSON, its A1111 parameters text), by frame id."""
    from PIL import Image

    from exporting import read_png_parameters

    saved = [fact[1] for fact in sink.facts if fact[0] == "panel_saved"]
    return {panel.frame_id: (read_png_parameters(panel.png), Image.open(io.BytesIO(panel.png)).text["parameters"])
            for panel in saved}


def test_a_cast_panel_png_states_the_clamped_scale_that_ran(tiny_generator):
    sink = Recorder()
    draw(tiny_generator, cast_spec(preset=SpeedPreset("quality", "Quality", 2, 7.5, 0.8)), sink)
    meta = saved_parameters(sink)
    # Two characters run at most at 0.7 (CAST_IP_ADAPTER_SCALE): that is what panel 1's PNG says.
    assert meta[1][0]["ip_adapter_scale"] == 0.7 and "IP-Adapter scale: 0.7" in meta[1][1]
    assert meta[2][0]["ip_adapter_scale"] == 0.8  # one character: the preset's scale
    assert meta[3][0]["ip_adapter_scale"] is None and "IP-Adapter" not in meta[3][1]  # no one to hold
    assert meta[1][0]["steps"] == 2 and meta[1][0]["guidance_scale"] == 7.5
    assert meta[1][0]["sampler"] == "Euler" and meta[1][0]["lora"] is None


def test_a_saved_panel_says_what_made_it_for_its_take(tiny_generator):
    sink = Recorder()
    draw(tiny_generator, cast_spec(preset=SpeedPreset("quality", "Quality", 2, 7.5, 0.8)), sink)
    saved = next(fact[1] for fact in sink.facts if fact[0] == "panel_saved")
    assert (saved.mode, saved.parent) == ("quality", None)
    assert saved.ran == {key: value for key, value in read_png_parameters(saved.png).items() if key in saved.ran}
    assert saved.ran["steps"] == 2 and saved.ran["sampler"] == "Euler"


def test_a_hyper_sd_panel_png_states_ddim(tiny_settings_factory):
    from local_image_generator import StoryboardGenerator

    generator = StoryboardGenerator.load(tiny_settings_factory(lightning_family="hyper-sd", lightning_steps=2))
    sink = Recorder()
    draw(generator, spec(preset=SpeedPreset("lightning", "Lightning", 2, 0.0, 0.6, family="hyper-sd")), sink)
    json_meta, parameters = saved_parameters(sink)[1]
    assert "Sampler: DDIM" in parameters and "Distilled LoRA: hyper-sd" in parameters
    assert (json_meta["scheduler"], json_meta["lora"], json_meta["steps"]) == ("DDIMScheduler", "hyper-sd", 2)


class BlockingSink(Recorder):
    """Panel 1's save waits until panel 2 has started: only a drawing that does not wait
    for its saves gets past it."""

    def __init__(self):
        super().__init__()
        self.second_started = threading.Event()
        self.overlapped = None

    def panel_started(self, frame_id):
        self.facts.append(("panel_started", frame_id))
        if frame_id == 2:
            self.second_started.set()

    def panel_saved(self, panel):
        if panel.frame_id == 1:
            self.overlapped = self.second_started.wait(30)
        self.facts.append(("panel_saved", panel))


def test_a_panel_is_saved_while_the_next_one_draws():
    from fakes import FakeGenerator

    sink = BlockingSink()
    draw(FakeGenerator(), spec(), sink)
    assert sink.overlapped is True
    assert [fact[1].frame_id for fact in sink.facts if fact[0] == "panel_saved"] == [1, 2]  # in order


def test_a_failed_save_ends_the_drawing_and_earlier_saves_stay():
    from fakes import FakeGenerator

    class FullDisk(Recorder):
        def panel_saved(self, panel):
            if panel.frame_id == 2:
                raise OSError(28, "No space left on device")
            self.facts.append(("panel_saved", panel))

    sink = FullDisk()
    with pytest.raises(OSError):
        draw(FakeGenerator(), spec(), sink)
    assert [fact[1].frame_id for fact in sink.facts if fact[0] == "panel_saved"] == [1]
