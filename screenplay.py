"""A Fountain screenplay read into storyboard plans: one :class:`Scene` a scene heading, each
with a ``prompt_enhancer.StoryPlan`` and its cast.

The parsing is screenplain's (``screenplain.parsers.fountain``, the parser behind
screenplain.com); this module turns its paragraphs into panels:

- A scene is everything under a scene heading (``INT. KITCHEN - NIGHT``); text before the
  first heading is a scene without one. The heading's INT./EXT., place and time of day go
  into each panel's scene text (what the prompt describes), never into the caption.
- A beat is an action paragraph with the dialogue that follows it; dialogue before any
  action is a beat of its own. A beat is a panel: its action is the caption and its speech
  the panel's dialogue line ("Mara: (whispering) Where are you?"); a beat of dialogue alone
  shows its speech as the caption. More beats than ``max_frames``: neighbours are joined.
- CHARACTER cues are the cast, in the order they first speak; a name the user's cast
  already has (ignoring case) is that character, with its traits; a new one has no traits
  yet. A scene with more speakers than a board draws keeps those who speak most.
- The words stay as written, in any language.

Where screenplain reads the spec too narrowly for a storyboard, this module reads on
(see :func:`_paragraphs`): a cue in a script without capitals (李明) is a cue; a capitalised
sentence over a line of action ("THE DOOR BURSTS OPEN.") is action, not a cue; FADE IN:,
FADE OUT. and THE END are no panels; and a first paragraph with a colon is a title page only
when its keys are the spec's.

Pure functions; imports neither Flask nor the store.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Sequence

from screenplain import types as fountain
from screenplain.parsers.fountain import parse

from board_params import MAX_CHARACTERS, MAX_NAME_CHARS, Character
from config import MAX_FRAMES
from errors import InputError
from planner import MAX_USER_TEXT
from prompt_enhancer import PanelPlan, StoryPlan, _groups, mentions, shorten, shot_for

# The title page keys of the Fountain spec (fountain.io/syntax#title-page), as screenplain
# capitalises them. A first paragraph with other "Key: value" lines is the script's start.
TITLE_KEYS = frozenset({"Title", "Credit", "Author", "Authors", "Source", "Draft date", "Date", "Contact",
                        "Copyright", "Notes", "Revision", "Contact info", "Format"})
# What a heading's prefix says, in the words the prompt gets.
SETTINGS = {"INT": "interior", "EXT": "exterior", "EST": "establishing", "INT./EXT": "interior and exterior",
            "INT/EXT": "interior and exterior", "I/E": "interior and exterior"}
_HEADING = re.compile(r"^(INT\.?/EXT|INT/EXT|I/E|INT|EXT|EST)\.?\s+(.*)$", re.IGNORECASE)
# A cue's extension (V.O., O.S., CONT'D) and dual-dialogue caret are not part of the name.
_EXTENSION = re.compile(r"\s*(\(.*\)\s*)*\^?\s*$")


@dataclass(frozen=True)
class Scene:
    """One scene: its heading as written ("" before the first), the heading read (setting in
    words, place, time of day), its cast and its panels."""

    number: int
    heading: str
    setting: str
    location: str
    time: str
    cast: tuple[Character, ...]
    plan: StoryPlan


@dataclass(frozen=True)
class Screenplay:
    title: str
    scenes: tuple[Scene, ...]


@dataclass
class _Beat:
    action: list[str]
    speeches: list[tuple[str, str]]  # (name, what they say)


def read_screenplay(text: str, cast: Sequence[Character] = (), field: str = "text",
                    max_frames: int = MAX_FRAMES) -> Screenplay:
    """``text`` (Fountain) read into scenes. ``cast``: the user's characters, whose traits a
    cue of the same name keeps. Raises InputError naming ``field`` when the text has neither
    a scene heading nor a character's line: prose, or not a screenplay at all."""
    title_page, paragraphs = _paragraphs(text)
    if not any(isinstance(p, (fountain.Slug, fountain.Dialog, fountain.DualDialog)) for p in paragraphs):
        raise InputError(field, "This is not a screenplay: it has no scene heading (INT. KITCHEN - NIGHT) and "
                                "no character's line (a NAME in capitals, the line under it). Write it in "
                                "Fountain, or use the story field for prose.")
    scenes: list[tuple[str, list]] = []
    for paragraph in paragraphs:
        if isinstance(paragraph, fountain.Slug):
            scenes.append((str(paragraph.line).strip(), []))
        elif not scenes:
            scenes.append(("", [paragraph]))
        else:
            scenes[-1][1].append(paragraph)
    known = {character.name.casefold(): character for character in cast if character.name}
    read = tuple(_scene(n, heading, body, known, max_frames) for n, (heading, body) in enumerate(scenes, start=1))
    title = " ".join(title_page.get("Title", [])).strip() or next((s.heading for s in read if s.heading), "")
    return Screenplay(title or "Screenplay", read)


