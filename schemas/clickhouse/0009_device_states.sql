-- The device state the devices API reads. Same aggregates as `devices`
-- (0001), tuned for point reads of one user's devices: a small index
-- granularity (a user's rows are a few granules of 256 instead of one of
-- 8192 rows of aggregate states to deserialize per part), and the last
-- seen ip and user agent in one argMax state instead of nine. `devices`
-- stays for analysts (it also counts events).
CREATE TABLE IF NOT EXISTS {db}.device_states
(
    app_id          String,
    user_id         String,
    device_token    String,
    fingerprint     AggregateFunction(any, String),
    first_seen_ms   AggregateFunction(min, UInt64),
    last_seen_ms    AggregateFunction(max, UInt64),
    -- (ip, ua_raw, ua_browser, ua_browser_version, ua_os, ua_os_version,
    --  ua_platform, ua_device_family, ua_device_type) of the latest event
    last_event      AggregateFunction(argMax, Tuple(String, String, String, String, String, String, String, String, String), UInt64)
)
ENGINE = AggregatingMergeTree()
ORDER BY (app_id, user_id, device_token)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.device_states_mv TO {db}.device_states AS
SELECT
    app_id,
    user_id,
    device_token,
    anyState(fingerprint)           AS fingerprint,
    minState(received_at_ms)        AS first_seen_ms,
    maxState(received_at_ms)        AS last_seen_ms,
    argMaxState(tuple(ip, ua_raw, ua_browser, ua_browser_version, ua_os, ua_os_version, ua_platform, ua_device_family, ua_device_type),
                received_at_ms)     AS last_event
FROM {db}.events
WHERE device_token != ''
GROUP BY app_id, user_id, device_token;

-- Backfill from the timeline. Events the view above already folded are
-- folded again, which these aggregates absorb (min, max, any, argMax).
INSERT INTO {db}.device_states (app_id, user_id, device_token, fingerprint, first_seen_ms, last_seen_ms, last_event)
SELECT
    app_id,
    user_id,
    device_token,
    anyState(fingerprint),
    minState(received_at_ms),
    maxState(received_at_ms),
    argMaxState(tuple(ip, ua_raw, ua_browser, ua_browser_version, ua_os, ua_os_version, ua_platform, ua_device_family, ua_device_type), received_at_ms)
FROM {db}.events
WHERE device_token != ''
GROUP BY app_id, user_id, device_token;
