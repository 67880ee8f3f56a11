"""Numbered schema migrations: a data directory written by every earlier studio opens whole.

Each shipped version's database is built here as that studio built it: its schema text
(tests/shipped_schemas/vN.sql, verbatim from git) and the INSERTs and UPDATEs its store ran
for a board that drew one panel before the studio stopped.
"""

import json
import sqlite3
from pathlib import Path
from unittest import mock

import pytest

import migrations
from board_params import BoardParams, Character
from config import SpeedPreset
from storage import INTERRUPTED_MESSAGE, DatabaseDamaged, DatabaseTooNew, Store

SHIPPED = Path(__file__).parent / "shipped_schemas"
BOARD = "0123456789ab"
CREATED = "2026-11-20T10:00:00Z"
LATEST = len(migrations.MIGRATIONS)
# The options dict of the single-character studio (what its app.py stored as ``settings``).
OPTIONS = {"preset": "fast", "steps": 12, "guidance_scale": 6.5, "ip_adapter_scale": 0.5, "aspect": "16:9",
           "width": 80, "height": 48, "seed": 40, "identity_lock": True, "negative_prompt": "blurry",
           "model": "tiny (offline demo)"}
IDENTITY = {"status": "no_face", "distance": None, "threshold": 0.6}
FACE, SECOND_FACE, PANEL = b"\x89PNG face", b"\x89PNG second face", b"\x89PNG panel"


def shipped_database(folder: Path, version: int) -> sqlite3.Connection:
    (folder / "boards" / BOARD).mkdir(parents=True)
    db = sqlite3.connect(folder / "studio.sqlite3")
    db.executescript((SHIPPED / f"v{version}.sql").read_text())
    return db


def draw_one_panel_then_stop(db: sqlite3.Connection, folder: Path, version: int) -> None:
    """What every shipped worker and restart wrote: the job taken, the prompts, panel 1 saved,
    then the studio stopped and recover() marked the board interrupted."""
    db.execute("UPDATE jobs SET status = 'running', starts = starts + 1")
    db.execute("UPDATE frames SET prompt = 'red hair, ' || caption, negative_prompt = 'blurry'")
    if version >= 2:
        db.execute("UPDATE frames SET dropped = 'dusty' WHERE id = 1")
    (folder / "boards" / BOARD / "frame-1-v1.png").write_bytes(PANEL)
    db.execute("UPDATE frames SET image_file = 'frame-1-v1.png', version = 1, status = 'done', error = NULL, seed = 40,"
               " identity = ?, attempts = 1, seconds = 2.5 WHERE id = 1", (json.dumps(IDENTITY),))
    db.execute("UPDATE jobs SET status = 'interrupted' WHERE status = 'running'")
    db.execute("UPDATE storyboards SET status = 'interrupted', error = ?", (INTERRUPTED_MESSAGE,))
    db.execute("UPDATE frames SET status = 'pending' WHERE status IN ('running', 'queued')")
    db.commit()
    db.close()


def single_character_studio(folder: Path, version: int) -> None:
    """Versions 1-4: one character in columns, its options as ``settings``, one reference.png."""
    db = shipped_database(folder, version)
    (folder / "boards" / BOARD / "reference.png").write_bytes(FACE)
    db.execute("INSERT INTO storyboards (id, title, status, created_at, story, character, style, settings,"
               " reference_kind, reference_file) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
               (BOARD, "Old", CREATED, "One.\nTwo.", "red hair", "ink", json.dumps(OPTIONS), "uploaded",
                "reference.png"))
    for frame_id, caption in ((1, "One."), (2, "Two.")):
        if version >= 4:
            db.execute("INSERT INTO frames (storyboard_id, id, position, status, caption, scene, shot, seed)"
                       " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                       (BOARD, frame_id, frame_id, caption, "An old door." if frame_id == 1 else None, "wide shot",
                        39 + frame_id))
        else:
            db.execute("INSERT INTO frames (storyboard_id, id, position, status, caption, shot, seed)"
                       " VALUES (?, ?, ?, 'queued', ?, ?, ?)", (BOARD, frame_id, frame_id, caption, "wide shot",
                                                                 39 + frame_id))
    db.execute("INSERT INTO jobs (storyboard_id, kind, frame_id, params, status, created_at)"
               " VALUES (?, 'board', NULL, '{}', 'queued', ?)", (BOARD, CREATED))
    draw_one_panel_then_stop(db, folder, version)


