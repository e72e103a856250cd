-- Which user each device token belongs to. The devices table is sorted by
-- (app_id, user_id, device_token), so GET /v1/devices/{token} first finds
-- the user here by primary key instead of scanning all the app's devices.
CREATE TABLE IF NOT EXISTS {db}.device_users
(
    app_id        String,
    device_token  String,
    user_id       String
)
ENGINE = ReplacingMergeTree()
ORDER BY (app_id, device_token, user_id)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.device_users_mv TO {db}.device_users AS
SELECT app_id, device_token, user_id
FROM {db}.events
WHERE device_token != ''
GROUP BY app_id, device_token, user_id;

-- Backfill the devices seen before this migration. Running it twice only
-- adds duplicates, which ReplacingMergeTree folds.
INSERT INTO {db}.device_users (app_id, device_token, user_id)
SELECT app_id, device_token, user_id
FROM {db}.devices
GROUP BY app_id, device_token, user_id;
