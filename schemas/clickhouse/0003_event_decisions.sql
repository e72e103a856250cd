-- The risk decision of each event, for analysts: scores, signals, the
-- policy that decided, and what contributed to the scores. Rows written
-- before this migration read the defaults (0 and empty).
ALTER TABLE {db}.events
    ADD COLUMN score_account_takeover Float64 DEFAULT 0,
    ADD COLUMN score_account_abuse Float64 DEFAULT 0,
    ADD COLUMN score_bot Float64 DEFAULT 0,
    ADD COLUMN signals Array(String),
    ADD COLUMN policy_id String,
    ADD COLUMN policy_name String,
    ADD COLUMN policy_revision_id String,
    ADD COLUMN contribution_names Array(String),
    ADD COLUMN contribution_values Array(Float64),
    ADD COLUMN ip_country String,
    ADD COLUMN ip_city String,
    ADD COLUMN ip_asn UInt32 DEFAULT 0,
    ADD COLUMN ip_isp String,
    ADD COLUMN ip_datacenter UInt8 DEFAULT 0,
    ADD COLUMN email_domain String,
    ADD COLUMN email_disposable UInt8 DEFAULT 0,
    ADD COLUMN trusted UInt8 DEFAULT 0;