def cast_studio(folder: Path) -> None:
    """Version 5: a cast in params (schema 2), a reference per character, a cast per panel."""
    db = shipped_database(folder, 5)
    params = {"schema": 2, "characters": [{"name": "Mara", "traits": "red hair"}, {"name": "Ilya", "traits": "beard"}],
              "style": "ink", **OPTIONS, "notices": ["The story has 2 lines, one panel each."]}
    db.execute("INSERT INTO storyboards (id, title, status, created_at, story, character, style, params)"
               " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)", (BOARD, "Old", CREATED, "One.\nTwo.", "red hair", "ink",
                                                          json.dumps(params)))
    (folder / "boards" / BOARD / "reference-1.png").write_bytes(FACE)
    db.execute("INSERT INTO board_references (storyboard_id, character, kind, file)"
               " VALUES (?, 1, 'uploaded', 'reference-1.png')", (BOARD,))
    for frame_id, caption, cast in ((1, "One.", ["Mara", "Ilya"]), (2, "Two.", [])):
        db.execute("INSERT INTO frames (storyboard_id, id, position, status, caption, scene, shot, seed, cast_names)"
                   " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                   (BOARD, frame_id, frame_id, caption, "An old door." if frame_id == 1 else None, "wide shot",
                    39 + frame_id, json.dumps(cast)))
    db.execute("INSERT INTO jobs (storyboard_id, kind, frame_id, params, status, created_at)"
               " VALUES (?, 'board', NULL, '{}', 'queued', ?)", (BOARD, CREATED))
    db.execute("UPDATE frames SET traits_dropped = ? WHERE id = 1", (json.dumps({"Ilya": "beard"}),))
    # The worker drew character 2's portrait before the panels.
    (folder / "boards" / BOARD / "reference-2.png").write_bytes(SECOND_FACE)
    db.execute("INSERT INTO board_references (storyboard_id, character, kind, file)"
               " VALUES (?, 2, 'generated', 'reference-2.png')", (BOARD,))
    draw_one_panel_then_stop(db, folder, 5)


def data_dir_of(folder: Path, version: int) -> Path:
    single_character_studio(folder, version) if version < 5 else cast_studio(folder)
    if version > 5:  # numbered: the studio of that version upgraded the cast studio's data
        with mock.patch.object(migrations, "MIGRATIONS", migrations.MIGRATIONS[:version]):
            Store(folder).close()
    return folder


def expected_frames(version: int, lead: str) -> list[dict]:
    cast = (("Mara", "Ilya"), ()) if version >= 5 else ((lead,), (lead,))
    common = {"storyboard_id": BOARD, "shot": "wide shot", "negative_prompt": "blurry"}
    return [
        {**common, "id": 1, "position": 1, "status": "done", "caption": "One.", "prompt": "red hair, One.", "seed": 40,
         "image_file": "frame-1-v1.png", "version": 1, "identity": IDENTITY, "attempts": 1, "error": None,
         "seconds": 2.5, "dropped": "dusty" if version >= 2 else None,
         "scene": "An old door." if version >= 4 else None, "cast": cast[0],
         "traits_dropped": {"Ilya": "beard"} if version >= 5 else None, "duration": None, "dialogue": None,
         # The panel drawn before takes is its first, by the board's mode; what ran is in its PNG.
         "take": 1, "takes": [{"id": 1, "parent": None, "seed": 40, "mode": "fast", "settings": None,
                               "image_file": "frame-1-v1.png", "identity": IDENTITY, "seconds": 2.5,
                               "created_at": CREATED, "layout": None}], "layout": None},
        {**common, "id": 2, "position": 2, "status": "pending", "caption": "Two.", "prompt": "red hair, Two.",
         "seed": 41, "image_file": None, "version": 0, "identity": None, "attempts": 0, "error": None,
         "seconds": None, "dropped": None, "scene": None, "cast": cast[1], "traits_dropped": None, "take": None,
         "takes": [], "duration": None, "dialogue": None, "layout": None},  # no layout before migration 10
    ]


def expected_params(version: int) -> BoardParams:
    # Every earlier studio stored the preset's fields apart (params schema 1 and 2); they read back whole.
    drawn = {**{k: v for k, v in OPTIONS.items() if k not in ("steps", "guidance_scale", "ip_adapter_scale")},
             "preset": SpeedPreset("fast", "Fast", 12, 6.5, 0.5)}
    if version < 5:
        return BoardParams(characters=(Character("", "red hair"),), style="ink", **drawn)
    return BoardParams(characters=(Character("Mara", "red hair"), Character("Ilya", "beard")), style="ink",
                       **drawn, notices=("The story has 2 lines, one panel each.",))


@pytest.fixture
def opened():
    stores = []

    def open_store(folder: Path) -> Store:
        stores.append(Store(folder))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


