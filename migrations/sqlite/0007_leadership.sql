-- Replicas elect a leader on PostgreSQL only; the table and column keep the
-- two schemas alike (a SQLite ledger's daemon runs alone: epoch 0).
CREATE TABLE elections (
    epoch BIGINT PRIMARY KEY,
    replica TEXT NOT NULL,
    elected_at TEXT NOT NULL
);
ALTER TABLE actions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
