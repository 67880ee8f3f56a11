"""The store on its own: schema upgrades and atomic writes."""

import sqlite3

from storage import SCHEMA, Store, write_atomic


def test_a_data_directory_from_before_the_dropped_column_is_upgraded(tmp_path):
    old = sqlite3.connect(tmp_path / "studio.sqlite3")
    old.executescript(SCHEMA.replace("    dropped TEXT,\n", ""))
    old.close()
    store = Store(tmp_path)
    columns = {row[1] for row in store._db.execute("PRAGMA table_info(frames)")}
    store.close()
    assert "dropped" in columns


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    write_atomic(tmp_path / "a.png", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and (tmp_path / "a.png").read_bytes() == b"data"
