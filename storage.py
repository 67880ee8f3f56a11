"""Storyboards, panels and jobs in SQLite; images as PNG files in the data directory.

Everything a user made survives a crash: each finished panel's PNG is written to a
temporary name, flushed and renamed before the database row that points at it is
committed, so the database never references a half-written file. One connection is
shared under a lock (SQLite in WAL mode); every call is a short transaction. Opening
a data directory upgrades its schema by the numbered steps of ``migrations``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path

import migrations
from board_params import BoardParams

log = logging.getLogger(__name__)


class Status(StrEnum):
    """The words boards, panels and jobs share (a StrEnum: equal to the stored strings)."""

    PENDING = "pending"  # a panel not drawn and not waiting (after a cancel or a restart)
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"  # the studio stopped while drawing


ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
FINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELED, Status.INTERRUPTED})
INTERRUPTED_MESSAGE = "The studio stopped while drawing; finished panels are kept. Resume to draw the rest."
SET_ASIDE_MESSAGE = "Set aside: the studio stopped twice while drawing this storyboard."
BOARD_ID = re.compile(r"^[0-9a-f]{12}$")
# What a take keeps of the layout it was drawn with (what ran says more: factor, adapter, steps).
LAYOUT_KEYS = ("kind", "strength", "poses", "file")
KEEP = object()  # redraw: the panel keeps its layout

class QueueFull(Exception):
    """The queue already holds ``limit`` jobs; nothing was stored."""

    def __init__(self, limit: int):
        super().__init__(f"{limit} storyboards are already waiting")
        self.limit = limit


class Conflict(Exception):
    """The board or panel is not in a state that allows this; nothing was changed."""


class DatabaseDamaged(Exception):
    """The database file cannot be used; the message names it and says what to do."""


class DatabaseTooNew(DatabaseDamaged):
    """The database is whole but from a newer studio, whose schema this one cannot read or
    upgrade; like damage, it stops the start with the file's name (and is never written)."""


class DataDirInUse(Exception):
    """Another studio process holds the data directory (see :func:`lock_data_dir`)."""


LOCK_FILE = "studio.lock"


