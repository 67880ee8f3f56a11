"""A board's parameters as one typed value (stored as versioned JSON), its cast, and the seed rules."""

import pytest

from board_params import (MAX_CHARACTERS, MAX_SEED, SEED_LIMIT, BoardParams, Character, check_cast, panel_cast,
                          panel_seed, portrait_seed, random_seed, read_cast, retry_seed)
from config import MAX_FRAMES, PRESETS, SpeedPreset
from errors import InputError

CAST = (Character("Mara", "red hair"), Character("Ilya", "grey beard"))
# Not any of PRESETS: what a studio set otherwise drew with (STORYBOARD_LIGHTNING_STEPS, _FAMILY)
HYPER = SpeedPreset("lightning", "Lightning", 8, 0.0, 0.6, family="hyper-sd")
# What the versions before the preset travelled whole stored for a FAST board
SCHEMA_2 = {"schema": 2, "characters": [{"name": "Mara", "traits": "red hair"}, {"name": "Ilya", "traits": "grey beard"}],
            "style": "ink", "preset": "fast", "steps": 12, "guidance_scale": 6.5, "ip_adapter_scale": 0.5,
            "aspect": "16:9", "width": 80, "height": 48, "seed": 7, "identity_lock": True,
            "negative_prompt": "blurry", "model": "tiny", "notices": ["not in English"]}


def params(**changes) -> BoardParams:
    values = dict(characters=CAST, style="ink", preset=PRESETS["fast"],
                  aspect="16:9", width=80, height=48, seed=7, identity_lock=True, negative_prompt="blurry",
                  model="tiny", notices=("not in English",))
    values.update(changes)
    return BoardParams(**values)


def test_params_survive_their_json_unchanged():
    assert BoardParams.from_json(params().to_json()) == params()
    assert params().to_json()["schema"] == 3


def test_the_preset_is_stored_whole_and_read_back_as_stored_not_by_its_name():
    stored = params(preset=HYPER).to_json()
    assert stored["preset"] == {"name": "lightning", "label": "Lightning", "steps": 8, "guidance_scale": 0.0,
                                "ip_adapter_scale": 0.6, "family": "hyper-sd", "decoder": "vae"}
    assert BoardParams.from_json(stored).preset == HYPER != PRESETS["lightning"]


def test_params_of_another_schema_are_refused():
    with pytest.raises(ValueError, match="schema"):
        BoardParams.from_json({**params().to_json(), "schema": 4})


def test_a_board_of_schema_2_reads_back_with_its_stored_steps_and_scales():
    assert BoardParams.from_json(SCHEMA_2) == params()
    quality = BoardParams.from_json({**SCHEMA_2, "preset": "quality", "steps": 25, "ip_adapter_scale": 0.7}).preset
    assert quality == SpeedPreset("quality", "Quality", 25, 6.5, 0.7)  # as stored, the label as named
    lightning = BoardParams.from_json({**SCHEMA_2, "preset": "lightning", "steps": 4, "guidance_scale": 0.0}).preset
    assert lightning.distilled and lightning.family == "lightning"


def test_settings_are_how_it_is_drawn_without_cast_or_notices():
    assert set(params().settings_json()) == {"preset", "steps", "guidance_scale", "ip_adapter_scale", "aspect",
                                             "width", "height", "seed", "identity_lock", "consistent_look",
                                             "negative_prompt", "model"}


@pytest.mark.parametrize("cast,field", [
    ((), "characters"),
    (tuple(Character(f"C{i}", "x") for i in range(5)), "characters"),
    ((Character("Mara", "x"), Character("", "y")), "characters[1].name"),
    ((Character("Mara", "x"), Character("MARA", "y")), "characters[1].name"),
    ((Character("Mara", "x"), Character("Ilya", " ")), "characters[1].traits"),
    ((Character("!!", "x"),), "characters[0].name"),
    ((Character("M" * 61, "x"),), "characters[0].name"),
])
def test_a_bad_cast_is_refused_naming_the_field(cast, field):
    with pytest.raises(InputError) as caught:
        check_cast(cast)
    assert caught.value.field == field


def test_one_unnamed_character_is_a_cast():
    check_cast((Character("", "red hair"),))


def test_a_cast_is_read_from_json_as_one_text_a_character():
    assert read_cast([{"name": "  Mara \n Lee ", "traits": " red hair "}]) == (Character("Mara Lee", "red hair"),)
    assert read_cast([{"traits": "red hair"}]) == (Character("", "red hair"),)


@pytest.mark.parametrize("raw,field", [
    ("Mara", "characters"),
    ([], "characters"),
    ([{"name": f"C{i}", "traits": "x"} for i in range(MAX_CHARACTERS + 1)], "characters"),
    ([{"name": "Mara", "traits": "x"}, "Ilya"], "characters[1]"),
    ([{"name": 5, "traits": "x"}], "characters[0].name"),
    ([{"name": "Mara", "traits": "x"}, {"name": "mara", "traits": "y"}], "characters[1].name"),
    ([{"name": "Mara"}], "characters[0].traits"),
])
def test_a_bad_cast_in_a_request_is_refused_naming_the_field(raw, field):
    with pytest.raises(InputError) as caught:
        read_cast(raw)
    assert caught.value.field == field


def test_a_panels_cast_is_spelt_as_the_cast_and_in_its_order():
    assert panel_cast(["ilya", " MARA "], CAST, "cast") == ("Mara", "Ilya")
    assert panel_cast([], CAST, "cast") == ()
    assert panel_cast([""], (Character("", "red hair"),), "cast") == ("",)


@pytest.mark.parametrize("value,words", [("Mara", "list"), (["Bob"], "not in the cast"), (["Mara", "mara"], "twice"),
                                         ([1], "list")])
def test_a_bad_panel_cast_is_refused(value, words):
    with pytest.raises(InputError, match=words) as caught:
        panel_cast(value, CAST, "frames[0].cast")
    assert caught.value.field == "frames[0].cast"


def test_every_seed_derived_from_the_largest_board_seed_stays_in_31_bits():
    highest = retry_seed(panel_seed(MAX_SEED, MAX_FRAMES), 10)
    assert highest <= SEED_LIMIT and portrait_seed(MAX_SEED, 4) <= SEED_LIMIT
    assert all(0 <= random_seed() <= MAX_SEED for _ in range(100))


def test_the_seed_rules():
    assert [panel_seed(40, n) for n in (1, 2, 3)] == [40, 41, 42]
    assert retry_seed(100, 2) == 100 + 2 * MAX_FRAMES  # never another panel's seed
    assert [portrait_seed(40, k) for k in (1, 2)] == [40, 41]  # character 1's is the board seed, as before
