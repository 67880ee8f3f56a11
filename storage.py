"""Storyboards, panels and jobs in SQLite; images as PNG files in the data directory.

Everything a user made survives a crash: each finished panel's PNG is written to a
temporary name, flushed and renamed before the database row that points at it is
committed, so the database never references a half-written file. One connection is
shared under a lock (SQLite in WAL mode); every call is a short transaction.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS storyboards (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    story TEXT NOT NULL,
    character TEXT NOT NULL,
    style TEXT NOT NULL,
    settings TEXT NOT NULL,
    reference_kind TEXT,
    reference_file TEXT
);
CREATE TABLE IF NOT EXISTS frames (
    storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    caption TEXT NOT NULL,
    shot TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    seed INTEGER NOT NULL,
    image_file TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    identity TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    seconds REAL,
    dropped TEXT,
    PRIMARY KEY (storyboard_id, id)
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    frame_id INTEGER,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    starts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, id);
"""

class QueueFull(Exception):
    """The queue already holds ``limit`` jobs; nothing was stored."""

    def __init__(self, limit: int):
        super().__init__(f"{limit} storyboards are already waiting")
        self.limit = limit


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir)
        self.boards_dir = self.root / "boards"
        self.boards_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "studio.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives any crash of the process (kill -9 included); only a
        # power cut can lose the last commits, and then a saved PNG is merely unreferenced.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(frames)")}
        if "dropped" not in columns:  # a data directory from before the column existed
            self._db.execute("ALTER TABLE frames ADD COLUMN dropped TEXT")
        if "cancel_requested" not in {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}:
            self._db.execute("ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")

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

    def recover(self) -> list[str]:
        """After a restart: running jobs become interrupted; stray temp files are removed."""
        for tmp in self.boards_dir.glob("*/*.tmp"):
            tmp.unlink(missing_ok=True)
        with self._tx() as db:
            rows = db.execute("SELECT id, storyboard_id, starts FROM jobs WHERE status = 'running'").fetchall()
            for row in rows:
                if row["starts"] >= 2:
                    # It has now taken the studio down twice: set it aside instead of looping.
                    reason = "Set aside: the studio stopped twice while drawing this storyboard."
                    db.execute("UPDATE jobs SET status = 'failed', error = ? WHERE id = ?", (reason, row["id"]))
                    db.execute("UPDATE storyboards SET status = 'failed', error = ? WHERE id = ?",
                               (reason, row["storyboard_id"]))
                    db.execute("UPDATE frames SET status = 'pending' WHERE storyboard_id = ?"
                               " AND status IN ('running', 'queued')", (row["storyboard_id"],))
                    continue
                db.execute("UPDATE jobs SET status = 'interrupted' WHERE id = ?", (row["id"],))
                db.execute(
                    "UPDATE storyboards SET status = 'interrupted', error = ? WHERE id = ?",
                    ("The studio stopped while drawing; finished panels are kept. Resume to draw the rest.",
                     row["storyboard_id"]),
                )
                db.execute(
                    "UPDATE frames SET status = 'pending' WHERE storyboard_id = ? AND status IN ('running', 'queued')",
                    (row["storyboard_id"],),
                )
        return [row["storyboard_id"] for row in rows]

    # -- storyboards --

    def create_board(self, *, title, story, character, style, settings: dict, panels, reference_png: bytes | None,
                     queue_limit: int | None = None):
        """Store a new board with its planned panels and queue its job; returns the id.

        With ``queue_limit``, raises QueueFull when that many jobs already wait. The count
        and the insert share one transaction, so concurrent requests cannot overshoot it.
        """
        board_id = secrets.token_hex(6)
        folder = self.boards_dir / board_id
        folder.mkdir()
        reference_file = None
        if reference_png is not None:
            reference_file = "reference.png"
            write_atomic(folder / reference_file, reference_png)
        try:
            self._insert_board(board_id, title, story, character, style, settings, panels, reference_file,
                               queue_limit)
        except QueueFull:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return board_id

    def _insert_board(self, board_id, title, story, character, style, settings, panels, reference_file,
                      queue_limit) -> None:
        with self._tx() as db:
            waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if queue_limit is not None and waiting >= queue_limit:
                raise QueueFull(queue_limit)
            db.execute(
                "INSERT INTO storyboards (id, title, status, created_at, story, character, style, settings,"
                " reference_kind, reference_file) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (board_id, title, now(), story, character, style, json.dumps(settings),
                 "uploaded" if reference_file else None, reference_file),
            )
            for panel in panels:
                db.execute(
                    "INSERT INTO frames (storyboard_id, id, position, status, caption, shot, seed)"
                    " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                    (board_id, panel["id"], panel["id"], panel["caption"], panel["shot"], panel["seed"]),
                )
            self._add_job(db, board_id, "board")

    def _add_job(self, db, board_id: str, kind: str, frame_id: int | None = None, params: dict | None = None) -> int:
        cursor = db.execute(
            "INSERT INTO jobs (storyboard_id, kind, frame_id, params, status, created_at)"
            " VALUES (?, ?, ?, ?, 'queued', ?)",
            (board_id, kind, frame_id, json.dumps(params or {}), now()),
        )
        return cursor.lastrowid

    def board(self, board_id: str) -> dict | None:
        rows = self._query("SELECT * FROM storyboards WHERE id = ?", (board_id,))
        if not rows:
            return None
        board = dict(rows[0])
        board["settings"] = json.loads(board["settings"])
        board["frames"] = [self._frame(row) for row in self._query(
            "SELECT * FROM frames WHERE storyboard_id = ? ORDER BY position", (board_id,))]
        return board

    def board_status(self, board_id: str) -> dict | None:
        rows = self._query("SELECT status, error FROM storyboards WHERE id = ?", (board_id,))
        return dict(rows[0]) if rows else None

    @staticmethod
    def _frame(row: sqlite3.Row) -> dict:
        frame = dict(row)
        frame["identity"] = json.loads(frame["identity"]) if frame["identity"] else None
        return frame

    def boards(self) -> list[dict]:
        rows = self._query(
            "SELECT s.id, s.title, s.status, s.created_at, s.settings,"
            " (SELECT COUNT(*) FROM frames f WHERE f.storyboard_id = s.id) AS frames_total,"
            " (SELECT COUNT(*) FROM frames f WHERE f.storyboard_id = s.id AND f.status = 'done') AS frames_done,"
            " (SELECT f.id FROM frames f WHERE f.storyboard_id = s.id AND f.image_file IS NOT NULL"
            "  ORDER BY f.position LIMIT 1) AS thumb_frame,"
            " (SELECT f.version FROM frames f WHERE f.storyboard_id = s.id AND f.image_file IS NOT NULL"
            "  ORDER BY f.position LIMIT 1) AS thumb_version"
            " FROM storyboards s ORDER BY s.created_at DESC, s.rowid DESC"
        )
        return [dict(row) for row in rows]

    def set_board_status(self, board_id: str, status: str, error: str | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE storyboards SET status = ?, error = ? WHERE id = ?", (status, error, board_id))

    def delete_board(self, board_id: str) -> bool:
        with self._tx() as db:
            deleted = db.execute("DELETE FROM storyboards WHERE id = ?", (board_id,)).rowcount
        if deleted:
            folder = self.boards_dir / board_id
            if folder.is_symlink():
                folder.unlink()  # a planted link: remove the link, never the files it points at
                return True
            for path in folder.glob("*"):
                path.unlink(missing_ok=True)
            folder.rmdir() if folder.exists() else None
        return bool(deleted)

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

    def save_frame_image(self, board_id: str, frame_id: int, png: bytes, **fields) -> None:
        """Write the PNG (atomically), then point the frame at it; the old file goes after."""
        old = self._query("SELECT image_file, version FROM frames WHERE storyboard_id = ? AND id = ?",
                          (board_id, frame_id))[0]
        version = old["version"] + 1
        name = f"frame-{frame_id}-v{version}.png"
        write_atomic(self.boards_dir / board_id / name, png)
        self.update_frame(board_id, frame_id, image_file=name, version=version, status="done", error=None, **fields)
        if old["image_file"] and old["image_file"] != name:
            (self.boards_dir / board_id / old["image_file"]).unlink(missing_ok=True)

    def save_reference(self, board_id: str, png: bytes, kind: str) -> None:
        write_atomic(self.boards_dir / board_id / "reference.png", png)
        with self._tx() as db:
            db.execute("UPDATE storyboards SET reference_kind = ?, reference_file = 'reference.png' WHERE id = ?",
                       (kind, board_id))

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

    # -- jobs --

    def queue_length(self) -> int:
        return self._query("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")[0][0]

    def add_job(self, board_id: str, kind: str, frame_id: int | None = None, params: dict | None = None,
                board_status: str = "queued") -> int:
        with self._tx() as db:
            job_id = self._add_job(db, board_id, kind, frame_id, params)
            db.execute("UPDATE storyboards SET status = ?, error = NULL WHERE id = ?", (board_status, board_id))
        return job_id

    def next_job(self) -> dict | None:
        """Take the oldest queued job, mark it running and count the start."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', starts = starts + 1 WHERE id = ?", (row["id"],))
        job = dict(row)
        job["starts"] += 1
        job["params"] = json.loads(job["params"])
        return job

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = ?, error = ? WHERE id = ?", (status, error, job_id))

    def jobs_for(self, board_id: str, status: str) -> list[dict]:
        return [dict(r) for r in self._query(
            "SELECT * FROM jobs WHERE storyboard_id = ? AND status = ? ORDER BY id", (board_id, status))]

    def request_cancel(self, board_id: str) -> tuple[int, int]:
        """Cancel the board's queued jobs and flag its running one, in one transaction.

        Taking a job is a transaction too, so each cancel lands wholly before or after a
        take: before, the job is never taken; after, the worker finds the flag.
        Returns (queued jobs canceled, running jobs flagged).
        """
        with self._tx() as db:
            queued = db.execute("UPDATE jobs SET status = 'canceled' WHERE storyboard_id = ? AND status = 'queued'",
                                (board_id,)).rowcount
            running = db.execute("UPDATE jobs SET cancel_requested = 1 WHERE storyboard_id = ? AND status = 'running'",
                                 (board_id,)).rowcount
        return queued, running

    def cancel_requested(self, job_id: int) -> bool:
        rows = self._query("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def last_job(self, board_id: str) -> dict | None:
        rows = self._query("SELECT * FROM jobs WHERE storyboard_id = ? AND kind = 'board' ORDER BY id DESC LIMIT 1",
                           (board_id,))
        return dict(rows[0]) if rows else None

    def requeue(self, job_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job_id,))


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