def _paragraphs(text: str) -> tuple[dict, list]:
    """screenplain's title page and paragraphs of ``text``, read further where it stops short."""
    parsed = parse(io.StringIO(text))
    if parsed.title_page and not set(parsed.title_page) <= TITLE_KEYS:
        # "Morning: the sun rises." opening a scene is action, not a title page: a blank first
        # line tells screenplain there is none.
        parsed = parse(io.StringIO("\n" + text))
    paragraphs = [_reread(p) for p in parsed.paragraphs]
    return parsed.title_page, [p for p in paragraphs if p is not None]


def _reread(paragraph):
    """A paragraph as a storyboard reads it: a capitalised line that screenplain keeps as
    action or dialogue but a script means otherwise is read again; None: not for a panel."""
    if isinstance(paragraph, fountain.Dialog) and not _could_be_name(_EXTENSION.sub("", str(paragraph.character))):
        # "THE DOOR BURSTS OPEN." over a line of action is capitalised action, not a cue.
        return fountain.Action([paragraph.character, *(line for _, line in paragraph.blocks)])
    if isinstance(paragraph, fountain.Action) and len(paragraph.lines) == 1 and _is_fade(str(paragraph.lines[0])):
        return None  # FADE IN:, FADE OUT., THE END: transitions screenplain does not know
    return _uncased_cue(paragraph)


def _could_be_name(cue: str) -> bool:
    cue = cue.strip()
    return 0 < len(cue) <= MAX_NAME_CHARS and not cue.endswith((".", "!", "?", "…", ":", ","))


def _is_fade(line: str) -> bool:
    line = line.strip()
    if any(c.islower() for c in line) or not any(c.isupper() for c in line):
        return False
    return line.endswith(":") or line.startswith("FADE ") or line.rstrip(".") in ("THE END", "END", "CONTINUED")


def _uncased_cue(paragraph):
    """screenplain takes a cue for a line "entirely in uppercase" (the spec's words); a name in
    a script without capitals (李明, محمد) never is, and its speech would read as action. Such
    a short first line with no punctuation and lines under it is a cue here."""
    if not isinstance(paragraph, fountain.Action) or paragraph.centered or len(paragraph.lines) < 2:
        return paragraph
    first = str(paragraph.lines[0]).strip()
    if (not first or len(first) > MAX_NAME_CHARS or any(c.isupper() or c.islower() for c in first)
            or not any(c.isalpha() for c in first) or re.search(r"[^\w\s()'’.-]", _EXTENSION.sub("", first))):
        return paragraph
    return fountain.Dialog(first, [str(line).strip() for line in paragraph.lines[1:]])


