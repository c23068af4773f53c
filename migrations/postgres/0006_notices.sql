-- The outbox of notices (warn_before): each is delivered until a channel
-- takes it, across restarts and outages. `dedup` makes one warning per
-- instance per pending action. The body is the message as JSON: what
-- happens to which instance, never a URL or a token (links are signed as
-- they are sent).
CREATE TABLE notices (
    id BIGSERIAL PRIMARY KEY,
    dedup TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    instance TEXT NOT NULL,
    action TEXT NOT NULL,
    occasion TIMESTAMPTZ,
    body TEXT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    last_error TEXT
);
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX notices_by_queued ON notices (queued_at);
