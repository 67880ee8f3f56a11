-- storage.SCHEMA as the studio shipped it at commit de896c4 (git show de896c4:storage.py), unchanged.
CREATE TABLE IF NOT EXISTS storyboards (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    story TEXT NOT NULL,
    character TEXT NOT NULL,  -- the first character's traits (the cast is in params)
    style TEXT NOT NULL,
    params TEXT NOT NULL,  -- board_params.BoardParams as JSON, with its schema version
    reference_kind TEXT,  -- before the cast: the one reference (now in board_references)
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
    cast_names TEXT,  -- JSON list of the names in the panel; NULL (from before the cast): the first character
    traits_dropped TEXT,  -- JSON {name: trait phrases cut to fit CLIP's 77 tokens}
    PRIMARY KEY (storyboard_id, id)
);
CREATE TABLE IF NOT EXISTS board_references (
    storyboard_id TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
    character INTEGER NOT NULL,  -- 1-based place in the board's cast
    kind TEXT NOT NULL,  -- uploaded | generated
    file TEXT NOT NULL,
    PRIMARY KEY (storyboard_id, character)
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