def lock_data_dir(data_dir: Path):
    """Hold ``data_dir`` for this process (an OS lock, ``filelock``: dropped when the process
    dies, even by kill -9) and write its pid into the lock file for the next one to name;
    raise :class:`DataDirInUse` when another process holds it. Release it (or use it as a
    context manager) when the studio stops."""
    from filelock import FileLock, Timeout

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = path.read_text(encoding="ascii", errors="replace").strip()
        process = f"process {holder}" if holder.isascii() and holder.isdigit() else "another process"
        raise DataDirInUse(
            f"Another studio ({process}) is using the data folder {data_dir.resolve()}: stop it first, "
            "or give this one another folder (--data-dir).") from None
    # flock belongs to the lock's own descriptor: writing through another one keeps it.
    path.write_text(f"{os.getpid()}\n", encoding="ascii")
    return lock


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, data_dir: Path | str, takes_per_panel: int | None = None):
        """``takes_per_panel``: most takes a panel keeps (None: all); a new take past it
        removes the oldest unchosen ones, their files too."""
        self.root = Path(data_dir)
        self.takes_per_panel = takes_per_panel
        self.boards_dir = self.root / "boards"
        self.boards_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.path = self.root / "studio.sqlite3"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._open()
        except BaseException as error:
            self._db.close()
            if isinstance(error, sqlite3.DatabaseError):
                raise DatabaseDamaged(
                    f"The studio's database {self.path} is damaged ({error}). It was not changed. To start "
                    f"afresh, stop the studio and move that file aside (with its -wal and -shm files, if any); "
                    f"the panels' images stay in {self.boards_dir}."
                ) from error
            raise

    def _open(self) -> None:
        # A damaged file is refused before anything is written to it.
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(problems[:3]))
        self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives any crash of the process (kill -9 included); only a
        # power cut can lose the last commits, and then a saved PNG is merely unreferenced.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._db.execute("PRAGMA foreign_keys=ON")

    def _migrate(self) -> None:
        """Bring the schema to this studio's version, one migration a transaction; the
        version is read inside each, so two studios opening one database never both apply
        a migration. Foreign keys are off meanwhile (as SQLite's way of rebuilding a table
        needs) and checked before each commit instead."""
        self._db.execute("PRAGMA foreign_keys=OFF")
        latest = len(migrations.MIGRATIONS)
        while True:
            with self._tx() as db:
                version = migrations.version(db)
                if version > latest:
                    raise DatabaseTooNew(
                        f"The studio's database {self.path} was written by a newer studio (schema version "
                        f"{version}; this one knows up to {latest}). It was not changed. Run the newer studio, "
                        f"or start this one with another data directory."
                    )
                if version == latest:
                    return
                migrations.MIGRATIONS[version](db)
                if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise sqlite3.IntegrityError(f"migration {version + 1} left rows pointing at nothing")
                db.execute(f"PRAGMA user_version = {version + 1}")
            log.info("database %s upgraded to schema version %d", self.path, version + 1)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- recovery --

    def recover(self, interrupt_running: bool = True) -> list[str]:
        """After a restart: running jobs become interrupted (unless they run elsewhere, on
        Redis workers); stray temp files and the folders of boards that were never stored
        (a failed insert) are removed."""
        for tmp in self.boards_dir.glob("*/*.tmp"):
            tmp.unlink(missing_ok=True)
        known = {row[0] for row in self._query("SELECT id FROM storyboards")}
        for folder in self.boards_dir.iterdir():
            if folder.name not in known and (BOARD_ID.match(folder.name) or folder.name.startswith(".trash-")):
                _remove_folder(folder)
        if not interrupt_running:
            return []
        with self._tx() as db:
            rows = db.execute("SELECT id, storyboard_id, starts FROM jobs WHERE status = 'running'").fetchall()
            for row in rows:
                # A job that has now taken the studio down twice is set aside instead of looping.
                status, error = ((Status.FAILED, SET_ASIDE_MESSAGE) if row["starts"] >= 2
                                 else (Status.INTERRUPTED, INTERRUPTED_MESSAGE))
                self._end_job(db, dict(row), status, error, Status.PENDING)
        return [row["storyboard_id"] for row in rows]

    # -- storyboards --

    def create_board(self, *, title: str, story: str, params: BoardParams, panels: list[dict],
                     references: dict[int, bytes], queue_limit: int | None = None, fps: float | None = None) -> str:
        """Store a new board with its planned panels and queue its job; returns the id.

        ``panels``: {"id", "caption", "scene", "shot", "seed", "cast" (names), "dialogue"?, "duration"?
        (seconds; None: the reading-time default), "layout"? ((layout JSON, its PNG): the file is
        written beside the panel's images)} each; ``fps``: the board's frame rate (None: the default);
        ``references``: the uploaded face of each character (1-based) that has one. With
        ``queue_limit``, raises QueueFull when that many jobs already wait. The count and
        the insert share one transaction, so concurrent requests cannot overshoot it.
        """
        board_id = secrets.token_hex(6)
        folder = self.boards_dir / board_id
        folder.mkdir()
        try:
            files = {}
            for character, png in references.items():
                files[character] = reference_name(character)
                write_atomic(folder / files[character], png)
            panels = [{**panel, "layout": self._write_layout(board_id, panel["id"], panel.get("layout"))}
                      for panel in panels]
            self._insert_board(board_id, title, story, params, panels, files, queue_limit, fps)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # nothing is left of a board that was not stored
            raise
        return board_id

    def _insert_board(self, board_id, title, story, params: BoardParams, panels, files: dict[int, str],
                      queue_limit, fps: float | None) -> None:
        with self._tx() as db:
            self._check_room(db, queue_limit)
            db.execute(
                "INSERT INTO storyboards (id, title, status, created_at, story, params)"
                " VALUES (?, ?, 'queued', ?, ?, ?)",
                (board_id, title, now(), story, json.dumps(params.to_json())),
            )
            if fps is not None:  # the column's default otherwise, as for a board posted without one
                db.execute("UPDATE storyboards SET fps = ? WHERE id = ?", (fps, board_id))
            for character, name in files.items():
                db.execute("INSERT INTO board_references (storyboard_id, character, kind, file)"
                           " VALUES (?, ?, 'uploaded', ?)", (board_id, character, name))
            for panel in panels:
                db.execute(
                    "INSERT INTO frames (storyboard_id, id, position, status, caption, scene, shot, seed, cast_names,"
                    " dialogue, duration, layout) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (board_id, panel["id"], panel["id"], panel["caption"], panel.get("scene"), panel["shot"],
                     panel["seed"], json.dumps(list(panel["cast"])), panel.get("dialogue") or None,
                     panel.get("duration"), _json(panel.get("layout"))),
                )
            self._add_job(db, board_id, "board")

    def _add_job(self, db, board_id: str, kind: str, frame_id: int | None = None, preset: str | None = None,
                 strength: float | None = None) -> int:
        cursor = db.execute("INSERT INTO jobs (storyboard_id, kind, frame_id, status, created_at, preset, strength)"
                            " VALUES (?, ?, ?, 'queued', ?, ?, ?)", (board_id, kind, frame_id, now(), preset, strength))
        return cursor.lastrowid

    def board(self, board_id: str) -> dict | None:
        """The board with its references, panels and takes as one snapshot: a delete or a new
        take between its reads would give a board without panels, or a panel whose take is
        missing."""
        with self._lock:  # the one connection's: no write comes between these reads
            return self._read_board(board_id)

    def _read_board(self, board_id: str) -> dict | None:
        rows = self._query("SELECT * FROM storyboards WHERE id = ?", (board_id,))
        if not rows:
            return None
        board = dict(rows[0])
        board["params"] = BoardParams.from_json(json.loads(board["params"]))
        board["references"] = {row["character"]: {"kind": row["kind"], "file": row["file"]} for row in self._query(
            "SELECT character, kind, file FROM board_references WHERE storyboard_id = ?", (board_id,))}
        takes: dict[int, list[dict]] = {}
        for row in self._query("SELECT * FROM takes WHERE storyboard_id = ? ORDER BY frame_id, id", (board_id,)):
            takes.setdefault(row["frame_id"], []).append(self._take(row))
        board["frames"] = [{**self._frame(row), "takes": takes.get(row["id"], [])} for row in self._query(
            "SELECT * FROM frames WHERE storyboard_id = ? ORDER BY position", (board_id,))]
        return board

    def board_status(self, board_id: str) -> dict | None:
        rows = self._query("SELECT status, error FROM storyboards WHERE id = ?", (board_id,))
        return dict(rows[0]) if rows else None

    @staticmethod
    def _frame(row: sqlite3.Row) -> dict:
        frame = dict(row)
        frame["identity"] = json.loads(frame["identity"]) if frame["identity"] else None
        frame["cast"] = tuple(json.loads(frame.pop("cast_names")))
        frame["traits_dropped"] = json.loads(frame["traits_dropped"]) if frame["traits_dropped"] else None
        frame["layout"] = json.loads(frame["layout"]) if frame["layout"] else None
        return frame

    @staticmethod
    def _take(row: sqlite3.Row) -> dict:
        take = {key: row[key] for key in ("id", "parent", "seed", "mode", "image_file", "seconds", "created_at")}
        take["settings"] = json.loads(row["settings"]) if row["settings"] else None
        take["identity"] = json.loads(row["identity"]) if row["identity"] else None
        take["layout"] = json.loads(row["layout"]) if row["layout"] else None
        return take

    def reference_pngs(self, board: dict) -> dict[int, bytes]:
        """The reference PNG of each character (1-based) of ``board`` that has one on disk."""
        pngs = {}
        for character, reference in board["references"].items():
            path = self.file_path(board["id"], reference["file"])
            if path is not None:
                pngs[character] = path.read_bytes()
        return pngs

    def boards(self) -> list[dict]:
        rows = self._query(
            "SELECT s.id, s.title, s.status, s.created_at, s.params,"
            " (SELECT COUNT(*) FROM frames f WHERE f.storyboard_id = s.id) AS frames_total,"
            " (SELECT COUNT(*) FROM frames f WHERE f.storyboard_id = s.id AND f.status = 'done') AS frames_done,"
            " (SELECT f.id FROM frames f WHERE f.storyboard_id = s.id AND f.image_file IS NOT NULL"
            "  ORDER BY f.position LIMIT 1) AS thumb_frame,"
            " (SELECT f.version FROM frames f WHERE f.storyboard_id = s.id AND f.image_file IS NOT NULL"
            "  ORDER BY f.position LIMIT 1) AS thumb_version"
            " FROM storyboards s ORDER BY s.created_at DESC, s.rowid DESC"
        )
        return [{**dict(row), "params": BoardParams.from_json(json.loads(row["params"]))} for row in rows]

    def delete_board(self, board_id: str) -> bool:
        """Remove the board and every file in its folder, stray ones included.

        The folder is first renamed aside, so a failure leaves either the whole board or
        a trash folder that the next start removes; never a row without files or the reverse.
        """
        folder = self.boards_dir / board_id
        trash = self.boards_dir / f".trash-{board_id}"
        moved = folder.exists() or folder.is_symlink()
        if moved:
            os.replace(folder, trash)
        try:
            with self._tx() as db:
                deleted = db.execute("DELETE FROM storyboards WHERE id = ?", (board_id,)).rowcount
        except BaseException:
            if moved:
                os.replace(trash, folder)
            raise
        if moved:
            _remove_folder(trash)
        return bool(deleted)

    def set_fps(self, board_id: str, fps: float) -> bool:
        """The board's frame rate (a timing.FRAME_RATES key); False: no such board."""
        with self._tx() as db:
            return bool(db.execute("UPDATE storyboards SET fps = ? WHERE id = ?", (fps, board_id)).rowcount)

    def edit_panel(self, board_id: str, frame_id: int, **changes) -> bool:
        """Change what a panel shows without drawing it again, in one transaction: its
        ``duration`` (seconds; None: the reading-time default) and its ``dialogue`` (None:
        none); and its ``layout`` for its next drawing ((its JSON, its PNG), or None: none; the
        takes keep the one they were drawn with; Conflict while the panel is being drawn). False: no such panel."""
        layout = changes.pop("layout", KEEP)
        unknown = set(changes) - {"duration", "dialogue"}
        if unknown:
            raise TypeError(f"edit_panel cannot change {sorted(unknown)}")
        columns = ", ".join(f"{name} = ?" for name in changes)

        def edit(db) -> bool:
            return not changes or bool(db.execute(f"UPDATE frames SET {columns} WHERE storyboard_id = ? AND id = ?",
                                                  (*changes.values(), board_id, frame_id)).rowcount)

        if layout is not KEEP:
            if not self._query("SELECT 1 FROM frames WHERE storyboard_id = ? AND id = ?", (board_id, frame_id)):
                return False
            self._replace_layout(board_id, frame_id, layout, edit)
            return True
        if not changes:
            return bool(self._query("SELECT 1 FROM frames WHERE storyboard_id = ? AND id = ?", (board_id, frame_id)))
        with self._tx() as db:
            return edit(db)

    def set_order(self, board_id: str, frame_ids: list[int]) -> None:
        with self._tx() as db:
            for position, frame_id in enumerate(frame_ids, start=1):
                db.execute("UPDATE frames SET position = ? WHERE storyboard_id = ? AND id = ?",
                           (position, board_id, frame_id))

    # -- frames --

    def update_frame(self, board_id: str, frame_id: int, **fields) -> None:
        self.update_frames(board_id, {frame_id: fields})

    def update_frames(self, board_id: str, changes: dict[int, dict]) -> None:
        """Change several frames in one transaction: {frame id: {column: value}}."""
        with self._tx() as db:
            for frame_id, fields in changes.items():
                if fields.get("identity") is not None:
                    fields = {**fields, "identity": json.dumps(fields["identity"])}
                columns = ", ".join(f"{name} = ?" for name in fields)
                db.execute(f"UPDATE frames SET {columns} WHERE storyboard_id = ? AND id = ?",
                           (*fields.values(), board_id, frame_id))

    def panel_prompts(self, board_id: str, prompts: dict[int, tuple]) -> None:
        """The prompts a job built for its panels: {frame id: (prompt, negative, scene words
        cut, {name: trait phrases cut} or None)}."""
        with self._tx() as db:
            for frame_id, (prompt, negative, dropped, traits_dropped) in prompts.items():
                db.execute("UPDATE frames SET prompt = ?, negative_prompt = ?, dropped = ?, traits_dropped = ?,"
                           " error = NULL WHERE storyboard_id = ? AND id = ?",
                           (prompt, negative, dropped, json.dumps(traits_dropped) if traits_dropped else None,
                            board_id, frame_id))

    def panel_started(self, board_id: str, frame_id: int) -> None:
        self.update_frame(board_id, frame_id, status=Status.RUNNING)

    def panel_failed(self, board_id: str, frame_id: int, error: str) -> None:
        self.update_frame(board_id, frame_id, status=Status.FAILED, error=error)

    def save_take(self, board_id: str, frame_id: int, png: bytes, *, seed: int, mode: str | None,
                  ran: dict | None = None, parent: int | None = None, identity: dict | None = None,
                  attempts: int = 1, seconds: float | None = None) -> int:
        """A new take of the panel, which the panel then shows; returns its id.

        The PNG is written first (atomically); the take, the panel pointing at it and the
        pruning of the oldest unchosen takes past ``takes_per_panel`` are one transaction;
        the pruned takes' files go after it. A file's name carries the panel's version,
        which only grows, so no two takes share a file.
        """
        version = self._query("SELECT version FROM frames WHERE storyboard_id = ? AND id = ?",
                              (board_id, frame_id))[0]["version"]
        name = f"frame-{frame_id}-v{version + 1}.png"
        write_atomic(self.boards_dir / board_id / name, png)
        # The layout it was drawn with, as what ran says (drawing.py puts the layout's file there).
        layout = (ran or {}).get("layout")
        layout = {key: layout[key] for key in LAYOUT_KEYS if key in layout} if layout else None
        with self._tx() as db:
            take = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM takes WHERE storyboard_id = ? AND frame_id = ?",
                              (board_id, frame_id)).fetchone()[0]
            db.execute("INSERT INTO takes (storyboard_id, frame_id, id, parent, seed, mode, settings, image_file,"
                       " identity, seconds, created_at, layout) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (board_id, frame_id, take, parent, seed, mode, json.dumps(ran) if ran else None, name,
                        json.dumps(identity) if identity is not None else None, seconds, now(), _json(layout)))
            db.execute("UPDATE frames SET status = 'done', error = NULL, attempts = ? WHERE storyboard_id = ?"
                       " AND id = ?", (attempts, board_id, frame_id))
            self._show_take(db, board_id, frame_id, take)
            pruned = self._prune_takes(db, board_id, frame_id)
        self._remove_files(board_id, pruned)
        return take

    def choose_take(self, board_id: str, frame_id: int, take: int) -> bool:
        """Show take ``take`` on the panel (False: no such take). A panel that failed or was
        never finished shows it as done; one being drawn stays so, and its new take, when
        it comes, is shown instead."""
        with self._tx() as db:
            if not self._show_take(db, board_id, frame_id, take):
                return False
            db.execute("UPDATE frames SET status = 'done', error = NULL WHERE storyboard_id = ? AND id = ?"
                       " AND status NOT IN ('queued', 'running')", (board_id, frame_id))
            self._refresh(db, board_id)
        return True

    def delete_take(self, board_id: str, frame_id: int, take: int) -> bool:
        """Remove an unchosen take and its file (False: no such take; Conflict: it is chosen)."""
        with self._tx() as db:
            row = db.execute("SELECT t.image_file, t.layout, f.take FROM takes t JOIN frames f ON f.storyboard_id ="
                             " t.storyboard_id AND f.id = t.frame_id WHERE t.storyboard_id = ? AND t.frame_id = ?"
                             " AND t.id = ?", (board_id, frame_id, take)).fetchone()
            if row is None:
                return False
            if row["take"] == take:
                raise Conflict("The panel shows this take; choose another first.")
            db.execute("DELETE FROM takes WHERE storyboard_id = ? AND frame_id = ? AND id = ?",
                       (board_id, frame_id, take))
            unused = self._unused_layouts(db, board_id, [row["layout"]])
        self._remove_files(board_id, [row["image_file"], *unused])
        return True

    @staticmethod
    def _show_take(db, board_id: str, frame_id: int, take: int) -> bool:
        """Point the panel at its take: the panel's image, seed, face score and time are the
        chosen take's; the version grows, so the panel's image URL changes with it."""
        return bool(db.execute(
            "UPDATE frames SET take = t.id, image_file = t.image_file, seed = t.seed, identity = t.identity,"
            " seconds = t.seconds, version = frames.version + 1 FROM takes t WHERE t.storyboard_id ="
            " frames.storyboard_id AND t.frame_id = frames.id AND frames.storyboard_id = ? AND frames.id = ?"
            " AND t.id = ?", (board_id, frame_id, take)).rowcount)

    def _prune_takes(self, db, board_id: str, frame_id: int) -> list[str]:
        """Delete the oldest unchosen takes past the bound; returns their files."""
        if self.takes_per_panel is None:
            return []
        rows = db.execute("SELECT t.id, t.image_file, t.layout FROM takes t JOIN frames f ON f.storyboard_id ="
                          " t.storyboard_id AND f.id = t.frame_id WHERE t.storyboard_id = ? AND t.frame_id = ?"
                          " AND t.id IS NOT f.take ORDER BY t.id DESC LIMIT -1 OFFSET ?",
                          (board_id, frame_id, self.takes_per_panel - 1)).fetchall()
        db.executemany("DELETE FROM takes WHERE storyboard_id = ? AND frame_id = ? AND id = ?",
                       [(board_id, frame_id, row["id"]) for row in rows])
        return [row["image_file"] for row in rows] + self._unused_layouts(db, board_id, [row["layout"] for row in rows])

    # -- layouts --
    #
    # A layout's file (the sketch, or the pose drawn) is named once and never rewritten; the
    # panel and each take drawn with it point at it, and it goes when the last of them lets go.

    def _replace_layout(self, board_id: str, frame_id: int, layout, also) -> None:
        """Write the new layout's file, then in one transaction point the panel at it and run
        ``also(db)``; the old file goes after, if nothing points at it any more."""
        stored = self._write_layout(board_id, frame_id, layout)
        try:
            with self._tx() as db:
                frame = db.execute("SELECT status, layout FROM frames WHERE storyboard_id = ? AND id = ?",
                                   (board_id, frame_id)).fetchone()
                if frame is None or frame["status"] in ACTIVE:
                    raise Conflict("already being drawn")
                also(db)
                db.execute("UPDATE frames SET layout = ? WHERE storyboard_id = ? AND id = ?",
                           (_json(stored), board_id, frame_id))
                unused = self._unused_layouts(db, board_id, [frame["layout"]])
        except BaseException:
            self._remove_files(board_id, [stored["file"]] if stored else [])
            raise
        self._remove_files(board_id, unused)

    def _write_layout(self, board_id: str, frame_id: int, layout: tuple[dict, bytes] | None) -> dict | None:
        if layout is None:
            return None
        data, png = layout
        name = f"layout-{frame_id}-{secrets.token_hex(4)}.png"
        write_atomic(self.boards_dir / board_id / name, png)
        return {**data, "file": name}

    @staticmethod
    def _unused_layouts(db, board_id: str, layouts: list[str | None]) -> list[str]:
        """The files of ``layouts`` (stored JSON) that no panel or take of the board points at."""
        files = {json.loads(layout)["file"] for layout in layouts if layout}
        used = {row[0] for row in db.execute(
            "SELECT json_extract(layout, '$.file') FROM frames WHERE storyboard_id = ? AND layout IS NOT NULL"
            " UNION SELECT json_extract(layout, '$.file') FROM takes WHERE storyboard_id = ? AND layout IS NOT NULL",
            (board_id, board_id))}
        return sorted(files - used)

    def _remove_files(self, board_id: str, names: list[str]) -> None:
        for name in names:
            (self.boards_dir / board_id / name).unlink(missing_ok=True)

    def save_reference(self, board_id: str, character: int, png: bytes, kind: str) -> None:
        """Character ``character``'s (1-based) reference: written first, then pointed at."""
        name = reference_name(character)
        write_atomic(self.boards_dir / board_id / name, png)
        with self._tx() as db:
            db.execute("INSERT INTO board_references (storyboard_id, character, kind, file) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (storyboard_id, character) DO UPDATE SET kind = excluded.kind,"
                       " file = excluded.file", (board_id, character, kind, name))

    def file_path(self, board_id: str, name: str | None) -> Path | None:
        """The path of a file the database names; never built from request text.

        A symlink anywhere on the way (the file, or a board folder swapped for a link)
        could lead outside the data directory, so the real path must be the expected one.
        """
        if not name:
            return None
        path = self.boards_dir / board_id / name
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        return path if real == self.boards_dir.resolve() / board_id / name and real.is_file() else None

    # -- jobs and the board's status --
    #
    # Every transition below is one transaction that ends by deriving the board's status
    # from its jobs and panels (_refresh), the one place that decides it.

    def queue_length(self) -> int:
        return self._query("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")[0][0]

    @staticmethod
    def _check_room(db, queue_limit: int | None) -> None:
        waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
        if queue_limit is not None and waiting >= queue_limit:
            raise QueueFull(queue_limit)

    def _refresh(self, db, board_id: str) -> Status:
        """Derive the board's status from its jobs and panels, and store it.

        Running or queued work wins; then a board whose every panel is drawn is done;
        otherwise the last job that ended early (failed, canceled, interrupted) says why.
        """
        jobs = db.execute("SELECT status, error FROM jobs WHERE storyboard_id = ? ORDER BY id",
                          (board_id,)).fetchall()
        frames = [row[0] for row in db.execute("SELECT status FROM frames WHERE storyboard_id = ?", (board_id,))]
        statuses = {row["status"] for row in jobs}
        status, error = Status.DONE, None
        if Status.RUNNING in statuses:
            status = Status.RUNNING
        elif Status.QUEUED in statuses:
            status = Status.QUEUED
        elif not frames or any(frame != Status.DONE for frame in frames):
            ended = [row for row in jobs if row["status"] in (Status.FAILED, Status.CANCELED, Status.INTERRUPTED)]
            if ended:
                status, error = Status(ended[-1]["status"]), ended[-1]["error"]
        db.execute("UPDATE storyboards SET status = ?, error = ? WHERE id = ?", (status, error, board_id))
        return status

    def _job_frames(self, db, job: dict) -> list[int]:
        """The panels a job draws: its own panel, or a board job's unfinished panels that no
        other waiting job is about to redraw."""
        if job.get("kind") == "frame" or job.get("frame_id") is not None:
            return [job["frame_id"]]
        others = {row[0] for row in db.execute(
            "SELECT frame_id FROM jobs WHERE storyboard_id = ? AND id != ? AND status IN ('queued', 'running')"
            " AND frame_id IS NOT NULL", (job["storyboard_id"], job["id"]))}
        return [row[0] for row in db.execute(
            "SELECT id FROM frames WHERE storyboard_id = ? AND status IN ('queued', 'running')",
            (job["storyboard_id"],)) if row[0] not in others]

    def _end_job(self, db, job: dict, status: Status, error: str | None, frames_to: Status,
                 frame_error: str | None = None) -> Status:
        """End ``job`` and settle its unfinished panels: a panel that still has an image (a
        redraw that did not happen) shows that image again; the others become ``frames_to``."""
        db.execute("UPDATE jobs SET status = ?, error = ? WHERE id = ?", (status, error, job["id"]))
        if job.get("kind") is None:
            job = dict(db.execute("SELECT * FROM jobs WHERE id = ?", (job["id"],)).fetchone())
        for frame_id in self._job_frames(db, job):
            db.execute("UPDATE frames SET status = CASE WHEN image_file IS NOT NULL AND ? != 'failed' THEN 'done'"
                       " ELSE ? END, error = ? WHERE storyboard_id = ? AND id = ? AND status IN ('queued', 'running')",
                       (frames_to, frames_to, frame_error, job["storyboard_id"], frame_id))
        return self._refresh(db, job["storyboard_id"])

    def next_job(self) -> dict | None:
        """Take the oldest queued job, mark it running and count the start."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', starts = starts + 1 WHERE id = ?", (row["id"],))
            self._refresh(db, row["storyboard_id"])
        job = dict(row)
        job["starts"] += 1
        return job

    def finish_job(self, job: dict, status: Status, error: str | None = None,
                   frames_to: Status = Status.PENDING, frame_error: str | None = None) -> Status | None:
        """End a running job; returns the board's status (None when the board is gone)."""
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM storyboards WHERE id = ?", (job["storyboard_id"],)).fetchone():
                return None
            return self._end_job(db, job, status, error, frames_to, frame_error)

    def request_cancel(self, board_id: str) -> tuple[int, int]:
        """Cancel the board's queued jobs and flag its running one, in one transaction.

        Taking a job is a transaction too, so each cancel lands wholly before or after a
        take: before, the job is never taken; after, the worker finds the flag.
        Returns (queued jobs canceled, running jobs flagged).
        """
        with self._tx() as db:
            queued = [dict(row) for row in db.execute(
                "SELECT * FROM jobs WHERE storyboard_id = ? AND status = 'queued' ORDER BY id", (board_id,))]
            for job in queued:
                self._end_job(db, job, Status.CANCELED, None, Status.PENDING)
            running = db.execute("UPDATE jobs SET cancel_requested = 1 WHERE storyboard_id = ? AND status = 'running'",
                                 (board_id,)).rowcount
        return len(queued), running

    def job(self, job_id: int) -> dict | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return dict(rows[0]) if rows else None

    def jobs(self, board_id: str) -> list[dict]:
        return [dict(row) for row in self._query("SELECT * FROM jobs WHERE storyboard_id = ? ORDER BY id",
                                                 (board_id,))]

    def running_jobs(self) -> list[dict]:
        return [dict(row) for row in self._query("SELECT * FROM jobs WHERE status = 'running' ORDER BY id")]

    def cancel_requested_jobs(self) -> list[int]:
        return [row[0] for row in self._query("SELECT id FROM jobs WHERE status = 'running' AND cancel_requested = 1")]

    def release_job(self, job_id: int) -> None:
        """A taken job goes back to the queue untouched (it could not be handed on)."""
        with self._tx() as db:
            row = db.execute("SELECT storyboard_id FROM jobs WHERE id = ? AND status = 'running'", (job_id,)).fetchone()
            if row is not None:
                db.execute("UPDATE jobs SET status = 'queued', starts = starts - 1 WHERE id = ?", (job_id,))
                self._refresh(db, row["storyboard_id"])

    def cancel_requested(self, job_id: int) -> bool:
        rows = self._query("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def resume(self, board_id: str, queue_limit: int | None = None) -> None:
        """Queue the board's unfinished panels again (Conflict, QueueFull: nothing changed).

        An interrupted job is queued again with its start count, so a job that takes the
        studio down twice is set aside rather than retried forever.
        """
        with self._tx() as db:
            status = self._refresh(db, board_id)
            if status in ACTIVE:
                raise Conflict(f"The storyboard is already {status}.")
            if status == Status.DONE:
                raise Conflict("Every panel is already drawn.")
            self._check_room(db, queue_limit)
            last = db.execute("SELECT id, status FROM jobs WHERE storyboard_id = ? AND kind = 'board'"
                              " ORDER BY id DESC LIMIT 1", (board_id,)).fetchone()
            if last is not None and last["status"] == Status.INTERRUPTED:
                db.execute("UPDATE jobs SET status = 'queued', error = NULL WHERE id = ?", (last["id"],))
            else:
                self._add_job(db, board_id, "board")
            db.execute("UPDATE frames SET status = 'queued', error = NULL WHERE storyboard_id = ? AND status != 'done'",
                       (board_id,))
            self._refresh(db, board_id)

    def redraw(self, board_id: str, frame_id: int, caption: str, seed: int, scene: str | None = None,
               cast: tuple[str, ...] | None = None, queue_limit: int | None = None, layout=KEEP) -> None:
        """Queue one panel again with this caption, scene, seed, cast (None: the panel's own) and
        layout (KEEP: the panel's own; None: none; else (its JSON, its PNG));
        Conflict, QueueFull: nothing changed."""
        if layout is not KEEP:
            self._replace_layout(board_id, frame_id, layout, lambda db: self._queue_redraw(
                db, board_id, frame_id, caption, seed, scene, cast, queue_limit))
            return
        with self._tx() as db:
            frame = db.execute("SELECT status FROM frames WHERE storyboard_id = ? AND id = ?",
                               (board_id, frame_id)).fetchone()
            if frame is None or frame["status"] in ACTIVE:
                raise Conflict("already being drawn")
            self._queue_redraw(db, board_id, frame_id, caption, seed, scene, cast, queue_limit)

    def _queue_redraw(self, db, board_id, frame_id, caption, seed, scene, cast, queue_limit) -> None:
        self._check_room(db, queue_limit)
        db.execute("UPDATE frames SET caption = ?, scene = ?, seed = ?, status = 'queued', error = NULL"
                   " WHERE storyboard_id = ? AND id = ?", (caption, scene, seed, board_id, frame_id))
        if cast is not None:
            db.execute("UPDATE frames SET cast_names = ? WHERE storyboard_id = ? AND id = ?",
                       (json.dumps(list(cast)), board_id, frame_id))
        self._add_job(db, board_id, "frame", frame_id)
        self._refresh(db, board_id)

    def refine(self, board_id: str, frame_id: int | None, preset: str, strength: float,
               queue_limit: int | None = None) -> None:
        """Queue a refine of the panel's chosen take (``frame_id``), or of every drawn panel's
        (None), to ``preset`` at ``strength``; Conflict, QueueFull: nothing changed."""
        with self._tx() as db:
            if frame_id is None:
                status = self._refresh(db, board_id)
                if status in ACTIVE:
                    raise Conflict(f"The storyboard is already {status}.")
                frames = [row[0] for row in db.execute(
                    "SELECT id FROM frames WHERE storyboard_id = ? AND take IS NOT NULL", (board_id,))]
            else:
                frame = db.execute("SELECT status, take FROM frames WHERE storyboard_id = ? AND id = ?",
                                   (board_id, frame_id)).fetchone()
                if frame is None or frame["status"] in ACTIVE:
                    raise Conflict("The panel is already being drawn.")
                frames = [frame_id] if frame["take"] is not None else []
            if not frames:
                raise Conflict("Nothing is drawn yet to refine.")
            self._check_room(db, queue_limit)
            db.executemany("UPDATE frames SET status = 'queued', error = NULL WHERE storyboard_id = ? AND id = ?",
                           [(board_id, frame) for frame in frames])
            self._add_job(db, board_id, "refine", frame_id, preset, strength)
            self._refresh(db, board_id)

    def sketch_pngs(self, board: dict) -> dict[int, bytes]:
        """The sketch PNG of each panel of ``board`` whose layout is a sketch (a pose travels as
        its keypoints): {frame id: PNG}."""
        pngs = {}
        for frame in board["frames"]:
            layout = frame["layout"]
            path = self.file_path(board["id"], layout["file"]) if layout and layout["kind"] == "sketch" else None
            if path is not None:
                pngs[frame["id"]] = path.read_bytes()
        return pngs

    def take_pngs(self, board: dict, job: dict) -> dict[int, tuple[int, bytes]]:
        """What a refine job starts from: {frame id: (its chosen take, that take's PNG)} for each
        panel it refines; {} for any other job."""
        if job["kind"] != "refine":
            return {}
        sources = {}
        for frame in board["frames"]:
            refined = frame["id"] == job["frame_id"] if job["frame_id"] is not None else frame["status"] in ACTIVE
            path = self.file_path(board["id"], frame["image_file"]) if refined and frame["take"] else None
            if path is not None:
                sources[frame["id"]] = (frame["take"], path.read_bytes())
        return sources


def _json(value) -> str | None:
    return None if value is None else json.dumps(value)


def reference_name(character: int) -> str:
    return f"reference-{character}.png"


def _remove_folder(folder: Path) -> None:
    """Remove a board folder and everything in it; a planted link is removed, never followed."""
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink(missing_ok=True)
    else:
        shutil.rmtree(folder)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, flush to disk, then rename: a reader sees all or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
