"""The studio database's schema as numbered migrations, counted in SQLite's ``user_version``.

Migration n takes a database from version n - 1 to n. ``storage.Store`` applies the ones a
database lacks, in order, each in one transaction with the new number, so a failure leaves
the database whole at the last version it reached. A new database runs them all: the
tables are what these functions make, read top to bottom. A change to the schema is a new
function at the end of ``MIGRATIONS``; a shipped one is never edited, since databases of
its version exist.

Versions 1 to 5 were shipped before the number was kept (their ``user_version`` is 0):
:func:`version` recognises them by the column each one added. Board parameters are JSON
that ``board_params`` reads; a migration writes them as the version it stands for wrote
them and never reads them back into today's types, which change.
"""

from __future__ import annotations

import json
import sqlite3

# The tables of the first studio (commit 8875083).
_FIRST_TABLES = (
    """CREATE TABLE IF NOT EXISTS storyboards (
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
    )""",
    """CREATE TABLE IF NOT EXISTS frames (
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
        PRIMARY KEY (storyboard_id, id)
    )""",
    """CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        frame_id INTEGER,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        starts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, id)",
)


def migration_1(db: sqlite3.Connection) -> None:
    """Boards, their panels (frames) and the jobs that draw them."""
    for statement in _FIRST_TABLES:
        db.execute(statement)


def migration_2(db: sqlite3.Connection) -> None:
    """(8012eac) A panel keeps the scene words cut to fit CLIP's 77 tokens."""
    _add_column(db, "frames", "dropped TEXT")


def migration_3(db: sqlite3.Connection) -> None:
    """(21c4f7d) A running job can be flagged for cancel, for the worker to find."""
    _add_column(db, "jobs", "cancel_requested INTEGER NOT NULL DEFAULT 0")


def migration_4(db: sqlite3.Connection) -> None:
    """(6fb3259) A panel drawn from an edited plan keeps its English scene beside the caption."""
    _add_column(db, "frames", "scene TEXT")


def migration_5(db: sqlite3.Connection) -> None:
    """(de896c4) A board has a cast: its options become its parameters (schema 2 JSON, with a
    cast of one unnamed character whose traits were the ``character`` column), its one
    reference becomes that character's, and a panel keeps its cast and the traits cut."""
    _add_column(db, "frames", "cast_names TEXT")  # JSON list of the names in the panel
    _add_column(db, "frames", "traits_dropped TEXT")  # JSON {name: trait phrases cut to fit 77 tokens}
    db.execute("""CREATE TABLE IF NOT EXISTS board_references (
        storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
        character INTEGER NOT NULL,  -- 1-based place in the board's cast
        kind TEXT NOT NULL,  -- uploaded | generated
        file TEXT NOT NULL,
        PRIMARY KEY (storyboard_id, character)
    )""")
    db.execute("ALTER TABLE storyboards RENAME COLUMN settings TO params")
    rows = db.execute("SELECT id, character, style, params, reference_kind, reference_file FROM storyboards")
    for board_id, traits, style, options, reference_kind, reference_file in rows.fetchall():
        params = {**json.loads(options), "schema": 2, "style": style, "characters": [{"name": "", "traits": traits}]}
        db.execute("UPDATE storyboards SET params = ? WHERE id = ?", (json.dumps(params), board_id))
        if reference_file:
            db.execute("INSERT OR IGNORE INTO board_references (storyboard_id, character, kind, file)"
                       " VALUES (?, 1, ?, ?)", (board_id, reference_kind or "uploaded", reference_file))


def migration_6(db: sqlite3.Connection) -> None:
    """What only a board from before the cast had goes: its panels name their one unnamed
    character instead of leaving the cast empty (NULL), and the columns written for it or
    kept from it, read by nothing (the character's traits and the style, now in the
    parameters; the one reference, now in board_references; a job's unused options).

    The boards' table is rebuilt rather than its columns dropped: SQLite's DROP COLUMN
    breaks the table's text where a dropped column follows a comment (the cast studio's
    schema has them). Foreign keys are off while migrations run (storage.Store), so
    dropping the old table takes no panel with it.
    """
    db.execute("""UPDATE frames SET cast_names = '[""]' WHERE cast_names IS NULL""")
    db.execute("""CREATE TABLE storyboards_6 (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL,
        story TEXT NOT NULL,
        params TEXT NOT NULL  -- board_params.BoardParams as JSON, with its schema version
    )""")
    # The rowid too: the list of boards breaks ties in created_at by it.
    db.execute("INSERT INTO storyboards_6 (rowid, id, title, status, error, created_at, story, params)"
               " SELECT rowid, id, title, status, error, created_at, story, params FROM storyboards")
    db.execute("DROP TABLE storyboards")
    db.execute("ALTER TABLE storyboards_6 RENAME TO storyboards")
    db.execute("ALTER TABLE jobs DROP COLUMN params")


def migration_7(db: sqlite3.Connection) -> None:
    """A panel keeps its takes: every image drawn for it (a redraw or a refine adds one
    instead of replacing the last), with what made each; the panel shows the one chosen
    (``frames.take``), whose file, seed, face score and time are also the panel's own
    columns, so every reader of a panel sees the chosen take without a join. A panel drawn
    before becomes its first take, by the board's speed mode; what ran is in its PNG."""
    db.execute("""CREATE TABLE takes (
        storyboard_id TEXT NOT NULL,
        frame_id INTEGER NOT NULL,
        id INTEGER NOT NULL,  -- 1, 2, ... within the panel
        parent INTEGER,  -- the take it was made from (a refine); NULL: drawn afresh
        seed INTEGER NOT NULL,
        mode TEXT,  -- the speed preset's name; NULL: not recorded (a worker from before takes)
        settings TEXT,  -- JSON: what ran (drawing.SavedPanel.ran); NULL: not recorded
        image_file TEXT NOT NULL,
        identity TEXT,
        seconds REAL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (storyboard_id, frame_id, id),
        FOREIGN KEY (storyboard_id, frame_id) REFERENCES frames (storyboard_id, id) ON DELETE CASCADE
    )""")
    _add_column(db, "frames", "take INTEGER")  # the chosen take's id; NULL: nothing drawn yet
    rows = db.execute("SELECT f.storyboard_id, f.id, f.seed, f.image_file, f.identity, f.seconds, s.params,"
                      " s.created_at FROM frames f JOIN storyboards s ON s.id = f.storyboard_id"
                      " WHERE f.image_file IS NOT NULL")
    for board_id, frame_id, seed, image_file, identity, seconds, params, created_at in rows.fetchall():
        preset = json.loads(params).get("preset")  # schema 2: its name; schema 3: the preset whole
        mode = preset.get("name") if isinstance(preset, dict) else preset
        mode = mode if isinstance(mode, str) else None
        db.execute("INSERT INTO takes (storyboard_id, frame_id, id, seed, mode, image_file, identity, seconds,"
                   " created_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)",
                   (board_id, frame_id, seed, mode, image_file, identity, seconds, created_at))
        db.execute("UPDATE frames SET take = 1 WHERE storyboard_id = ? AND id = ?", (board_id, frame_id))


def migration_8(db: sqlite3.Connection) -> None:
    """A refine job: the speed preset it refines to and its strength (NULL for other jobs)."""
    _add_column(db, "jobs", "preset TEXT")
    _add_column(db, "jobs", "strength REAL")


def migration_9(db: sqlite3.Connection) -> None:
    """Timing: a panel's duration in seconds (NULL: the time to read it, timing.default_seconds)
    and its line of dialogue (NULL: none), and the board's frame rate (boards from before
    play at 24, timing.DEFAULT_FPS)."""
    _add_column(db, "frames", "duration REAL")
    _add_column(db, "frames", "dialogue TEXT")
    _add_column(db, "storyboards", "fps REAL NOT NULL DEFAULT 24")


def migration_10(db: sqlite3.Connection) -> None:
    """A panel's layout, which a T2I-Adapter makes it follow, and the layout each take was
    drawn with: JSON {"kind", "strength", "poses" (a pose), "file"}, the file (the sketch, or
    the pose drawn) beside the panel's images. NULL: none (every panel drawn before)."""
    _add_column(db, "frames", "layout TEXT")
    _add_column(db, "takes", "layout TEXT")


MIGRATIONS = (migration_1, migration_2, migration_3, migration_4, migration_5, migration_6, migration_7,
              migration_8, migration_9, migration_10)

# The column each version shipped without a number added, in the order those versions came.
_SHIPPED_MARKS = (("jobs", "id"), ("frames", "dropped"), ("jobs", "cancel_requested"), ("frames", "scene"),
                  ("storyboards", "params"))


def version(db: sqlite3.Connection) -> int:
    """The database's schema version (0: empty).

    A database from before the number was kept is at the last shipped version whose mark it
    has along with every earlier one's. An old studio that stopped halfway through its own
    upgrade (they ran one statement at a time) may have left some of a later version's
    columns; the migrations above add only what is missing, so they finish that upgrade.
    """
    kept = db.execute("PRAGMA user_version").fetchone()[0]
    if kept:
        return kept
    for shipped, (table, column) in enumerate(_SHIPPED_MARKS):
        if not _has_column(db, table, column):
            return shipped
    return len(_SHIPPED_MARKS)


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _add_column(db: sqlite3.Connection, table: str, definition: str) -> None:
    if not _has_column(db, table, definition.split()[0]):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")
