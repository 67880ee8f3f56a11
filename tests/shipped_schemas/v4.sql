-- storage.SCHEMA as the studio shipped it at commit 6fb3259 (git show 6fb3259:storage.py), unchanged.
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
    scene TEXT,
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
