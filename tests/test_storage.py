"""The store on its own: atomic writes. (Schema upgrades: test_migrations.py; a board's
life, event by event: test_store_transitions.py.)"""

from storage import write_atomic


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    write_atomic(tmp_path / "a.png", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and (tmp_path / "a.png").read_bytes() == b"data"
