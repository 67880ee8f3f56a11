"""The event hub: what the page hears about its boards, owned by the web layer.

The app builds one hub and hands it to its backend; backends publish facts into it
(a panel saved, a board's status, progress), browsers read them through the app's event
stream. Publishing costs one append and one notify, however many browsers listen.

A live preview (kind ``preview``) is kept only until it is superseded: by the panel's next
preview, its frame event (the panel saved or failed) or the board's next status. A page that
reads slowly then skips the previews it missed instead of receiving a queue of them, and the
drawing never waits for any page.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Callable


class EventHub:
    """A bounded log of events per storyboard, with ids a reconnecting browser resumes from."""

    def __init__(self, keep: int = 2000):
        self.boot = secrets.token_hex(3)  # ids from before a restart are recognised as stale
        self._keep = keep
        self._cond = threading.Condition()
        self._seq = 0
        self._logs: dict[str, list[tuple[int, str, dict]]] = {}

    def publish(self, board_id: str, kind: str, data: dict) -> None:
        with self._cond:
            self._seq += 1
            log_ = self._logs.setdefault(board_id, [])
            if kind in SUPERSEDE_PREVIEWS:
                log_[:] = [e for e in log_ if not _superseded(e, kind, data)]
            log_.append((self._seq, kind, data))
            del log_[: -self._keep]
            self._cond.notify_all()

    def event_id(self, seq: int) -> str:
        return f"{self.boot}-{seq}"

    def parse_id(self, last_event_id: str | None) -> int:
        boot, _, seq = (last_event_id or "").partition("-")
        # isdigit() alone accepts '²' and '١٢', which int() refuses or reads as another number.
        return int(seq) if boot == self.boot and seq.isascii() and seq.isdigit() else 0

    def wait(self, board_id: str, after: int, timeout: float) -> list[tuple[int, str, dict]]:
        """Events of ``board_id`` newer than ``after``; waits up to ``timeout`` for one.

        Every publish wakes every listener; one whose board has nothing new waits on, so
        listeners of quiet boards cost nothing per event of the board being drawn.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                events = [e for e in self._logs.get(board_id, ()) if e[0] > after]
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                self._cond.wait(remaining)

    def forget(self, board_id: str) -> None:
        with self._cond:
            self._logs.pop(board_id, None)


# The kinds after which a panel's earlier preview is of no use.
SUPERSEDE_PREVIEWS = ("preview", "frame", "status")


def _superseded(event: tuple[int, str, dict], kind: str, data: dict) -> bool:
    _, old_kind, old = event
    if old_kind != "preview":
        return False
    return kind == "status" or old.get("frame_id") == data.get("frame_id")


class EventTexts:
    """Each event's text for the page, made once however many pages listen (the newest
    ``keep`` kept; an older one is made again if a slow listener still asks)."""

    def __init__(self, keep: int = 4096):
        self._keep = keep
        self._lock = threading.Lock()
        self._texts: dict[int, str] = {}

    def get(self, seq: int, make: Callable[[], str]) -> str:
        with self._lock:
            text = self._texts.get(seq)
            if text is None:
                text = self._texts[seq] = make()
                while len(self._texts) > self._keep:
                    self._texts.pop(next(iter(self._texts)))
            return text
