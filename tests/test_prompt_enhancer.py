"""Story splitting, shot types and the 77-token prompt budget (real CLIP BPE tokenizer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tiny_models
from config import CHARACTER_TRAITS, NEGATIVE_PROMPT, STYLE
from prompt_enhancer import (
    SHOT_TYPES,
    PanelPlan,
    build_prompt,
    plan_story,
    portrait_prompt,
    shot_for,
    split_sentences,
    split_story,
)
from errors import InputError

ROOT = Path(__file__).resolve().parent.parent

SIX_SENTENCES = (
    "Mara wakes before dawn. She packs her grandfather's map. The bus leaves without her! "
    "She runs after it through the rain. A stranger on a bicycle offers her a ride. "
    "They reach the harbour as the ferry sounds its horn."
)
RU_LINES = "Мара просыпается до рассвета.\nОна берёт карту деда.\nАвтобус уезжает без неё!"
RU_PARAGRAPH = "Мара просыпается до рассвета. Она берёт карту деда. Автобус уезжает без неё! Она бежит под дождём."
LONG_SCENE = (
    "She sprints through the rain-soaked night market, dodging fruit carts and swinging paper "
    "lanterns, while a crowd of masked dancers parts before her and thunder rolls over the "
    "harbour as every bell in the old town begins to ring"
)
LONGER_SCENE = LONG_SCENE + (
    ", and far out at sea the ferry answers with its horn while gulls wheel above the rocking fishing boats, "
    "and lightning splits the sky above the lighthouse as the whole crowd turns to watch")
LONG_RU_SCENE = (
    "Она бежит через ночной рынок под проливным дождём, уворачиваясь от тележек с фруктами "
    "и бумажных фонарей, а толпа танцоров в масках расступается перед ней"
)


@pytest.fixture(scope="module")
def count_tokens(tmp_path_factory):
    from transformers import CLIPTokenizer

    folder = tmp_path_factory.mktemp("tok")
    tiny_models.write_clip_tokenizer(folder)
    tok = CLIPTokenizer.from_pretrained(folder)
    return lambda text: len(tok(text).input_ids)


def prompt_for(caption: str, count_tokens, character: str = CHARACTER_TRAITS):
    return build_prompt(PanelPlan(caption, caption, "medium shot"), character, STYLE, NEGATIVE_PROMPT, count_tokens)


# --- Lines -------------------------------------------------------------------------------


def test_lines_give_one_panel_per_line_with_captions_unchanged():
    story = "She opens the old door.\nThe room is full of clocks, all stopped.\nOne starts ticking."
    assert [p.caption for p in split_story(story)] == story.splitlines()


def test_blank_lines_are_ignored():
    assert len(split_story("First panel.\n\n   \nSecond panel.\n")) == 2


def test_list_markers_are_stripped_from_lines():
    story = "1. Door opens.\n2) Clocks stop.\n- Wind blows.\nPanel 4: She smiles."
    assert [p.caption for p in split_story(story)] == ["Door opens.", "Clocks stop.", "Wind blows.", "She smiles."]


def test_lines_win_over_frames():
    assert len(split_story("One.\nTwo.\nThree.", frames=6)) == 3


def test_more_lines_than_max_frames_is_a_story_error():
    with pytest.raises(InputError) as err:
        split_story("\n".join(f"Panel text {i}" for i in range(9)))
    assert err.value.field == "story" and "9 lines" in str(err.value)


def test_the_splitters_scene_is_the_caption_and_its_cast_who_the_words_name():
    plan = plan_story("Mara wakes.\nIlya calls her.\nRain.", names=("Mara", "Ilya"))
    assert [(p.caption, p.scene) for p in plan.panels][0] == ("Mara wakes.", "Mara wakes.")
    assert [p.cast for p in plan.panels] == [("Mara",), ("Ilya",), ("Mara",)]  # no one named: the lead
    assert plan.source == "built-in" and plan_story("Rain.\nSun.").panels[0].cast == ()


# --- Paragraphs --------------------------------------------------------------------------


def test_paragraph_gives_exactly_the_requested_number_of_beats():
    assert len(split_story(SIX_SENTENCES, frames=4)) == 4


def test_paragraph_beats_cover_all_sentences_in_order():
    assert " ".join(p.caption for p in split_story(SIX_SENTENCES, frames=4)) == SIX_SENTENCES


def test_six_sentences_in_three_panels_have_two_sentences_each():
    assert [len(split_sentences(p.caption)) for p in split_story(SIX_SENTENCES, frames=3)] == [2, 2, 2]


def test_paragraph_defaults_to_six_panels():
    assert len(split_story(SIX_SENTENCES)) == 6


PREMISE = ("A young cartographer follows her grandfather's map into the mountains, loses the trail in a storm, "
           "and finds a hidden valley.")


PLACEHOLDER = (ROOT / "templates" / "index.html").read_text().split("a short premise plus a panel count:&#10;")[1] \
    .split('"')[0]
PREMISES = [PREMISE, PLACEHOLDER, "A girl finds a dragon egg in the forest.",
            "Mara returns to her village, where she discovers her grandfather's secret workshop.",
            "Tom and Ada climb the lighthouse stairs at night."]


@pytest.mark.parametrize("premise", PREMISES)
@pytest.mark.parametrize("frames", range(1, 9))
def test_a_premise_gives_the_count_asked_for_each_panel_its_own_sentence(premise, frames):
    panels = plan_story(premise, frames=frames).panels
    captions = [p.caption for p in panels]
    assert len(panels) == frames and len({" ".join(c.lower().split()) for c in captions}) == frames
    assert all(c[0].isupper() and c.endswith(".") and c.split()[0].lower() not in ("where", "and", "then")
               for c in captions)  # sentences, not clauses cut at commas
    assert all(a.shot != b.shot for a, b in zip(panels, panels[1:])) and all(p.shot in SHOT_TYPES for p in panels)


def test_the_pages_placeholder_premise_gives_its_panel_count():
    assert PLACEHOLDER.startswith("A young cartographer") and len(plan_story(PLACEHOLDER, frames=6).panels) == 6


def test_a_beat_sheet_is_built_from_the_premises_own_words_and_says_so():
    plan = plan_story("A girl finds a dragon egg in the forest.", frames=6)
    assert [p.caption for p in plan.panels] == [
        "The forest, quiet, before anything happens.", "The girl sets out, the forest ahead.",
        "A girl finds a dragon egg in the forest.", "The girl stops, taking in what has happened.",
        "The girl acts on it, and nothing is as it was.", "At last the girl looks back at the forest, changed."]
    assert len(plan.notices) == 1 and "beat sheet" in plan.notices[0] and "1 sentence" in plan.notices[0]


def test_fewer_beats_than_panels_in_another_language_is_said_not_padded():
    plan = plan_story("Девочка находит яйцо дракона в лесу.", frames=6)
    assert [p.caption for p in plan.panels] == ["Девочка находит яйцо дракона в лесу."]
    assert any("1 distinct beat" in n and "not 6" in n for n in plan.notices)


def test_a_story_with_enough_beats_has_no_notice():
    assert plan_story(SIX_SENTENCES).notices == ()


def test_lines_that_override_the_panel_count_are_explained():
    assert any("3 lines" in n for n in plan_story("One.\nTwo.\nThree.", frames=6).notices)


def test_a_russian_story_is_told_about_english_encoders():
    notices = plan_story(RU_PARAGRAPH, frames=4).notices
    assert len(notices) == 1 and "not in English" in notices[0] and "77 tokens" in notices[0]


def test_an_english_story_with_a_few_foreign_names_gets_no_language_notice():
    assert plan_story("Zoë meets François at the café. They share a crêpe.", frames=2).notices == ()


def test_the_default_character_leaves_room_for_a_scene(tiny_generator):
    longest_shot = max(SHOT_TYPES, key=len)
    used = tiny_generator.count_tokens(", ".join((CHARACTER_TRAITS, longest_shot, STYLE)))
    assert 77 - used >= 30, used


def test_a_premises_clauses_become_sentences_of_their_own():
    captions = [p.caption for p in split_story(PREMISES[3], frames=6)]
    assert captions[1:3] == ["Mara returns to her village.", "She discovers her grandfather's secret workshop."]
    captions = [p.caption for p in split_story(PREMISE, frames=6)]
    assert "The young cartographer loses the trail in a storm." in captions


def test_a_long_sentence_in_another_language_is_split_at_clause_boundaries():
    story = "Она открывает дверь, врывается ветер, и гаснут все свечи."
    assert [p.caption for p in split_story(story, frames=3)] == [
        "Она открывает дверь,", "врывается ветер,", "и гаснут все свечи."]


def test_abbreviations_and_initials_do_not_end_sentences():
    assert split_sentences("Dr. J. R. Watson waits, e.g. by the door. Then he leaves.") == [
        "Dr. J. R. Watson waits, e.g. by the door.", "Then he leaves."]


def test_sentence_ends_include_exclamation_question_and_ellipsis():
    assert len(split_sentences("Stop! Who is there? Nobody… Silence.")) == 4


def test_speech_attribution_does_not_end_a_sentence():
    assert split_sentences('"Who is there?" she asked. Nobody answered.') == [
        '"Who is there?" she asked.', "Nobody answered."]


def test_inline_numbering_is_kept_off_paragraph_captions():
    assert [p.caption for p in split_story("1. She walks. 2. She runs.", frames=2)] == ["She walks.", "She runs."]


# --- Cyrillic ----------------------------------------------------------------------------


def test_cyrillic_lines_keep_captions_unchanged():
    assert [p.caption for p in split_story(RU_LINES)] == RU_LINES.splitlines()


def test_cyrillic_paragraph_is_split_into_sentences():
    assert [p.caption for p in split_story(RU_PARAGRAPH, frames=4)] == [
        "Мара просыпается до рассвета.", "Она берёт карту деда.",
        "Автобус уезжает без неё!", "Она бежит под дождём.",
    ]


def test_cyrillic_abbreviation_does_not_end_a_sentence():
    assert split_sentences("А. С. Пушкин пишет, т.е. думает. Потом спит.") == [
        "А. С. Пушкин пишет, т.е. думает.", "Потом спит."]


def test_russian_dialogue_attribution_stays_with_its_line():
    assert split_sentences("— Стой! — крикнула Мара. Она бежит.") == ["— Стой! — крикнула Мара.", "Она бежит."]


def test_russian_dialogue_dash_is_not_stripped_as_a_list_marker():
    assert split_story("— Стой!\n— Нет.")[0].caption == "— Стой!"


# --- Errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("story", ["", "   \n\t \n"])
def test_empty_story_is_a_story_error(story):
    with pytest.raises(InputError) as err:
        split_story(story)
    assert err.value.field == "story"


@pytest.mark.parametrize("frames", [0, 9, -1, True, "many"])
def test_frames_outside_range_is_a_frames_error(frames):
    with pytest.raises(InputError) as err:
        split_story(SIX_SENTENCES, frames=frames)
    assert err.value.field == "frames"


def test_frames_are_checked_even_when_lines_win():
    with pytest.raises(InputError) as err:
        split_story("One.\nTwo.", frames=9)
    assert err.value.field == "frames"


# --- Shots -------------------------------------------------------------------------------


def test_first_panel_is_an_establishing_shot():
    assert all(shot_for(1, total) == "establishing shot" for total in range(1, 9))


@pytest.mark.parametrize("total", range(2, 9))
def test_neighbouring_panels_never_share_a_shot(total):
    shots = [shot_for(i, total) for i in range(1, total + 1)]
    assert all(a != b for a, b in zip(shots, shots[1:]))


@pytest.mark.parametrize("total", range(2, 9))
def test_last_panel_is_a_wide_or_medium_shot(total):
    assert shot_for(total, total) in ("wide shot", "medium shot")


@pytest.mark.parametrize("total", range(4, 9))
def test_boards_of_four_or_more_have_a_close_up(total):
    assert "close-up" in [shot_for(i, total) for i in range(1, total + 1)]


def test_shots_are_known_types():
    assert all(shot_for(i, 8) in SHOT_TYPES for i in range(1, 9))


def test_shots_are_deterministic():
    assert [p.shot for p in split_story(SIX_SENTENCES)] == [p.shot for p in split_story(SIX_SENTENCES)]


def test_split_story_uses_shot_for():
    assert [p.shot for p in split_story(SIX_SENTENCES)] == [shot_for(i, 6) for i in range(1, 7)]


# --- Prompts -----------------------------------------------------------------------------


def test_prompt_starts_with_the_character_traits(count_tokens):
    assert prompt_for("She waves.", count_tokens).prompt.startswith(CHARACTER_TRAITS + ", ")


def test_prompt_has_scene_shot_and_style_in_order(count_tokens):
    assert prompt_for("She waves.", count_tokens).prompt == f"{CHARACTER_TRAITS}, She waves, medium shot, {STYLE}"


def test_traits_whitespace_is_normalised(count_tokens):
    assert prompt_for("She waves.", count_tokens, character="  young   woman,\n red hair ").prompt.startswith(
        "young woman, red hair, She waves")


def test_short_prompt_is_not_shortened(count_tokens):
    p = prompt_for("She waves from the pier.", count_tokens)
    assert (p.shortened, p.dropped, p.tokens) == (False, "", count_tokens(p.prompt))


def test_long_scene_is_shortened_to_fit_77_tokens(count_tokens):
    p = prompt_for(LONG_SCENE, count_tokens)
    assert p.tokens <= 77 and count_tokens(p.prompt) == p.tokens


def test_a_long_scene_costs_the_style_before_any_of_its_words_or_traits(count_tokens):
    p = prompt_for(LONG_SCENE, count_tokens)
    assert p.prompt == f"{CHARACTER_TRAITS}, {LONG_SCENE}, medium shot" and (p.shortened, p.dropped) == (True, "")


def test_a_scene_longer_still_costs_trait_phrases_then_its_detail_never_its_action(count_tokens):
    p = prompt_for(LONGER_SCENE, count_tokens)
    assert p.prompt.startswith("young woman, She sprints through the rain-soaked night market")
    assert p.traits_dropped == (CHARACTER_TRAITS.split(", ", 1)[1],)  # every phrase but the first
    assert p.shortened and p.dropped and LONGER_SCENE.endswith(p.dropped) and p.tokens <= 77


def test_shortening_keeps_as_many_scene_words_as_fit(count_tokens):
    p = prompt_for(LONGER_SCENE, count_tokens)
    kept = LONGER_SCENE[: -len(p.dropped)].split()
    one_more = LONGER_SCENE.split()[: len(kept) + 1]
    assert count_tokens(f"young woman, {' '.join(one_more)}, medium shot") > 77


def test_caption_stays_whole_when_the_prompt_is_shortened(count_tokens):
    assert prompt_for(LONG_SCENE, count_tokens).caption == LONG_SCENE


def test_long_cyrillic_scene_is_shortened_and_passes_through(count_tokens):
    p = prompt_for(LONG_RU_SCENE, count_tokens)
    assert p.tokens <= 77 and p.shortened and "Она бежит" in p.prompt and p.caption == LONG_RU_SCENE


def test_style_is_cut_when_traits_and_shot_leave_no_room_for_it(count_tokens):
    traits = ", ".join(["tall young woman with a round freckled face"] * 7)
    assert count_tokens(f"{traits}, medium shot, {STYLE}") > 77  # the premise of this test
    p = prompt_for("She waves.", count_tokens, character=traits)
    assert p.prompt.startswith(traits) and STYLE not in p.prompt and p.tokens <= 77


def test_the_style_goes_phrase_by_phrase_from_its_end(count_tokens):
    traits = ", ".join(["tall young woman with a round freckled face"] * 6)
    p = prompt_for("She waves.", count_tokens, character=traits)
    assert p.prompt.startswith(f"{traits}, She waves, medium shot, cinematic storyboard frame") and STYLE not in p.prompt


def test_one_characters_traits_give_way_to_the_action(count_tokens):
    traits = ", ".join(["tall young woman with a round freckled face"] * 12)
    p = prompt_for("She waves.", count_tokens, character=traits)
    assert p.prompt.endswith(", She waves, medium shot") and p.tokens <= 77 and p.dropped == ""
    assert p.traits_dropped[0] and traits.endswith(p.traits_dropped[0])


def test_first_trait_phrases_over_budget_are_kept_whole(count_tokens):
    traits = " ".join(["tall young woman with a round freckled face"] * 12)  # one phrase
    p = prompt_for("She waves.", count_tokens, character=traits)
    assert (p.prompt, p.shortened, p.dropped) == (traits, True, "She waves.")


def test_negative_prompt_is_returned_stripped(count_tokens):
    plan = PanelPlan("x y", "x y", "wide shot")
    p = build_prompt(plan, CHARACTER_TRAITS, STYLE, f"  {NEGATIVE_PROMPT}\n", count_tokens)
    assert p.negative_prompt == NEGATIVE_PROMPT


def test_the_prompt_describes_the_scene_and_keeps_the_caption(count_tokens):
    p = build_prompt(PanelPlan("Мара бежит.", "Mara runs", "wide shot"), CHARACTER_TRAITS, STYLE, NEGATIVE_PROMPT,
                     count_tokens)
    assert (p.caption, p.shot) == ("Мара бежит.", "wide shot") and "Mara runs, wide shot" in p.prompt


def test_every_default_panel_fits(count_tokens):
    prompts = [build_prompt(plan, CHARACTER_TRAITS, STYLE, NEGATIVE_PROMPT, count_tokens)
               for plan in split_story(SIX_SENTENCES)]
    assert all(p.tokens <= 77 for p in prompts)


def test_portrait_prompt_is_a_front_facing_reference(count_tokens):
    p = portrait_prompt(CHARACTER_TRAITS, STYLE, NEGATIVE_PROMPT, count_tokens)
    assert p.caption == "Character reference"
    assert p.prompt.startswith(CHARACTER_TRAITS + ", portrait, front view, head and shoulders")


def test_import_pulls_in_no_heavy_modules():
    code = (
        "import sys, prompt_enhancer; "
        "print(sorted(m for m in ('torch', 'flask', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text,limit,expected", [
    ("short enough", 20, "short enough"),
    ("cannot load the weights and outgoing traffic", 30, "cannot load the weights and…"),
    ("x" * 40, 10, "x" * 9 + "…"),
])
def test_shorten_cuts_at_a_word_boundary(text, limit, expected):
    from prompt_enhancer import shorten

    assert shorten(text, limit) == expected and len(shorten(text, limit)) <= limit


# --- A cast: who is in a panel, and their traits in its prompt --------------------------------

MARA = "young woman, oval face, green almond eyes, wavy auburn hair, dark green hooded jacket"
ILYA = "old man, square face, grey beard, bushy eyebrows, navy wool coat, leather satchel"


def cast_prompt(caption: str, count_tokens, *traits: str):
    return build_prompt(PanelPlan(caption, caption, "medium shot"), traits, STYLE, NEGATIVE_PROMPT, count_tokens)


@pytest.mark.parametrize("text,name,expected", [
    ("Ilya and mara argue.", "Mara", True),
    ("MARA runs.", "mara", True),
    ("Marat runs.", "Mara", False),  # a word, not a part of one
    ("Mara's map.", "Mara", True),
    ("Мара бежит.", "мара", True),
    ("ΣΟΦΙΑ τρέχει.", "Σοφιας", False),
    ("Η ΣΟΦΙΑΣ φεύγει.", "σοφιας", True),  # final sigma and capital sigma are one letter
    ("小明去了学校。", "小明", True),  # no spaces between words in Chinese
    ("Anne  Marie waves.", "Anne Marie", True),
])
def test_names_are_found_as_words_in_any_script(text, name, expected):
    from prompt_enhancer import mentions

    assert mentions(text, name) is expected


def test_a_panel_shows_who_it_names_in_cast_order_else_the_first_character():
    from prompt_enhancer import cast_from_text

    names = ("Mara", "Ilya")
    assert cast_from_text("Ilya hands Mara the map.", names) == ("Mara", "Ilya")
    assert cast_from_text("Ilya waits.", names) == ("Ilya",)
    assert cast_from_text("The storm breaks.", names) == ("Mara",)
    assert cast_from_text("The storm breaks.", ("",)) == ("",)  # the unnamed character of a cast of one
    assert cast_from_text("The storm breaks.", ()) == ()


def test_several_characters_lead_the_prompt_each_at_its_place(count_tokens):
    p = cast_prompt("They argue.", count_tokens, "red hair", "grey beard")
    assert p.prompt == f"left: red hair; right: grey beard, They argue, medium shot, {STYLE}"
    assert p.traits_dropped == ("", "") and not p.shortened


def test_one_character_prompt_is_as_before_and_reports_no_cut(count_tokens):
    assert cast_prompt("She waves.", count_tokens, CHARACTER_TRAITS).prompt == \
        prompt_for("She waves.", count_tokens).prompt
    assert prompt_for("She waves.", count_tokens).traits_dropped == ("",)


def test_a_panel_with_no_one_has_no_traits(count_tokens):
    p = cast_prompt("The empty harbour at dawn.", count_tokens)
    assert p.prompt == f"The empty harbour at dawn, medium shot, {STYLE}" and p.traits_dropped == ()


def test_trait_phrases_are_cut_before_scene_words(count_tokens):
    p = cast_prompt(LONG_SCENE, count_tokens, MARA, ILYA)
    assert p.tokens <= 77 and p.dropped == "" and all(p.traits_dropped) and p.prompt.endswith(f"{LONG_SCENE}, medium shot")


def test_traits_over_budget_are_cut_fairly_clothing_first(count_tokens):
    four = [MARA, ILYA, "boy, round face, freckles, red cap, yellow raincoat, green boots",
            "girl, long face, black braids, silver earrings, purple scarf, white sneakers"]
    p = cast_prompt("They argue.", count_tokens, *four)
    assert p.tokens <= 77 and p.dropped == "" and p.prompt.endswith(", They argue, medium shot")
    for traits, cut in zip(four, p.traits_dropped):
        kept = traits[: len(traits) - len(cut)].rstrip(", ")
        assert cut and traits.endswith(cut) and kept in p.prompt  # each loses its last phrases, keeps its face
    assert "oval face" in p.prompt and "square face" in p.prompt and "jacket" not in p.prompt
    kept_tokens = [count_tokens(t[: len(t) - len(c)]) for t, c in zip(four, p.traits_dropped)]
    assert max(kept_tokens) - min(kept_tokens) <= 6  # fair: no one keeps much more than another


# --- The core action survives the budget ---------------------------------------------------

TOM = "tall young man, square jaw, short black hair, grey eyes, brown leather jacket with brass buttons"
ADA = "small old woman, round wrinkled face, silver braid, thick round glasses, long purple wool coat"
LONG_CAST = (TOM, ADA, MARA + ", silver locket", ILYA)


@pytest.mark.parametrize("scene,core", [
    ("Tom and Ada climb the spiral stairs together", "Tom and Ada climb the spiral stairs together"),
    ("Tom and Ada climb the spiral stairs, the lamp swinging above them", "Tom and Ada climb the spiral stairs"),
    ("At dawn, Tom and Ada climb the stairs, gulls scream", "At dawn, Tom and Ada climb the stairs"),  # a setting first
    ("In the old harbour at night, Ada unties the boat, rain falls", "In the old harbour at night, Ada unties the boat"),
    ("She runs, the wind howls behind her", "She runs, the wind howls behind her"),  # too short alone
    ("Мара и Илья поднимаются по винтовой лестнице, за окном шторм", "Мара и Илья поднимаются по"),  # its start
    ("小明和小红一起爬上螺旋楼梯，窗外下着大雨", "小明和小红一起爬上螺旋楼"),  # ~2.5 tokens a character
])
def test_the_core_action_is_the_first_clause_past_any_setting(scene, core, count_tokens):
    from prompt_enhancer import _prefix, _units, core_length

    units = _units(scene)
    assert "".join(units) == scene and _prefix(units, core_length(units, count_tokens)) == core


SCENES = [  # (scene, its main verb)
    ("Tom and Ada climb the spiral stairs together", "climb"),
    ("At dawn, Tom and Ada climb the spiral stairs together, the lamp swinging above them as gulls scream outside "
     "and the old keeper watches from the landing below", "climb"),
    (LONGER_SCENE, "sprints"),
    ("Ada hands Tom the brass key.", "hands"),
    ("Мара и Илья поднимаются по винтовой лестнице, за окном бушует шторм и гремит гром", "поднимаются"),
    ("小明和小红一起爬上螺旋楼梯，窗外下着大雨", "爬上"),
]


@pytest.mark.parametrize("characters", [1, 2, 3, 4])
@pytest.mark.parametrize("scene,verb", SCENES)
def test_a_cast_with_long_traits_never_loses_the_main_verb(scene, verb, characters, count_tokens):
    p = cast_prompt(scene, count_tokens, *LONG_CAST[:characters])
    assert verb in p.prompt and p.tokens <= 77
    assert p.shortened == (count_tokens(_full(scene, LONG_CAST[:characters])) > 77)


def test_the_issues_cast_of_three_keeps_its_action_and_says_what_it_cut(count_tokens):
    p = cast_prompt("Tom and Ada climb the spiral stairs together", count_tokens, *LONG_CAST[:3])
    assert "Tom and Ada climb the spiral stairs together, medium shot" in p.prompt and STYLE not in p.prompt
    assert p.shortened and any(p.traits_dropped) and p.dropped == ""


def _full(scene: str, traits) -> str:
    from prompt_enhancer import _cast_text, _phrases

    phrases = [_phrases(t) for t in traits]
    return ", ".join((_cast_text(phrases, [len(p) for p in phrases]), scene.rstrip("."), "medium shot", STYLE))
