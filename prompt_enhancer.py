"""Turn a story into storyboard panels and each panel into an SDXL prompt that fits CLIP.

Two steps, both pure functions over small frozen dataclasses:

1. :func:`plan_story` cuts the user's story into a :class:`StoryPlan` of :class:`PanelPlan` s
   (one per panel: the caption in the user's own words, the scene the prompt describes, a
   shot type and who is in it). No tokenizer is needed, so the request handler can store
   the plan before any model is loaded. The LLM planner (planner.py) returns the same type.
2. :func:`build_prompt` turns a plan into a :class:`PanelPrompt`:
   ``"{character}, {scene}, {shot}, {style}"``. SDXL's CLIP text encoders read only 77
   tokens (start and end tokens included), so the character traits go first, and when the
   whole does not fit, the scene's core action stays and the style, trait phrases and scene
   detail give way (:func:`_compose`).

Token counting is injected (``count_tokens(text) -> int``, counting the start and end
tokens, e.g. ``lambda t: len(tokenizer(t).input_ids)``), so this module imports neither
torch nor transformers, and importing it does nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from errors import InputError

CLIP_MAX_TOKENS = 77
DEFAULT_FRAMES = 6
SOURCE_BUILT_IN = "built-in"  # a StoryPlan's source when this module's splitter planned it

SHOT_TYPES: tuple[str, ...] = (
    "establishing shot",
    "wide shot",
    "medium shot",
    "close-up",
    "over-the-shoulder shot",
    "low-angle shot",
    "extreme close-up",
    "high-angle shot",
    "two-shot",
)
# Shots for the panels between the first (establishing) and the last (wide, the
# resolution), in order. No neighbours repeat, "wide shot" is not among them so the last
# panel never repeats its neighbour, and the close-up comes second so any board of 4+
# panels has one. "two-shot" is left out: the main character may be alone.
_MIDDLE_SHOTS = (
    "medium shot",
    "close-up",
    "over-the-shoulder shot",
    "low-angle shot",
    "extreme close-up",
    "high-angle shot",
)

PORTRAIT_FRAMING = "portrait, front view, head and shoulders, looking at the camera, neutral background"
PORTRAIT_CAPTION = "Character reference"


@dataclass(frozen=True)
class PanelPlan:
    """One panel of a plan, whoever planned it: the caption in the user's language (shown and
    exported), the scene the prompt describes (in English when an LLM planned it; else the
    caption), a shot from SHOT_TYPES, who of the cast is in it (names, in cast order) and the
    line spoken over it (a screenplay's dialogue, shown under the caption; "" none)."""

    caption: str
    scene: str
    shot: str
    cast: tuple[str, ...] = ()
    dialogue: str = ""


@dataclass(frozen=True)
class StoryPlan:
    """The panels of a story, what the user should know about how it was read, and who
    planned it (SOURCE_BUILT_IN; planner.py's sources for an LLM's plan)."""

    panels: tuple[PanelPlan, ...]
    notices: tuple[str, ...] = ()
    source: str = SOURCE_BUILT_IN


@dataclass(frozen=True)
class PanelPrompt:
    """One panel's prompts, ready for the generator."""

    caption: str
    shot: str
    prompt: str  # the full positive prompt
    negative_prompt: str
    tokens: int  # count_tokens(prompt)
    shortened: bool  # True when anything (scene words, style, shot) was cut to fit
    dropped: str  # the words of scene detail that were cut ("" when none)
    traits_dropped: tuple[str, ...] = ()  # per character present, the trait phrases cut ("" when none)


# --- Shots -------------------------------------------------------------------------------


def shot_for(index: int, total: int) -> str:
    """Shot type of panel ``index`` (1-based) of ``total``; deterministic.

    Panel 1 is the establishing shot, the last panel (of 2+) a wide "resolution" shot,
    and the panels between cycle through _MIDDLE_SHOTS.
    """
    if not 1 <= index <= total:
        raise ValueError(f"panel {index} is outside 1..{total}")
    if index == 1:
        return "establishing shot"
    if index == total:
        # A 2-panel board would otherwise end on a second wide view right after the
        # establishing shot; a medium shot gives it a closer second look.
        return "medium shot" if total == 2 else "wide shot"
    # The cycle is 6 long, so a panel and its neighbour never share a shot.
    return _MIDDLE_SHOTS[(index - 2) % len(_MIDDLE_SHOTS)]


# --- Story -> panels ---------------------------------------------------------------------

# A leading list marker: "1." "2)" "3:" "-" "*" "•" "Panel 3:" "Кадр 3." ... A number or
# bullet must be followed by a space, so "1.5 metres", "12:30" and "-20 degrees" keep their
# numbers; "Panel 3" needs its ":" "." ")" or dash, so "Scene 2 of the play" stays whole.
# The em dash is no bullet: it opens Russian dialogue ("— Стой! — крикнула она").
_MARKER = re.compile(
    r"^\s*(?:"
    r"(?:panel|frame|scene|shot|beat|панель|кадр|сцена)\s*\d+\s*[:.)\-–—]\s*"
    r"|\d{1,2}\s*[.):]\s+"
    r"|[-*•]\s+"
    r")",
    re.IGNORECASE,
)
# Lines made only of these are separators ("---", "***", "===="), not panels.
_SEPARATOR = re.compile(r"^[\s\-–—=*_~#.•]*$")


def _strip_marker(line: str) -> str:
    return _MARKER.sub("", line, count=1).strip()


def _story_lines(story: str) -> list[str]:
    """Non-empty lines, markers stripped, separator lines dropped."""
    lines = []
    for raw in story.splitlines():
        if _SEPARATOR.match(raw):
            continue
        line = _strip_marker(raw)
        if line:
            lines.append(line)
    return lines


def _check_frames(frames: int | str | None, max_frames: int) -> int | None:
    """The panel count as an int, None when not given; raises InputError('frames')."""
    if frames is None or (isinstance(frames, str) and not frames.strip()):
        return None
    # bool is an int subclass; True would silently mean 1 panel.
    if isinstance(frames, bool) or not isinstance(frames, (int, str)):
        raise InputError("frames", f"The number of panels must be a whole number, not {frames!r}.")
    if isinstance(frames, str):
        if not (frames.strip().isascii() and frames.strip().isdigit()):  # isdigit() alone takes '²'
            raise InputError("frames", f"The number of panels must be a whole number, not {frames!r}.")
        frames = int(frames.strip())
    if not 1 <= frames <= max_frames:
        raise InputError("frames", f"The number of panels must be between 1 and {max_frames}, not {frames}.")
    return frames


def split_story(story: str, frames: int | None = None, max_frames: int = 8) -> list[PanelPlan]:
    """Cut a story into panels.

    - Several non-empty lines: one panel per line, in order; the lines win over ``frames``
      (the user laid the panels out line by line, and dropping or merging their lines
      would be a surprise). A leading list marker ("1.", "2)", "-", "*", "Panel 3:") is
      stripped; otherwise the caption is the line as written. Blank lines and separator
      lines ("---", "***") are ignored. More lines than ``max_frames`` raises
      InputError("story") rather than losing text.
    - One paragraph: split into ``frames`` (default 6) consecutive story beats, see
      :func:`story_beats`.

    ``frames`` is validated (1..max_frames) whenever it is given, even when lines win.
    """
    if not isinstance(story, str) or not story.strip():
        raise InputError("story", "The story is empty: write a few sentences, or one line per panel.")
    frames = _check_frames(frames, max_frames)
    lines = _story_lines(story)
    if not lines:
        raise InputError("story", "The story has no words, only separators or list markers.")
    if len(lines) > 1:
        if len(lines) > max_frames:
            raise InputError(
                "story",
                f"The story has {len(lines)} lines but at most {max_frames} panels: "
                f"one line makes one panel, so join some lines or write a single paragraph.",
            )
        captions = lines
    else:
        sheet = _premise_sheet(lines[0], frames or DEFAULT_FRAMES)
        if sheet:
            return sheet
        captions = story_beats(lines[0], frames or DEFAULT_FRAMES)
    total = len(captions)
    return [PanelPlan(caption, caption, shot_for(i, total)) for i, caption in enumerate(captions, 1)]


def _premise_sheet(paragraph: str, wanted: int) -> list[PanelPlan] | None:
    """The beat sheet (:func:`beat_sheet`) of a paragraph with fewer sentences than panels
    wanted, in English; None for a story to split."""
    if len(split_sentences(paragraph)) >= wanted or language_notice(paragraph) is not None:
        return None
    return beat_sheet(paragraph, wanted)


def plan_story(story: str, frames: int | None = None, max_frames: int = 8, names: Sequence[str] = ()) -> StoryPlan:
    """:func:`split_story`, with notices (fewer panels than asked, a story not in English) and
    each panel's cast: who of ``names`` its words mention (:func:`cast_from_text`)."""
    panels = tuple(PanelPlan(p.caption, p.scene, p.shot, cast_from_text(p.caption, names))
                   for p in split_story(story, frames, max_frames))
    notices = []
    wanted = _check_frames(frames, max_frames)
    one_paragraph = len(_story_lines(story)) == 1
    if one_paragraph and _premise_sheet(_story_lines(story)[0], wanted or DEFAULT_FRAMES):
        count = len(split_sentences(story))
        notices.append(
            f"The premise has {count} sentence{'s' if count != 1 else ''}, so the built-in planner made "
            f"{len(panels)} panels from a beat sheet: its own moments, and around them an establishing shot, the "
            "approach, the reaction, what follows and the resolution in its words. Write one line per panel, or "
            "set an LLM planner (STORYBOARD_PLANNER_URL), to choose the moments yourself."
        )
    elif one_paragraph and len(panels) < (wanted or DEFAULT_FRAMES):
        notices.append(
            f"The story has {len(panels)} distinct beat{'s' if len(panels) != 1 else ''}, so it makes "
            f"{len(panels)} panel{'s' if len(panels) != 1 else ''}, not {wanted or DEFAULT_FRAMES}: two panels "
            "with the same scene would come out nearly identical. Add sentences, or write one line per panel."
        )
    elif not one_paragraph and wanted is not None and wanted != len(panels):
        notices.append(f"The story has {len(panels)} lines, one panel each, so the panel count ({wanted}) "
                       "was not used.")
    language = language_notice(story)
    if language:
        notices.append(language)
    return StoryPlan(panels, tuple(notices))


# A story counts as not English when more than this share of its letters is outside ASCII
# (Cyrillic, Greek, CJK, Arabic, ...). Latin-script languages are not detected.
NON_ENGLISH_SHARE = 0.3


def language_notice(story: str) -> str | None:
    """Words for the user when the story is not in English, else None."""
    letters = [ch for ch in story if ch.isalpha()]
    if not letters or sum(not ch.isascii() for ch in letters) / len(letters) <= NON_ENGLISH_SHARE:
        return None
    return (
        "This story is not in English. SDXL's text encoders read English: scenes in another language "
        "guide the picture weakly and cost several tokens a word, so each panel's prompt keeps only the "
        "start of its scene within CLIP's 77 tokens (each panel shows what was cut). Captions and exports "
        "keep your words; for better pictures, write the scenes in English."
    )


# --- Sentences ---------------------------------------------------------------------------

# Sentence ends: . ! ? … (and runs of them), then closing quotes or brackets, then a space
# or the end; CJK full stops need no space after them.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*(?=\s|$)|[。！？]+[\"'»”’)\]]*")
# Titles before a name: their "." never ends a sentence ("Dr. Watson"). Lower case,
# without the final dot.
_TITLES = frozenset("mr mrs ms dr prof st jr sr mt fig vs проф ул им".split())
# Other abbreviations end a sentence only when a capital follows ("at 3 p.m. They left",
# but "e.g. a cat"). Lower case, without the final dot.
_ABBREVIATIONS = frozenset(
    "e.g i.e etc approx a.m p.m т.е т.к т.д т.п др г гг см стр тыс млн руб".split()
)
_OPENERS = "«\"“„'‘(—–-"


def _ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the punctuation text[start:end] ends a sentence."""
    mark = text[start:end]
    after = text[end:].lstrip()
    if not after or any(c in mark for c in "。！？"):
        return True
    # Speech goes on after its attribution: '"Who is there?" she asked.' and, in Russian
    # dialogue, "— Стой! — крикнула она."
    said = after.lstrip("—– ")
    if said[:1].islower() and (after[0] in "—–" or any(c in mark for c in "!?")):
        return False
    if any(c in mark for c in "!?"):
        return True
    if "…" in mark or ".." in mark:
        # "and then... nothing" goes on; "It was gone... Then" is a new sentence.
        return after[0].isupper() or after[0] in _OPENERS
    word = text[:start].rsplit(None, 1)[-1].lstrip(_OPENERS).lower() if text[:start].strip() else ""
    if word in _TITLES:
        return False
    if word in _ABBREVIATIONS:
        return after[0].isupper()
    # A single capital letter is an initial: "J. R. R. Tolkien", "А. С. Пушкин".
    initial = text[start - 1].isupper() and (start == 1 or not text[start - 2].isalnum())
    return not initial


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, each with its own punctuation.

    A "sentence" with no letters at all (a stray "1." or "—") joins the next one.
    """
    text = " ".join(text.split())
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if _ends_sentence(text, match.start(), match.end()):
            sentences.append(text[start : match.end()].strip())
            start = match.end()
    sentences.append(text[start:].strip())
    merged: list[str] = []
    carry = ""
    for sentence in filter(None, sentences):
        if not any(c.isalpha() for c in sentence):
            carry = f"{carry} {sentence}".strip()
            continue
        merged.append(f"{carry} {sentence}".strip())
        carry = ""
    if carry:  # trailing letterless text belongs to the last sentence
        merged = merged[:-1] + [f"{merged[-1]} {carry}"] if merged else [carry]
    return merged


# --- Beats -------------------------------------------------------------------------------

_CLAUSE_PUNCTUATION = (",", ";", ":", "—", "–")
_CONJUNCTIONS = frozenset("and then but while и затем потом но а".split())
MIN_CLAUSE_WORDS = 2

def _split_clause(piece: str) -> tuple[str, str] | None:
    """Split ``piece`` in two at the clause boundary nearest its middle, or None.

    Punctuation boundaries (after , ; : or a dash) are preferred to conjunctions
    ("and", "then", "и", "затем", ...), which start the second half. Both halves keep
    at least MIN_CLAUSE_WORDS words; every word is kept.
    """
    words = piece.split()
    valid = range(MIN_CLAUSE_WORDS, len(words) - MIN_CLAUSE_WORDS + 1)
    punctuation = [j for j in valid if words[j - 1].endswith(_CLAUSE_PUNCTUATION)]
    conjunctions = [j for j in valid if words[j].lower() in _CONJUNCTIONS]
    candidates = punctuation or conjunctions
    if not candidates:
        return None
    j = min(candidates, key=lambda j: abs(j - len(words) / 2))
    return " ".join(words[:j]), " ".join(words[j:])


def story_beats(paragraph: str, frames: int) -> list[str]:
    """At most ``frames`` consecutive beats that together hold the whole paragraph.

    - More sentences than frames: neighbouring sentences are merged, the first beats
      taking one more sentence when they do not divide evenly.
    - Fewer: the longest piece is split at a clause boundary, repeatedly, while one can be.
    - Still fewer: that many beats. Two panels never share a scene (they would come out
      nearly identical); :func:`plan_story` tells the user why there are fewer panels.
    """
    # An inline numbered list ("1. She walks. 2. She runs.") keeps its numbers off the
    # captions, as a list written line by line does.
    pieces = [p for p in map(_strip_marker, split_sentences(paragraph)) if p] or [paragraph.strip()]
    if len(pieces) >= frames:
        return [" ".join(group) for group in _groups(pieces, frames)]
    while len(pieces) < frames:
        # Longest first: a long sentence has the most to give to two panels.
        for i in sorted(range(len(pieces)), key=lambda i: -len(pieces[i].split())):
            halves = _split_clause(pieces[i])
            if halves:
                pieces[i : i + 1] = halves
                break
        else:
            break
    return pieces


def _groups(items: list, n: int) -> list[list]:
    """``items`` cut into ``n`` consecutive groups whose sizes differ by at most one."""
    size, extra = divmod(len(items), n)
    groups, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        groups.append(items[start:end])
        start = end
    return groups


# --- A premise -> a beat sheet -----------------------------------------------------------
#
# A premise of one or two sentences has fewer moments than panels asked for. Without an LLM
# the built-in planner still gives the count asked for, honestly: a beat sheet whose moments
# are built from the premise's own words (who, what, where), never two alike. English only:
# its sentences are English; another language is split as a story is (plan_story says so).

# Beats in story order, and which of them a board of n panels uses.
_BEATS_FOR = {
    1: ("premise",),
    2: ("establish", "premise"),
    3: ("establish", "premise", "resolution"),
    4: ("establish", "approach", "premise", "resolution"),
    5: ("establish", "approach", "premise", "reaction", "resolution"),
    6: ("establish", "approach", "premise", "reaction", "consequence", "resolution"),
    7: ("establish", "introduce", "approach", "premise", "reaction", "consequence", "resolution"),
    8: ("establish", "introduce", "approach", "premise", "reaction", "complication", "consequence", "resolution"),
}
_BEAT_SHOTS = {"establish": "establishing shot", "introduce": "medium shot", "approach": "wide shot",
               "reaction": "close-up", "complication": "low-angle shot", "consequence": "over-the-shoulder shot",
               "resolution": "wide shot"}
_DETERMINERS = frozenset("a an the one his her their its my our your this that".split())
_VERBS = frozenset(
    "is are was were has have had goes went runs ran finds found meets met sees saw gets got takes took makes "
    "made comes came becomes became leaves left falls fell tries must can will sets set".split()
)
_PLACE = re.compile(r"\b(?:in|into|inside|at|on|onto|through|across|to|toward|towards|under|beneath|beyond|within|"
                    r"over|near)\s+((?:(?:the|a|an|her|his|their|its|our|my)\s+)?[\w'’-]+(?:\s+[\w'’-]+){0,2})",
                    re.IGNORECASE)
_PLACE_END = frozenset("and but where while when as then with to of for by from who that which".split())
_TIMES = frozenset("night dawn dusk noon midnight sunset sunrise morning evening first last once home".split())
_CONNECTORS = frozenset("and then but where while so until when".split())
_PRONOUNS = frozenset("she he they it we i".split())


@dataclass(frozen=True)
class _Premise:
    subject: str  # "A young cartographer", "Tom and Ada"
    the: str  # the subject named again: "the young cartographer", "Tom and Ada"
    place: str  # "a hidden lighthouse" ("" when none is named)
    moments: tuple[str, ...]  # the premise's own moments, each a sentence


def _verbish(word: str) -> bool:
    w = word.lower().strip(",;:.!?")
    return w in _VERBS or (w.isalpha() and len(w) > 3 and (w.endswith("ed") or (w.endswith("s") and not w.endswith("ss"))))


def _read_premise(premise: str) -> _Premise | None:
    """Who, where and which moments a short English premise names; None when it does not
    read as one (no subject found)."""
    sentences = [s.rstrip(".!?…") for s in split_sentences(premise)]
    words = sentences[0].split()
    if len(words) < 3:
        return None
    if words[0].lower() in _DETERMINERS:
        end = next((i for i in range(2, min(len(words), 7)) if _verbish(words[i])), None)
    else:  # names: "Tom and Ada climb ..."
        end = next((i for i in range(1, min(len(words), 6))
                    if not (words[i][:1].isupper() or words[i].lower() in ("and", "&"))), None)
    if not end:
        return None
    subject = " ".join(words[:end]).rstrip(",")
    the = ("the " + " ".join(words[1:end]) if words[0].lower() in ("a", "an", "one") else
           subject[0].lower() + subject[1:] if words[0].lower() in _DETERMINERS else subject).rstrip(",")
    place = ""
    for match in _PLACE.finditer(" ".join(sentences)):
        if match.group(1).split()[-1].strip(",;:").lower() in _TIMES:
            continue  # "at night" is when, not where
        kept = []
        for word in match.group(1).split():
            if word.lower() in _PLACE_END:
                break
            kept.append(word.strip(",;:"))
            if word.endswith((",", ";", ":")):
                break
        place = " ".join(kept)
        break
    moments = []
    for sentence in sentences:
        for clause in re.split(r"\s*[,;:]\s*(?:and\s+|then\s+|but\s+)?|\s+and\s+then\s+", sentence):
            clause_words = clause.split()
            while clause_words and clause_words[0].lower() in _CONNECTORS:
                clause_words = clause_words[1:]
            if len(clause_words) < 2:
                continue
            if not moments or clause_words[0][:1].isupper():
                text = " ".join(clause_words)
            elif clause_words[0].lower() in _PRONOUNS:
                text = " ".join(clause_words)
            elif _verbish(clause_words[0]):
                text = f"{the} {' '.join(clause_words)}"
            else:  # a fragment ("a storm"): it stays with the moment before
                moments[-1] += f", {' '.join(clause_words)}"
                continue
            moments.append(text[0].upper() + text[1:])
    return _Premise(subject, the, place, tuple(moments))


def _sentence(text: str) -> str:
    text = " ".join(text.split()).rstrip(" ,;:")
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def beat_sheet(premise: str, frames: int) -> list[PanelPlan] | None:
    """``frames`` panels from a short English premise: its own moments in the middle, and
    around them the beats a story needs (the place before, the approach, the reaction, the
    consequence, the resolution), each a sentence in the premise's words with its own shot.
    None when the premise does not read as one (:func:`_read_premise`)."""
    read = _read_premise(premise)
    if read is None:
        return None
    who, place = read.the, read.place or "the scene"
    first, _, rest = place.partition(" ")
    there = f"the {rest}" if first.lower() in ("a", "an") and rest else place  # named again: "the"
    several = " and " in who or who.split()[-1].lower() in ("they", "friends", "children")

    def verb(one: str, many: str) -> str:
        return many if several else one

    lines = {
        "establish": f"{place}, quiet, before anything happens",
        "introduce": f"{read.subject} on an ordinary day, not knowing what is coming",
        "approach": f"{who} {verb('sets', 'set')} out, {there} ahead",
        "reaction": f"{who} {verb('stops', 'stop')}, taking in what has happened",
        "complication": f"{who} {verb('hesitates', 'hesitate')} as the way ahead turns hard",
        "consequence": f"{who} {verb('acts', 'act')} on it, and nothing is as it was",
        "resolution": f"at last {who} {verb('looks', 'look')} back at {there}, changed",
    }
    beats = list(_BEATS_FOR[frames])
    moments = list(read.moments)
    # The premise's own moments replace the invented beats nearest them, in order: a premise
    # of three clauses is three panels of its own words, and fewer made-up ones.
    middle = [b for b in beats if b not in ("establish", "premise", "resolution")]
    while len(moments) > sum(b in ("premise", "moment") for b in beats) and middle:
        beats[beats.index(middle.pop(0))] = "moment"
    slots = [i for i, b in enumerate(beats) if b in ("premise", "moment")]
    texts = {i: " ".join(map(_sentence, group)) for i, group in zip(slots, _groups(moments, len(slots)))}
    panels = []
    for i, beat in enumerate(beats):
        caption = _sentence(texts[i] if i in texts else lines[beat])
        shot = _BEAT_SHOTS.get(beat) or ("medium shot" if frames > 1 else "establishing shot")
        panels.append(PanelPlan(caption, caption, shot))
    # Neighbours never share a shot (the premise's moments may sit side by side).
    for i in range(1, len(panels)):
        if panels[i].shot == panels[i - 1].shot:
            other = next(s for s in _MIDDLE_SHOTS if s not in (panels[i - 1].shot,
                                                                panels[i + 1].shot if i + 1 < len(panels) else ""))
            panels[i] = PanelPlan(panels[i].caption, panels[i].scene, other)
    return panels


# --- Who is in a panel -------------------------------------------------------------------

# Scripts written without spaces between words: a name in them is found inside a run of
# letters ("小明去了" mentions 小明), where in other scripts it must be a whole word
# ("Marat" does not mention Mara).
_UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN", "HANGUL")


def _unspaced(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_UNSPACED_SCRIPTS)


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` names ``name``: as words, ignoring case (casefolded, so "ΣΟΦΙΑ"
    and "σοφια" match), in any script; spaces inside the name match any spacing."""
    folded = " ".join(name.split()).casefold()
    if not folded:
        return False
    body = r"\s+".join(re.escape(word) for word in folded.split(" "))
    before = "" if _unspaced(folded[0]) else r"(?<!\w)"
    after = "" if _unspaced(folded[-1]) else r"(?!\w)"
    return re.search(before + body + after, text.casefold()) is not None


def cast_from_text(text: str, names: Sequence[str]) -> tuple[str, ...]:
    """Who is in a panel by default: the characters whose names ``text`` mentions, in cast
    order; when it names nobody, the first character (a board's lead). An empty ``names``
    (no cast) gives nobody."""
    present = tuple(name for name in names if mentions(text, name))
    return present or tuple(names[:1])


# The places of the characters in a panel with several of them, left to right: the
# prompt names them and the identity lock gives each its strip of the picture.
CAST_POSITIONS: dict[int, tuple[str, ...]] = {
    1: ("",),
    2: ("left", "right"),
    3: ("left", "center", "right"),
    4: ("far left", "center left", "center right", "far right"),
}


def cast_positions(count: int) -> tuple[str, ...]:
    return CAST_POSITIONS[count]


# --- Panel -> prompt ---------------------------------------------------------------------

# Trimmed off the end of the scene detail so "door," does not become "door,, medium shot".
_TRAILING = " ,;:.!?…-–—，；：、。！？"


# Control characters reach prompts and PNG metadata for no good reason; tabs and line
# breaks are kept (a story has one panel per line).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """``text`` without control characters (tabs and line breaks stay, as ``\\n``).

    Raises ValueError for text that cannot be stored or encoded (lone surrogates).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains characters that are not valid text (lone surrogates)") from None
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def user_text(value: Any, field: str, limit: int, required: bool = False) -> str:
    """One line of the user's text from a request (a name, a caption, a scene): cleaned, its
    spacing collapsed, at most ``limit`` characters; "" when blank and not ``required``.
    Raises InputError naming ``field`` (``panels[2].scene``)."""
    if value is None or isinstance(value, str) and not value.strip():
        if required:
            raise InputError(field, f"{field} is empty.")
        return ""
    if not isinstance(value, str):
        raise InputError(field, f"{field} must be text.")
    try:
        text = " ".join(clean_text(value).split())
    except ValueError as error:
        raise InputError(field, f"{field} {error}.") from None
    if len(text) > limit:
        raise InputError(field, f"{field} is too long ({len(text)} characters; at most {limit}).")
    return text


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _join(*parts: str) -> str:
    return ", ".join(part for part in parts if part)


def _phrases(traits: str) -> list[str]:
    """A character's traits as its comma-separated phrases, face first (as the form asks)."""
    return [phrase.strip() for phrase in _normalise(traits).split(",") if phrase.strip()]


def _cast_text(phrases: Sequence[Sequence[str]], kept: Sequence[int]) -> str:
    """The traits of the characters present: one character's as they are; several, each
    after its place in the picture ("left: ...; right: ..."), the places the identity lock's
    regions use (:func:`cast_positions`)."""
    texts = [", ".join(p[:n]) for p, n in zip(phrases, kept)]
    if len(texts) <= 1:
        return texts[0] if texts else ""
    return "; ".join(f"{place}: {text}" for place, text in zip(cast_positions(len(texts)), texts))


def _fair_cut(phrases: Sequence[Sequence[str]], fits: Callable[[list[int]], bool],
              count_tokens: Callable[[str], int]) -> list[int]:
    """How many phrases of each character to keep so that ``fits``: a phrase at a time from
    the end (clothing goes before the face), always from the character whose traits are
    longest now (the later one on a tie), never a character's first phrase."""
    kept = [len(p) for p in phrases]
    while not fits(kept):
        longest = [(count_tokens(", ".join(p[:n])), i) for i, (p, n) in enumerate(zip(phrases, kept)) if n > 1]
        if not longest:
            break
        kept[max(longest)[1]] -= 1
    return kept


# The core action: the scene's first clause, ended by this punctuation (CJK's too).
_CLAUSE_ENDS = tuple(",;:—–.!?…，；：、。！？")
# A first clause this short, or one that opens with a place or a time, is a setting ("At
# dawn,", "In the old harbour,"), not yet the action: the next clause joins the core.
MIN_CORE_TOKENS = 5
_LEAD_INS = frozenset(
    "at in on after before during when while as once with under inside outside near beside behind "
    "through across into from by later meanwhile suddenly then".split()
)
# A core longer than this (a run-on first clause, or Chinese at ~2.5 tokens a character)
# keeps its start: the rest of the budget is the cast's.
MAX_CORE_TOKENS = 32


def _units(text: str) -> list[str]:
    """``text`` in the pieces the budget cuts between: words with the spaces after them and,
    in scripts written without spaces (Chinese, Japanese, Thai...), single characters.
    ``"".join(_units(text)) == text``."""
    units: list[str] = []
    for word in re.findall(r"\S+\s*", text):
        run = ""
        for ch in word:
            if _unspaced(ch):
                units.extend(filter(None, (run, ch)))
                run = ""
            elif ch.isspace() and not run and units:
                units[-1] += ch
            else:
                run += ch
        if run:
            units.append(run)
    return units


def _prefix(units: Sequence[str], n: int) -> str:
    return "".join(units[:n]).rstrip(_TRAILING)


def _most(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The largest n in lo..hi with ``ok(n)``, given ``ok(lo)`` and that ``ok`` holds up to a
    point and not after (more words never take fewer tokens)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def core_length(units: Sequence[str], count_tokens: Callable[[str], int]) -> int:
    """How many of a scene's units (:func:`_units`) are its core action, the part of the
    prompt a panel exists for: its first clause, joined by the next ones while it is a
    setting (shorter than MIN_CORE_TOKENS, or opening with a place or time word such as "at",
    "when"), at most MAX_CORE_TOKENS. No part-of-speech tagger: clause punctuation and token
    counts read any language; the setting words are English, where captions mostly are."""
    ends = [i + 1 for i, unit in enumerate(units) if unit.rstrip().endswith(_CLAUSE_ENDS)] + [len(units)]
    opens_with_setting = bool(units) and units[0].strip().lower() in _LEAD_INS
    n = 0
    for k, end in enumerate(ends):
        n = end
        if count_tokens(_prefix(units, n)) - 2 >= MIN_CORE_TOKENS and not (k == 0 and opens_with_setting):
            break
    return _most(min(1, n), n, lambda m: count_tokens(_prefix(units, m)) - 2 <= MAX_CORE_TOKENS)


def _compose(
    plan: PanelPlan,
    characters: Sequence[str],
    style: str,
    negative_prompt: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> PanelPrompt:
    """``"{traits}, {scene}, {shot}, {style}"`` shortened to fit ``max_tokens``, where the
    traits are those of every character present (see :func:`_cast_text`).

    The scene's core action (:func:`core_length`) is what a panel exists for, so everything
    else gives way first, in order: the style's phrases from the end; the characters' trait
    phrases, fairly (:func:`_fair_cut`, never a first phrase); the rest of the scene, words
    from the end; the shot. Only then the core's own words, from the end. When the first
    trait phrases alone are over budget they are kept whole, since CLIP drops the tail of a
    prompt and the traits are at its head.
    """
    phrases = [_phrases(traits) for traits in characters]
    whole = [len(p) for p in phrases]
    firsts = [min(1, n) for n in whole]
    shot = _normalise(plan.shot)
    styles = _phrases(style)
    units = _units(_normalise(plan.scene))

    def prompt_with(kept: Sequence[int], n_scene: int, keep_shot: bool = True, n_style: int = 0) -> str:
        return _join(_cast_text(phrases, kept), _prefix(units, n_scene), shot if keep_shot else "",
                     ", ".join(styles[:n_style]))

    def fits(text: str) -> bool:
        return count_tokens(text) <= max_tokens

    everything = len(units)
    full = prompt_with(whole, everything, True, len(styles))
    kept, n_scene, keep_shot, n_style = whole, everything, True, len(styles)
    if not fits(full):
        n_style = 0
        core = core_length(units, count_tokens)
        if fits(prompt_with(whole, everything)):
            n_style = _most(0, len(styles), lambda n: fits(prompt_with(whole, everything, True, n)))
        elif fits(prompt_with(firsts, everything)):
            kept = _fair_cut(phrases, lambda k: fits(prompt_with(k, everything)), count_tokens)
        elif fits(prompt_with(firsts, core)):
            kept, n_scene = firsts, _most(core, everything, lambda n: fits(prompt_with(firsts, n)))
        else:
            kept, keep_shot = firsts, False
            n_scene = _most(0, everything, lambda n: fits(prompt_with(firsts, n, False)))
    prompt = prompt_with(kept, n_scene, keep_shot, n_style)
    return PanelPrompt(
        caption=plan.caption,
        shot=plan.shot,
        prompt=prompt,
        negative_prompt=negative_prompt.strip(),
        tokens=count_tokens(prompt),
        shortened=prompt != full,
        dropped="".join(units[n_scene:]).strip(),
        traits_dropped=tuple(", ".join(p[n:]) for p, n in zip(phrases, kept)),
    )


def _characters(character: str | Sequence[str]) -> tuple[str, ...]:
    return (character,) if isinstance(character, str) else tuple(character)


def build_prompt(
    plan: PanelPlan,
    character: str | Sequence[str],
    style: str,
    negative_prompt: str,
    count_tokens: Callable[[str], int],
    max_tokens: int = CLIP_MAX_TOKENS,
) -> PanelPrompt:
    """The panel's prompt: traits first, then its scene, shot, style.

    ``character`` is the traits of the one character, or of each character present in
    cast order (left to right in the picture; none: a panel without anyone).
    ``count_tokens(text)`` counts start and end tokens too; the prompt fits when it
    returns at most ``max_tokens``. The caption in the result is the plan's caption,
    whole, even when the prompt carries only part of it.
    """
    return _compose(plan, _characters(character), style, negative_prompt, count_tokens, max_tokens)


def portrait_prompt(
    character: str,
    style: str,
    negative_prompt: str,
    count_tokens: Callable[[str], int],
    max_tokens: int = CLIP_MAX_TOKENS,
) -> PanelPrompt:
    """Panel 0: a front-facing head-and-shoulders portrait, the identity reference.

    The framing takes the shot's place (so it outranks the style when space is short);
    there is no scene detail.
    """
    plan = PanelPlan(PORTRAIT_CAPTION, "", PORTRAIT_FRAMING)
    return _compose(plan, (character,), style, negative_prompt, count_tokens, max_tokens)

