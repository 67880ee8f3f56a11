"""A board's parameters as one typed value (stored as versioned JSON), its cast, and the seed rules."""

import pytest

from board_params import (MAX_SEED, SEED_LIMIT, BoardParams, CastError, Character, check_cast, panel_cast,
                          panel_seed, portrait_seed, random_seed, retry_seed)
from config import MAX_FRAMES

CAST = (Character("Mara", "red hair"), Character("Ilya", "grey beard"))


def params(**changes) -> BoardParams:
    values = dict(characters=CAST, style="ink", preset="fast", steps=12, guidance_scale=6.5, ip_adapter_scale=0.5,
                  aspect="16:9", width=80, height=48, seed=7, identity_lock=True, negative_prompt="blurry",
                  model="tiny", notices=("not in English",))
    values.update(changes)
    return BoardParams(**values)


def test_params_survive_their_json_unchanged():
    assert BoardParams.from_json(params().to_json()) == params()
    assert params().to_json()["schema"] == 2


def test_params_of_another_schema_are_refused():
    with pytest.raises(ValueError, match="schema"):
        BoardParams.from_json({**params().to_json(), "schema": 3})


def test_a_board_from_before_the_cast_reads_as_one_unnamed_character():
    old = {"preset": "fast", "steps": 12, "guidance_scale": 6.5, "ip_adapter_scale": 0.5, "aspect": "16:9",
           "width": 80, "height": 48, "seed": 7, "identity_lock": True, "negative_prompt": "blurry",
           "model": "tiny", "notices": []}
    read = BoardParams.from_legacy(old, "red hair", "ink")
    assert read.characters == (Character("", "red hair"),) and read.style == "ink" and read.seed == 7


def test_settings_are_how_it_is_drawn_without_cast_or_notices():
    assert set(params().settings_json()) == {"preset", "steps", "guidance_scale", "ip_adapter_scale", "aspect",
                                             "width", "height", "seed", "identity_lock", "negative_prompt", "model"}


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
    with pytest.raises(CastError) as caught:
        check_cast(cast)
    assert caught.value.field == field


def test_one_unnamed_character_is_a_cast():
    check_cast((Character("", "red hair"),))


def test_a_panels_cast_is_spelt_as_the_cast_and_in_its_order():
    assert panel_cast(["ilya", " MARA "], CAST, "cast") == ("Mara", "Ilya")
    assert panel_cast([], CAST, "cast") == ()
    assert panel_cast([""], (Character("", "red hair"),), "cast") == ("",)


@pytest.mark.parametrize("value,words", [("Mara", "list"), (["Bob"], "not in the cast"), (["Mara", "mara"], "twice"),
                                         ([1], "list")])
def test_a_bad_panel_cast_is_refused(value, words):
    with pytest.raises(CastError, match=words) as caught:
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
