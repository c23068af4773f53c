-- When a managed instance was in use, as its idle signals tell: open while
-- ended_at is NULL. A span starts at the first look that sees the instance
-- in use (exactly when someone started it) and ends at the last activity the
-- signals report. `trace export` turns them into a trace's sessions.
CREATE TABLE use_spans (
    id BIGSERIAL PRIMARY KEY,
    instance TEXT NOT NULL,
    display_name TEXT NOT NULL,
    policy TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ
);
CREATE INDEX use_spans_open ON use_spans (instance) WHERE ended_at IS NULL;
CREATE INDEX use_spans_by_time ON use_spans (started_at, ended_at);

-- What a trace needs of a SKU besides its prices.
ALTER TABLE price_samples ADD COLUMN cluster TEXT NOT NULL DEFAULT '';
ALTER TABLE price_samples ADD COLUMN gpu_resource_key TEXT NOT NULL DEFAULT '';
ALTER TABLE price_samples ADD COLUMN gpu_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE price_samples ADD COLUMN gpu_memory_gb BIGINT NOT NULL DEFAULT 0;
ALTER TABLE price_samples ADD COLUMN cpu_cores BIGINT NOT NULL DEFAULT 0;
ALTER TABLE price_samples ADD COLUMN memory_gb BIGINT NOT NULL DEFAULT 0;
