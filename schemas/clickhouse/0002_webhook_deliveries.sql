-- Webhook delivery log: one row per attempt the webhooker made (or deferred)
-- to deliver a notification to an app's endpoint.
-- outcome: delivered | retry | dead | deferred (a sick or saturated endpoint,
-- no request sent). status is the HTTP status, 0 without a response.
-- Rows are facts, never updated: plain MergeTree.
CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries
(
    app_id           String,
    endpoint_id      String,
    delivery_id      String,
    notification_id  String,
    type             String,
    attempt          UInt16,
    outcome          String,
    status           UInt16,
    latency_ms       UInt32,
    error            String,
    at               DateTime('UTC'),
    at_ms            UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (app_id, endpoint_id, at_ms, delivery_id, attempt)
SETTINGS index_granularity = 8192;
