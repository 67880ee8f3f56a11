"""A board's parameters as one typed value, and the rules for its seeds.

:class:`BoardParams` is everything a board is drawn with (its cast, style, speed mode,
size, seed, identity lock, ...), fixed when the board is made. The store keeps it as JSON
with a schema version (:meth:`BoardParams.to_json`) and reads it back into the type
(:meth:`BoardParams.from_json`, which reads schema 2 too: migrations.py brings a board
from before the cast that far). What changes while a board lives (its panels, their
casts, the references drawn for it) is the store's, not this value's.

The cast: :class:`Character` and its rules (:func:`read_cast`, :func:`check_cast`,
:func:`panel_cast`) are the one cast of the studio, for boards and for plans alike.

Seeds: every seed the studio uses is derived here from the board's seed, so their bounds
are decided in one place. Importing this module does nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from config import MAX_FRAMES, PRESETS, SpeedPreset
from errors import InputError
from prompt_enhancer import user_text

# 1 (never written with a number): the options dict of the single-character studio, made 2 by
# migrations.py; 2: a cast; 3: the speed preset whole (name, label, steps, scales, distilled
# family) instead of its fields apart.
PARAMS_SCHEMA = 3
MAX_CHARACTERS = 4  # a panel draws at most 4 (prompt_enhancer.CAST_POSITIONS), so a cast has at most 4
MAX_NAME_CHARS = 60
MAX_TRAITS_CHARS = 2000

# --- Seeds --------------------------------------------------------------------------------
#
# Panel n draws with board seed + (n - 1); a drifted panel is redrawn with its seed +
# MAX_FRAMES * attempt (so a retry never reuses another panel's seed); character k's
# generated portrait uses board seed + (k - 1). Board and panel seeds stay at most MAX_SEED,
# so every derived seed stays within 31 bits (torch and other SD tools read them as int32).

SEED_LIMIT = 2**31 - 1  # no seed anywhere is larger
MAX_RETRIES = 10  # config's identity_retries allows 0..10
SEED_SPAN = MAX_FRAMES * 20  # room above a board seed for panel offsets and retries
MAX_SEED = SEED_LIMIT - SEED_SPAN
assert MAX_FRAMES - 1 + MAX_FRAMES * MAX_RETRIES < SEED_SPAN and MAX_CHARACTERS <= MAX_FRAMES


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def panel_seed(board_seed: int, index: int) -> int:
    """Panel ``index`` (1-based, in story order) of a board seeded ``board_seed``."""
    return board_seed + index - 1


def retry_seed(seed: int, attempt: int) -> int:
    """The seed of the ``attempt``-th redraw of a drifted panel first drawn with ``seed``."""
    return seed + MAX_FRAMES * attempt


def portrait_seed(board_seed: int, character: int) -> int:
    """The generated portrait of character ``character`` (1-based). Character 1's is the board
    seed, as it was before there were several."""
    return board_seed + character - 1


# --- The cast -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Character:
    """One of a board's cast. ``name`` is "" only for the one unnamed character of a board
    made with the single ``character`` field; ``traits`` describe the face first, then clothing."""

    name: str
    traits: str


def read_cast(raw: Any, field: str = "characters", *, planning: bool = False) -> tuple[Character, ...]:
    """A cast from a request's JSON: a list of {"name", "traits"} objects, read as text and
    held to :func:`check_cast`. For a plan (``planning``) the list may be missing or empty (a
    premise planned without a cast), traits may be blank (a plan needs only who is who), and
    every character needs a name, since a plan's panels name who is in them."""
    if planning and (raw is None or raw == []):
        return ()
    if not isinstance(raw, list):
        raise InputError(field, f'{field} must be a list of {{"name": ..., "traits": ...}} objects.')
    _check_size(len(raw), field)  # before reading the items: a 5th is refused as a 5th, whatever it holds
    characters = []
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise InputError(where, f'{where} must be an object like {{"name": "Mara", "traits": "..."}}.')
        # Read as any text; check_cast holds the name to MAX_NAME_CHARS, as every name.
        name = user_text(item.get("name"), f"{where}.name", MAX_TRAITS_CHARS, required=planning)
        characters.append(Character(name, user_text(item.get("traits"), f"{where}.traits", MAX_TRAITS_CHARS)))
    check_cast(tuple(characters), field, need_traits=not planning)
    return tuple(characters)


