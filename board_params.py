"""A board's parameters as one typed value, and the rules for its seeds.

:class:`BoardParams` is everything a board is drawn with (its cast, style, speed mode,
size, seed, identity lock, ...), fixed when the board is made. The store keeps it as JSON
with a schema version (:meth:`BoardParams.to_json`) and reads it back into the type
(:meth:`BoardParams.from_json`); a data directory from before the cast is read with
:meth:`BoardParams.from_legacy` (a cast of one unnamed character). What changes while a
board lives (its panels, their casts, the references drawn for it) is the store's, not
this value's.

Seeds: every seed the studio uses is derived here from the board's seed, so their bounds
are decided in one place. Importing this module does nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from config import MAX_FRAMES

PARAMS_SCHEMA = 2  # 1 (never written with a number): the options dict of the single-character studio
MAX_CHARACTERS = 4
MAX_NAME_CHARS = 60

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


class CastError(ValueError):
    """A cast or a panel's cast that cannot be used; ``field`` names the request field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_cast(characters: tuple[Character, ...], field: str = "characters") -> None:
    """1 to MAX_CHARACTERS characters; names unique (ignoring case) and needed by a cast of
    several, since a panel's cast is found by the names its text mentions."""
    if not 1 <= len(characters) <= MAX_CHARACTERS:
        raise CastError(field, f"A cast has 1 to {MAX_CHARACTERS} characters, not {len(characters)}.")
    seen: set[str] = set()
    for i, character in enumerate(characters):
        where = f"{field}[{i}]"
        if len(characters) > 1 and not character.name:
            raise CastError(f"{where}.name", f"Character {i + 1} needs a name: a cast of several is told apart "
                                             "by name.")
        if character.name and not any(c.isalnum() for c in character.name):
            raise CastError(f"{where}.name", f"Character {i + 1}'s name needs a letter or a digit.")
        if len(character.name) > MAX_NAME_CHARS:
            raise CastError(f"{where}.name", f"Character {i + 1}'s name is longer than {MAX_NAME_CHARS} characters.")
        if character.name.casefold() in seen:
            raise CastError(f"{where}.name", f"Two characters are called {character.name!r}; give each its own name.")
        seen.add(character.name.casefold())
        if not character.traits.strip():
            raise CastError(f"{where}.traits", f"Describe character {i + 1} (face first, then clothing).")


def panel_cast(value: Any, characters: tuple[Character, ...], field: str) -> tuple[str, ...]:
    """A panel's cast from a request: a list of the board's names (any case), [] for no one.
    Returns the names as the cast spells them, in cast order."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise CastError(field, f"{field} must be a list of the cast's names ([] for no one).")
    known = {c.name.casefold(): c.name for c in characters}
    names = set()
    for raw in value:
        name = " ".join(raw.split()).casefold()
        if name not in known:
            allowed = ", ".join(repr(c.name) for c in characters)
            raise CastError(field, f"{field} names {raw[:MAX_NAME_CHARS]!r}, who is not in the cast ({allowed}).")
        if name in names:
            raise CastError(field, f"{field} names {known[name]!r} twice.")
        names.add(name)
    return tuple(c.name for c in characters if c.name.casefold() in names)


# --- The parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class BoardParams:
    characters: tuple[Character, ...]
    style: str
    preset: str
    steps: int
    guidance_scale: float
    ip_adapter_scale: float
    aspect: str
    width: int
    height: int
    seed: int
    identity_lock: bool
    negative_prompt: str
    model: str
    notices: tuple[str, ...] = ()  # how the story was read (fewer panels than asked, a language)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.characters)

    def position(self, name: str) -> int:
        """The 1-based place of ``name`` in the cast."""
        return self.names.index(name) + 1

    def settings_json(self) -> dict:
        """What the API calls a board's ``settings``: how it is drawn, without cast and notices."""
        return {"preset": self.preset, "steps": self.steps, "guidance_scale": self.guidance_scale,
                "ip_adapter_scale": self.ip_adapter_scale, "aspect": self.aspect, "width": self.width,
                "height": self.height, "seed": self.seed, "identity_lock": self.identity_lock,
                "negative_prompt": self.negative_prompt, "model": self.model}

    def to_json(self) -> dict:
        return {"schema": PARAMS_SCHEMA,
                "characters": [{"name": c.name, "traits": c.traits} for c in self.characters],
                "style": self.style, **self.settings_json(), "notices": list(self.notices)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BoardParams":
        """Read what :meth:`to_json` wrote; a ValueError names what is wrong."""
        if data.get("schema") != PARAMS_SCHEMA:
            raise ValueError(f"board parameters of schema {data.get('schema')!r}, expected {PARAMS_SCHEMA}")
        characters = tuple(Character(str(c["name"]), str(c["traits"])) for c in data["characters"])
        return cls(characters=characters, style=str(data["style"]), preset=str(data["preset"]),
                   steps=int(data["steps"]), guidance_scale=float(data["guidance_scale"]),
                   ip_adapter_scale=float(data["ip_adapter_scale"]), aspect=str(data["aspect"]),
                   width=int(data["width"]), height=int(data["height"]), seed=int(data["seed"]),
                   identity_lock=bool(data["identity_lock"]), negative_prompt=str(data["negative_prompt"]),
                   model=str(data.get("model") or ""), notices=tuple(str(n) for n in data.get("notices", ())))

    @classmethod
    def from_legacy(cls, options: Mapping[str, Any], character: str, style: str) -> "BoardParams":
        """A board stored before the cast: its options dict and its one character's traits."""
        return cls.from_json({**options, "schema": PARAMS_SCHEMA, "style": style,
                              "characters": [{"name": "", "traits": character}]})