@pytest.mark.parametrize("version", range(1, LATEST))
def test_a_data_dir_of_every_shipped_version_opens_whole(tmp_path, opened, version):
    store = opened(data_dir_of(tmp_path, version))
    board = store.board(BOARD)
    assert {k: board[k] for k in ("title", "story", "status", "error", "created_at")} == {
        "title": "Old", "story": "One.\nTwo.", "status": "interrupted", "error": INTERRUPTED_MESSAGE,
        "created_at": CREATED}
    assert board["params"] == expected_params(version)
    assert board["frames"] == expected_frames(version, lead="")
    assert board["fps"] == 24.0  # boards from before frame rates play at film's
    if version < 5:
        assert board["references"] == {1: {"kind": "uploaded", "file": "reference.png"}}
        assert store.reference_pngs(board) == {1: FACE}
    else:
        assert store.reference_pngs(board) == {1: FACE, 2: SECOND_FACE}
    assert store.file_path(BOARD, board["frames"][0]["image_file"]).read_bytes() == PANEL


@pytest.mark.parametrize("version", range(1, LATEST))
def test_an_upgraded_board_resumes_its_interrupted_job(tmp_path, opened, version):
    store = opened(data_dir_of(tmp_path, version))
    store.resume(BOARD)
    job = store.next_job()
    assert (job["id"], job["starts"], job["cancel_requested"]) == (1, 2, 0)
    assert [f["status"] for f in store.board(BOARD)["frames"]] == ["done", "queued"]


@pytest.mark.parametrize("version", range(1, LATEST))
def test_every_upgrade_ends_at_the_schema_of_a_new_data_dir(tmp_path, opened, version):
    upgraded = opened(data_dir_of(tmp_path / "old", version))
    fresh = opened(tmp_path / "new")
    assert schema(upgraded._db) == schema(fresh._db)
    assert user_version(upgraded._db) == user_version(fresh._db) == LATEST


def test_the_legacy_columns_are_gone(tmp_path, opened):
    db = opened(data_dir_of(tmp_path, 1))._db
    assert not {"character", "style", "settings", "reference_kind", "reference_file"} & columns(db, "storyboards")
    assert "params" not in columns(db, "jobs")


def test_a_studio_stopped_halfway_through_its_own_upgrade_is_finished(tmp_path, opened):
    # The cast studio added its columns and table one statement at a time before renaming
    # settings; a stop in between left a version 4 database with some of version 5's parts.
    single_character_studio(tmp_path, 4)
    db = sqlite3.connect(tmp_path / "studio.sqlite3")
    db.executescript("ALTER TABLE frames ADD COLUMN cast_names TEXT;"
                     "CREATE TABLE board_references (storyboard_id TEXT NOT NULL, character INTEGER NOT NULL,"
                     " kind TEXT NOT NULL, file TEXT NOT NULL, PRIMARY KEY (storyboard_id, character));")
    db.close()
    board = opened(tmp_path).board(BOARD)
    assert board["frames"] == expected_frames(4, lead="") and board["params"] == expected_params(4)


def test_each_migration_is_one_transaction(tmp_path, monkeypatch):
    Store(tmp_path).close()

    def broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("simulated failure inside a migration")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    with pytest.raises(DatabaseDamaged):
        Store(tmp_path)
    db = sqlite3.connect(tmp_path / "studio.sqlite3")
    assert user_version(db) == LATEST and "half_done" not in tables(db)
    db.close()


def test_a_migration_that_orphans_panels_is_undone(tmp_path, monkeypatch):
    data_dir_of(tmp_path, 5)
    Store(tmp_path).close()

    def orphaning(db):
        db.execute("DELETE FROM storyboards")  # foreign keys are off while migrations run

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, orphaning))
    with pytest.raises(DatabaseDamaged, match="pointing at nothing"):
        Store(tmp_path)
    monkeypatch.undo()
    store = Store(tmp_path)
    assert len(store.board(BOARD)["frames"]) == 2
    store.close()


def test_a_database_from_a_newer_studio_is_refused_unchanged(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "studio.sqlite3")
    db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.close()
    before = (tmp_path / "studio.sqlite3").read_bytes()
    with pytest.raises(DatabaseTooNew) as caught:
        Store(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "studio.sqlite3") in message and f"version {LATEST + 1}" in message and "newer" in message
    assert (tmp_path / "studio.sqlite3").read_bytes() == before


def test_reopening_applies_nothing(tmp_path, opened, caplog):
    Store(tmp_path).close()
    caplog.set_level("INFO", logger="storage")
    opened(tmp_path)
    assert "upgraded" not in caplog.text


def schema(db: sqlite3.Connection) -> dict:
    """Each table's columns (name, type, not null, default, key) and each index, order aside."""
    described = {table: sorted(tuple(row[1:]) for row in db.execute(f"PRAGMA table_info({table})"))
                 for table in tables(db)}
    described["indexes"] = sorted(tuple(row) for row in db.execute(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
    return described


def tables(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]
