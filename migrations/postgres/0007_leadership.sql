-- Replicas: one row per election the leader won (see src/ledger/leadership.rs),
-- the newest being the epoch in force, and the epoch each action's intent
-- was written under. An intent is written only while its epoch is the
-- newest, so a deposed leader's late intents are refused. Epoch 0 is a
-- daemon that runs alone.
CREATE TABLE elections (
    epoch BIGINT PRIMARY KEY,
    replica TEXT NOT NULL,
    elected_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE actions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
