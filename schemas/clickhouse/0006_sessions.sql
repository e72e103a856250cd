-- Sessions. The scorer derives them from events (a successful $login starts
-- one, $logout ends it, activity extends it, inactivity and the end-user
-- commands signout, forget and hijack end it) and every decision carries the
-- sessions it changed, with their new state, as parallel arrays on the
-- event's row. End-user commands (device.verify, device.hijack, ...) name
-- their device in target_device_token, like device.approve.
ALTER TABLE {db}.events ADD COLUMN session_uuids Array(String);
ALTER TABLE {db}.events ADD COLUMN session_ids Array(String);
ALTER TABLE {db}.events ADD COLUMN session_device_tokens Array(String);
ALTER TABLE {db}.events ADD COLUMN session_statuses Array(String);
ALTER TABLE {db}.events ADD COLUMN session_reasons Array(String);
ALTER TABLE {db}.events ADD COLUMN session_started_ms Array(UInt64);
ALTER TABLE {db}.events ADD COLUMN session_last_activity_ms Array(UInt64);
ALTER TABLE {db}.events ADD COLUMN session_ended_ms Array(UInt64);

-- One row per app, user and session after merges, folded from the events'
-- session changes. Every aggregate is idempotent under redelivered rows.
-- ended_ms is 0 while the session is active; end_status and end_reason are
-- taken from the change with the latest end.
CREATE TABLE IF NOT EXISTS {db}.sessions
(
    app_id            String,
    user_id           String,
    session_uuid      String,
    session_id        AggregateFunction(any, String),
    device_token      AggregateFunction(any, String),
    started_ms        AggregateFunction(min, UInt64),
    last_activity_ms  AggregateFunction(max, UInt64),
    ended_ms          AggregateFunction(max, UInt64),
    end_status        AggregateFunction(argMax, String, UInt64),
    end_reason        AggregateFunction(argMax, String, UInt64)
)
ENGINE = AggregatingMergeTree()
ORDER BY (app_id, user_id, session_uuid);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.sessions_mv TO {db}.sessions AS
SELECT
    app_id,
    user_id,
    s_uuid                       AS session_uuid,
    anyState(s_id)               AS session_id,
    anyState(s_device)           AS device_token,
    minState(s_started)          AS started_ms,
    maxState(s_last)             AS last_activity_ms,
    maxState(s_ended)            AS ended_ms,
    argMaxState(s_status, s_ended) AS end_status,
    argMaxState(s_reason, s_ended) AS end_reason
FROM {db}.events
ARRAY JOIN
    session_uuids            AS s_uuid,
    session_ids              AS s_id,
    session_device_tokens    AS s_device,
    session_statuses         AS s_status,
    session_reasons          AS s_reason,
    session_started_ms       AS s_started,
    session_last_activity_ms AS s_last,
    session_ended_ms         AS s_ended
GROUP BY app_id, user_id, s_uuid;

-- The sessions analysts read: one row per app, user and session. status is
-- active, finished or blocked as of the last event of the user the scorer
-- saw; an active session idle for longer than the session timeout (20
-- minutes by default) is finished as of last_activity_ms + the timeout,
-- which the scorer records with the user's next event.
CREATE VIEW IF NOT EXISTS {db}.sessions_state AS
SELECT
    app_id,
    user_id,
    session_uuid,
    session_id,
    device_token,
    started_ms,
    last_activity_ms,
    ended_ms,
    if(ended_ms = 0, 'active', last_status)  AS status,
    if(ended_ms = 0, '', last_reason)        AS end_reason
FROM
(
    SELECT
        app_id,
        user_id,
        session_uuid,
        anyMerge(session_id)        AS session_id,
        anyMerge(device_token)      AS device_token,
        minMerge(started_ms)        AS started_ms,
        maxMerge(last_activity_ms)  AS last_activity_ms,
        maxMerge(ended_ms)          AS ended_ms,
        argMaxMerge(end_status)     AS last_status,
        argMaxMerge(end_reason)     AS last_reason
    FROM {db}.sessions
    GROUP BY app_id, user_id, session_uuid
);
