-- Which business holds which shard of a bulk lane, so that businesses
-- publishing backfills at the same time share the lane fairly. A row lives
-- while its business publishes: a worker gives a shard to a business it
-- sees in the bulk queue, bumps `last_seen` while the shard's deliveries
-- carry it, and takes the shard back once it has been idle and is empty.
-- Keyed by the bulk exchange, so that deployments sharing a database keep
-- their own shards.
CREATE TABLE bulk_shard (
    bulk_exchange text NOT NULL,
    shard smallint NOT NULL,
    bk_biz_id bigint NOT NULL,
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bulk_exchange, shard),
    UNIQUE (bulk_exchange, bk_biz_id)
);
