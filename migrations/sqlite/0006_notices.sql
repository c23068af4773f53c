-- The outbox of notices (warn_before): each is delivered until a channel
-- takes it, across restarts and outages. `dedup` makes one warning per
-- instance per pending action. The body is the message as JSON: what
-- happens to which instance, never a URL or a token (links are signed as
-- they are sent).
CREATE TABLE notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    instance TEXT NOT NULL,
    action TEXT NOT NULL,
    occasion TEXT,
    body TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX notices_by_queued ON notices (queued_at);