def _scene(number: int, heading: str, body: list, known: dict[str, Character], max_frames: int) -> Scene:
    setting, location, time = read_heading(heading)
    beats: list[_Beat] = []
    for paragraph in body:
        if isinstance(paragraph, fountain.Action):
            action = " ".join(" ".join(str(line).split()) for line in paragraph.lines).strip()
            if action:
                beats.append(_Beat([action], []))
        elif isinstance(paragraph, (fountain.Dialog, fountain.DualDialog)):
            if not beats:
                beats.append(_Beat([], []))
            dialogs = (paragraph.left, paragraph.right) if isinstance(paragraph, fountain.DualDialog) else (paragraph,)
            beats[-1].speeches.extend(_speech(dialog) for dialog in dialogs)
        # Transitions, sections, synopses and page breaks are for the reader, not the picture.
    names = _cast_names(beats)
    cast = tuple(known.get(name.casefold(), Character(name, "")) for name in names)
    names = [character.name for character in cast]
    if len(beats) > max_frames:
        beats = [_Beat([a for b in group for a in b.action], [s for b in group for s in b.speeches])
                 for group in _groups(beats, max_frames)]
    where = ", ".join(part for part in (setting, location.lower(), time.lower()) if part)
    panels = tuple(_panel(beat, i, len(beats), names, where) for i, beat in enumerate(beats, start=1))
    if not panels:  # a heading with nothing under it: the place itself
        place = heading or "An empty scene"
        panels = (PanelPlan(place, f"{where}, empty" if where else place, shot_for(1, 1)),)
    notices = ()
    left_out = [name for name in _cast_names(beats, limit=None) if name.casefold() not in {n.casefold() for n in names}]
    if left_out:
        notices = (f"A board draws at most {MAX_CHARACTERS} characters: {', '.join(left_out)} (who speak least) "
                   "are left out of the cast.",)
    return Scene(number, heading, setting, location, time, cast, StoryPlan(panels, notices))


def read_heading(heading: str) -> tuple[str, str, str]:
    """A scene heading's setting in words, place and time of day: "INT. KITCHEN - NIGHT" is
    ("interior", "KITCHEN", "NIGHT"). A forced heading (".FLASHBACK") is all place."""
    match = _HEADING.match(heading.strip())
    setting, rest = (SETTINGS[match.group(1).upper()], match.group(2)) if match else ("", heading.strip())
    parts = re.split(r"\s+[-–—]\s+", rest.strip())  # the time of day after the last dash
    if len(parts) == 1:
        return setting, parts[0], ""
    return setting, " - ".join(parts[:-1]), parts[-1]


def _speech(dialog) -> tuple[str, str]:
    """A character's dialogue as (name, its lines with their parentheticals in place)."""
    return cue_name(str(dialog.character)), " ".join(" ".join(str(line).split()) for _, line in dialog.blocks).strip()


def cue_name(cue: str) -> str:
    """The character a cue names: without its extension ("MARA (V.O.)" is Mara), in capitals
    only as a cue is written ("JEAN-LUC" is Jean-Luc); a name with small letters (a forced
    @McCLANE) as written."""
    name = " ".join(_EXTENSION.sub("", cue).split())
    return name.title() if not any(c.islower() for c in name) else name


def _cast_names(beats: list[_Beat], limit: int | None = MAX_CHARACTERS) -> list[str]:
    """Who speaks, in the order they first do; past ``limit``, those who speak least go."""
    lines: dict[str, int] = {}
    spelled: dict[str, str] = {}
    for beat in beats:
        for name, _ in beat.speeches:
            spelled.setdefault(name.casefold(), name)
            lines[name.casefold()] = lines.get(name.casefold(), 0) + 1
    order = list(spelled)
    if limit is not None and len(order) > limit:
        kept = set(sorted(order, key=lambda key: (-lines[key], order.index(key)))[:limit])
        order = [key for key in order if key in kept]
    return [spelled[key] for key in order]


def _panel(beat: _Beat, index: int, total: int, names: list[str], where: str) -> PanelPlan:
    action = " ".join(beat.action)
    speech = " ".join(f"{name}: {line}" for name, line in beat.speeches)
    speakers = {name.casefold() for name, _ in beat.speeches}
    cast = tuple(name for name in names if name.casefold() in speakers or mentions(action, name))
    caption = action or speech
    seen = action or f"{', '.join(n for n in names if n.casefold() in speakers) or 'Someone'} talking"
    scene = f"{seen.rstrip(' .')}. {where.capitalize()}" if where else seen
    return PanelPlan(shorten(caption, MAX_USER_TEXT), shorten(scene, MAX_USER_TEXT), shot_for(index, total), cast,
                     shorten(speech, MAX_USER_TEXT) if action else "")
