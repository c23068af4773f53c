-- The spend ledger. Money is integer millionths of a yuan (BIGINT), times
-- are UTC. Nothing secret is ever stored: no tokens, passwords or URLs.

-- A SKU's prices and free GPUs, written only when one of them changes.
CREATE TABLE price_samples (
    id BIGSERIAL PRIMARY KEY,
    sku_id TEXT NOT NULL,
    region_id TEXT NOT NULL,
    sku_name TEXT NOT NULL,
    gpu_product TEXT NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL,
    price_per_hour_micros BIGINT NOT NULL,
    discount_ratio_ppm BIGINT,
    discount_start TIMESTAMPTZ,
    discount_end TIMESTAMPTZ,
    effective_price_per_hour_micros BIGINT NOT NULL,
    free_gpus BIGINT NOT NULL
);
CREATE INDEX price_samples_by_sku ON price_samples (sku_id, observed_at);

-- Every instance ever seen, as last seen.
CREATE TABLE instances (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    policy TEXT,
    sku_id TEXT NOT NULL,
    billing_type TEXT NOT NULL,
    gpu_product TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    gone_at TIMESTAMPTZ
);

-- Status changes as observed; `gone` when an instance disappears.
CREATE TABLE transitions (
    id BIGSERIAL PRIMARY KEY,
    instance TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL
);
CREATE INDEX transitions_by_instance ON transitions (instance, at);

-- Billed running time at one price: open while ended_at is NULL. The amount
-- of an open segment is computed when read, so a steady cycle writes nothing.
CREATE TABLE usage_segments (
    id BIGSERIAL PRIMARY KEY,
    instance TEXT NOT NULL,
    display_name TEXT NOT NULL,
    policy TEXT,
    sku_id TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    price_per_hour_micros BIGINT NOT NULL,
    amount_micros BIGINT
);
CREATE INDEX usage_segments_open ON usage_segments (instance) WHERE ended_at IS NULL;
CREATE INDEX usage_segments_by_time ON usage_segments (started_at, ended_at);

-- Actions from intent (outcome NULL) to outcome.
CREATE TABLE actions (
    id BIGSERIAL PRIMARY KEY,
    planned_at TIMESTAMPTZ NOT NULL,
    policy TEXT NOT NULL,
    kind TEXT NOT NULL,
    instance TEXT NOT NULL,
    display_name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    cause TEXT NOT NULL,
    reason TEXT NOT NULL,
    saving_per_hour_micros BIGINT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    snapshot_image TEXT,
    snapshot_tag TEXT,
    schedule_edge TIMESTAMPTZ,
    outcome TEXT,
    error TEXT,
    finished_at TIMESTAMPTZ
);
CREATE INDEX actions_by_time ON actions (planned_at);
CREATE INDEX actions_unfinished ON actions (id) WHERE outcome IS NULL;

-- The last schedule edge applied to each instance.
CREATE TABLE schedule_marks (
    instance TEXT PRIMARY KEY,
    edge TIMESTAMPTZ NOT NULL
);

CREATE TABLE heartbeats (
    instance TEXT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL
);

CREATE TABLE snoozes (
    instance TEXT PRIMARY KEY,
    until TIMESTAMPTZ NOT NULL
);

-- When the cloud was last observed whole (one row): the edge of any gap.
CREATE TABLE observations (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_at TIMESTAMPTZ NOT NULL
);
