-- Timeline of every accepted call, one row per event id.
-- Redelivery and replay insert the same row again; ReplacingMergeTree folds
-- the copies (same sorting key) and FINAL hides them before the merge.
CREATE TABLE IF NOT EXISTS {db}.events
(
    app_id              String,
    id                  UUID,
    kind                String,
    type                String,
    status              String,
    name                String,
    legacy_event        String,
    user_id             String,
    user_email          String,
    user_traits         String,
    ip                  String,
    header_names        Array(String),
    header_values       Array(String),
    request_token       String,
    client_id           String,
    library             String,
    properties          String,
    extra               String,
    created_at_ms       Int64,
    received_at         DateTime('UTC'),
    received_at_ms      UInt64,
    device_token        String,
    fingerprint         String,
    ua_raw              String,
    ua_browser          String,
    ua_browser_version  String,
    ua_browser_type     String,
    ua_engine           String,
    ua_os               String,
    ua_os_version       String,
    ua_platform         String,
    ua_device_family    String,
    ua_device_brand     String,
    ua_device_model     String,
    ua_device_type      String,
    risk                Float64,
    action              String,
    kafka_partition     Int32,
    kafka_offset        Int64,
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(received_at)
ORDER BY (app_id, user_id, received_at_ms, id)
SETTINGS index_granularity = 8192;

-- Latest state per app, user and device, folded from the timeline by a
-- materialized view. Every aggregate is idempotent under duplicate inserts
-- (min, max, argMax, uniqExact over event ids), so redelivered events never
-- inflate a device's counters.
CREATE TABLE IF NOT EXISTS {db}.devices
(
    app_id              String,
    user_id             String,
    device_token        String,
    fingerprint         AggregateFunction(any, String),
    first_seen_ms       AggregateFunction(min, UInt64),
    last_seen_ms        AggregateFunction(max, UInt64),
    last_ip             AggregateFunction(argMax, String, UInt64),
    ua_raw              AggregateFunction(argMax, String, UInt64),
    ua_browser          AggregateFunction(argMax, String, UInt64),
    ua_browser_version  AggregateFunction(argMax, String, UInt64),
    ua_os               AggregateFunction(argMax, String, UInt64),
    ua_os_version       AggregateFunction(argMax, String, UInt64),
    ua_platform         AggregateFunction(argMax, String, UInt64),
    ua_device_family    AggregateFunction(argMax, String, UInt64),
    ua_device_type      AggregateFunction(argMax, String, UInt64),
    event_ids           AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree()
ORDER BY (app_id, user_id, device_token);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.devices_mv TO {db}.devices AS
SELECT
    app_id,
    user_id,
    device_token,
    anyState(fingerprint)                            AS fingerprint,
    minState(received_at_ms)                         AS first_seen_ms,
    maxState(received_at_ms)                         AS last_seen_ms,
    argMaxState(ip, received_at_ms)                  AS last_ip,
    argMaxState(ua_raw, received_at_ms)              AS ua_raw,
    argMaxState(ua_browser, received_at_ms)          AS ua_browser,
    argMaxState(ua_browser_version, received_at_ms)  AS ua_browser_version,
    argMaxState(ua_os, received_at_ms)               AS ua_os,
    argMaxState(ua_os_version, received_at_ms)       AS ua_os_version,
    argMaxState(ua_platform, received_at_ms)         AS ua_platform,
    argMaxState(ua_device_family, received_at_ms)    AS ua_device_family,
    argMaxState(ua_device_type, received_at_ms)      AS ua_device_type,
    uniqExactState(id)                               AS event_ids
FROM {db}.events
WHERE device_token != ''
GROUP BY app_id, user_id, device_token;

-- The device state analysts read: one row per app, user and device.
CREATE VIEW IF NOT EXISTS {db}.devices_state AS
SELECT
    app_id,
    user_id,
    device_token,
    anyMerge(fingerprint)               AS fingerprint,
    minMerge(first_seen_ms)             AS first_seen_ms,
    maxMerge(last_seen_ms)              AS last_seen_ms,
    argMaxMerge(last_ip)                AS last_ip,
    argMaxMerge(ua_raw)                 AS ua_raw,
    argMaxMerge(ua_browser)             AS ua_browser,
    argMaxMerge(ua_browser_version)     AS ua_browser_version,
    argMaxMerge(ua_os)                  AS ua_os,
    argMaxMerge(ua_os_version)          AS ua_os_version,
    argMaxMerge(ua_platform)            AS ua_platform,
    argMaxMerge(ua_device_family)       AS ua_device_family,
    argMaxMerge(ua_device_type)         AS ua_device_type,
    uniqExactMerge(event_ids)           AS event_count
FROM {db}.devices
GROUP BY app_id, user_id, device_token;
