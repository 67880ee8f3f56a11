"""The app's state, typed: what one running studio holds, in one object the factory builds.

``create_app`` builds a :class:`Studio` and keeps it in ``app.extensions["studio"]``;
handlers reach it with :func:`current_studio`, tests with :func:`studio_of`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import Flask, current_app

from animatic_jobs import AnimaticJobs
from backend import Backend
from config import Settings
from events import EventHub, EventTexts
from storage import Store


@dataclass
class Studio:
    """Its settings, the store that owns its boards, the web layer's event hub, the backend
    that draws them, each event's text made once however many pages listen, the slots
    that bound the planner calls and the exports running at once, and the animatics being
    written (their MP4s in DATA_DIR/exports)."""

    settings: Settings
    store: Store
    hub: EventHub
    backend: Backend
    event_texts: EventTexts = field(default_factory=EventTexts)
    planner_slots: threading.BoundedSemaphore = field(init=False)
    export_slots: threading.BoundedSemaphore = field(init=False)
    animatics: AnimaticJobs = field(init=False)

    def __post_init__(self) -> None:
        self.planner_slots = threading.BoundedSemaphore(self.settings.planner_concurrency)
        self.export_slots = threading.BoundedSemaphore(self.settings.export_concurrency)
        self.animatics = AnimaticJobs(self.store.root / "exports", self.export_slots)

    def close(self) -> None:
        """Stop drawing and close the database (tests, embedding; a server just exits)."""
        self.backend.stop()
        self.animatics.close()
        self.store.close()


def studio_of(app: Flask) -> Studio:
    return app.extensions["studio"]


def current_studio() -> Studio:
    """The studio of the app handling this request."""
    return studio_of(current_app)