def check_cast(characters: tuple[Character, ...], field: str = "characters", need_traits: bool = True) -> None:
    """1 to MAX_CHARACTERS characters; names unique (ignoring case) and needed by a cast of
    several, since a panel's cast is found by the names its text mentions; traits, unless
    not ``need_traits`` (a plan's cast)."""
    _check_size(len(characters), field)
    seen: set[str] = set()
    for i, character in enumerate(characters):
        where = f"{field}[{i}]"
        if len(characters) > 1 and not character.name:
            raise InputError(f"{where}.name", f"Character {i + 1} needs a name: a cast of several is told apart "
                                              "by name.")
        if character.name and not any(c.isalnum() for c in character.name):
            raise InputError(f"{where}.name", f"Character {i + 1}'s name needs a letter or a digit.")
        if len(character.name) > MAX_NAME_CHARS:
            raise InputError(f"{where}.name", f"Character {i + 1}'s name is longer than {MAX_NAME_CHARS} characters.")
        if character.name.casefold() in seen:
            raise InputError(f"{where}.name", f"Two characters are called {character.name!r}; give each its own name.")
        seen.add(character.name.casefold())
        if need_traits and not character.traits.strip():
            raise InputError(f"{where}.traits", f"Describe character {i + 1} (face first, then clothing).")


def _check_size(count: int, field: str) -> None:
    if not 1 <= count <= MAX_CHARACTERS:
        raise InputError(field, f"A cast has 1 to {MAX_CHARACTERS} characters (the most a panel draws), not {count}.")


def panel_cast(value: Any, characters: tuple[Character, ...], field: str) -> tuple[str, ...]:
    """A panel's cast from a request: a list of the board's names (any case), [] for no one.
    Returns the names as the cast spells them, in cast order."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise InputError(field, f"{field} must be a list of the cast's names ([] for no one).")
    known = {c.name.casefold(): c.name for c in characters}
    names = set()
    for raw in value:
        name = " ".join(raw.split()).casefold()
        if name not in known:
            allowed = ", ".join(repr(c.name) for c in characters)
            raise InputError(field, f"{field} names {raw[:MAX_NAME_CHARS]!r}, who is not in the cast ({allowed}).")
        if name in names:
            raise InputError(field, f"{field} names {known[name]!r} twice.")
        names.add(name)
    return tuple(c.name for c in characters if c.name.casefold() in names)


# --- The parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class BoardParams:
    characters: tuple[Character, ...]
    style: str
    preset: SpeedPreset
    aspect: str
    width: int
    height: int
    seed: int
    identity_lock: bool
    negative_prompt: str
    model: str
    notices: tuple[str, ...] = ()  # how the story was read (fewer panels than asked, a language)
    consistent_look: bool = False  # consistent_look.py; a board stored before it had none

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.characters)

    def position(self, name: str) -> int:
        """The 1-based place of ``name`` in the cast."""
        return self.names.index(name) + 1

    def settings_json(self) -> dict:
        """What the API calls a board's ``settings``: how it is drawn, without cast and notices."""
        preset = self.preset
        return {"preset": preset.name, "steps": preset.steps, "guidance_scale": preset.guidance_scale,
                "ip_adapter_scale": preset.ip_adapter_scale, "aspect": self.aspect, "width": self.width,
                "height": self.height, "seed": self.seed, "identity_lock": self.identity_lock,
                "consistent_look": self.consistent_look, "negative_prompt": self.negative_prompt, "model": self.model}

    def to_json(self) -> dict:
        return {"schema": PARAMS_SCHEMA,
                "characters": [{"name": c.name, "traits": c.traits} for c in self.characters],
                "style": self.style, **self.settings_json(), "preset": self.preset.to_dict(),
                "notices": list(self.notices)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BoardParams":
        """Read what :meth:`to_json` wrote, in this schema or an earlier one; a ValueError
        names what is wrong."""
        schema = data.get("schema")
        if schema == PARAMS_SCHEMA:
            preset = SpeedPreset.from_dict(data["preset"])
        elif schema == 2:
            preset = _preset_of_schema_2(data)
        else:
            raise ValueError(f"board parameters of schema {schema!r}, expected {PARAMS_SCHEMA} or 2")
        characters = tuple(Character(str(c["name"]), str(c["traits"])) for c in data["characters"])
        return cls(characters=characters, style=str(data["style"]), preset=preset, aspect=str(data["aspect"]),
                   width=int(data["width"]), height=int(data["height"]), seed=int(data["seed"]),
                   identity_lock=bool(data["identity_lock"]), negative_prompt=str(data["negative_prompt"]),
                   model=str(data.get("model") or ""), notices=tuple(str(n) for n in data.get("notices", ())),
                   consistent_look=bool(data.get("consistent_look", False)))


def _preset_of_schema_2(data: Mapping[str, Any]) -> SpeedPreset:
    """The preset of a board stored with its fields apart. Steps and scales are the stored
    ones (what the board was drawn with); the label and the distilled family were not stored,
    so they are the named preset's (a lightning board of then drew with the default family
    unless the studio was set otherwise)."""
    name = str(data["preset"])
    known = PRESETS.get(name)
    return SpeedPreset(name, known.label if known else name, int(data["steps"]), float(data["guidance_scale"]),
                       float(data["ip_adapter_scale"]), known.family if known else None)
