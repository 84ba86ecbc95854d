"""The SQLite store's tables and indexes, created on open (``CREATE ... IF NOT EXISTS``)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    ephemeral INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS functions (
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    options TEXT NOT NULL,
    code BLOB NOT NULL,
    runtime_env TEXT NOT NULL,
    PRIMARY KEY (app, version, name)
);
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    expired INTEGER NOT NULL DEFAULT 0,
    args BLOB,
    result BLOB,
    result_json TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    error_blob BLOB,
    logs TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    call_ids TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- the values a generator call yielded, in order (``remote_gen``)
CREATE TABLE IF NOT EXISTS call_values (
    call_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (call_id, idx)
) WITHOUT ROWID;
-- which call spawned which (``FunctionCall.get_call_graph``)
CREATE TABLE IF NOT EXISTS call_children (
    parent_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
-- a call's parent, for the root of its call graph
CREATE INDEX IF NOT EXISTS call_children_child ON call_children (child_id);
-- dispatch takes the oldest queued calls of one function: O(log n) whatever the queue
CREATE INDEX IF NOT EXISTS calls_queue ON calls (app, function, state, id);
-- the sweeper finds finished calls past retention without scanning the rest
CREATE INDEX IF NOT EXISTS calls_expiry ON calls (expires_at) WHERE expired = 0;
-- ... and Idempotency-Keys past retention
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);
-- Dicts and Queues (``rayfn.Dict``, ``rayfn.Queue``), by kind and name
CREATE TABLE IF NOT EXISTS kv_objects (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ephemeral INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
-- a Dict's entries: keys and values pickled by the SDK, compared as bytes
CREATE TABLE IF NOT EXISTS dict_entries (
    dict TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (dict, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dict_entries_age ON dict_entries (updated_at);
-- a Queue's partitions ("" is the default one): when each expires, and its next seq
CREATE TABLE IF NOT EXISTS queue_partitions (
    queue TEXT NOT NULL,
    partition TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, partition)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_partitions_expiry ON queue_partitions (expires_at);
-- a partition's items in put order: a get takes the lowest seqs
CREATE TABLE IF NOT EXISTS queue_items (
    queue TEXT NOT NULL,
    partition TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value BLOB NOT NULL,
    put_at REAL NOT NULL,
    PRIMARY KEY (queue, partition, seq)
) WITHOUT ROWID;
-- a deployed function's schedule (rayfn.Period, rayfn.Cron) and when it fires next
CREATE TABLE IF NOT EXISTS schedules (
    app TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    next_fire REAL NOT NULL,
    last_fire REAL,
    skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, function)
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_fire);
-- a Secret's environment variables (a JSON object of str), set in its functions' calls
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    created_at REAL,
    updated_at REAL
);
"""
