-- The policies the change guard accepted (checked, or confirmed), by a
-- fingerprint of their rules: a restart does not hold them again.
CREATE TABLE accepted_policies (
    policy TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    accepted_at TEXT NOT NULL
);
