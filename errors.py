"""One error for input that cannot be used, whoever finds it.

Every validator (the story splitter, the cast, the planner, a job's payload, the web form)
raises :class:`InputError` with the request field it is about; the HTTP layer turns it into
``{"error": message, "field": field}`` with its status in one place. This module imports
nothing, so every layer can raise it.
"""

from __future__ import annotations


class InputError(ValueError):
    """``field`` names the request field (``characters[1].name``; None for the request as a
    whole); ``status`` is the HTTP status the web layer answers with."""

    def __init__(self, field: str | None, message: str, status: int = 400):
        super().__init__(message)
        self.field, self.status = field, status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def within(self, where: str) -> "InputError":
        """The same error about a field inside ``where`` (``name`` inside ``characters[1]``)."""
        field = f"{where}.{self.field}" if self.field else where
        return InputError(field, self.message, self.status)
