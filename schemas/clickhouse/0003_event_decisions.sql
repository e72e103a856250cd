-- The risk decision of each event, for analysts: scores, signals, the
-- policy that decided, and what contributed to the scores. Rows written
-- before this migration read the defaults (0 and empty). One column per
-- statement: 18.16 has no ADD COLUMN IF NOT EXISTS, so the migration runner
-- treats "column already exists" as done, statement by statement.
ALTER TABLE {db}.events ADD COLUMN score_account_takeover Float64 DEFAULT 0;
ALTER TABLE {db}.events ADD COLUMN score_account_abuse Float64 DEFAULT 0;
ALTER TABLE {db}.events ADD COLUMN score_bot Float64 DEFAULT 0;
ALTER TABLE {db}.events ADD COLUMN signals Array(String);
ALTER TABLE {db}.events ADD COLUMN policy_id String;
ALTER TABLE {db}.events ADD COLUMN policy_name String;
ALTER TABLE {db}.events ADD COLUMN policy_revision_id String;
ALTER TABLE {db}.events ADD COLUMN contribution_names Array(String);
ALTER TABLE {db}.events ADD COLUMN contribution_values Array(Float64);
ALTER TABLE {db}.events ADD COLUMN ip_country String;
ALTER TABLE {db}.events ADD COLUMN ip_city String;
ALTER TABLE {db}.events ADD COLUMN ip_asn UInt32 DEFAULT 0;
ALTER TABLE {db}.events ADD COLUMN ip_isp String;
ALTER TABLE {db}.events ADD COLUMN ip_datacenter UInt8 DEFAULT 0;
ALTER TABLE {db}.events ADD COLUMN email_domain String;
ALTER TABLE {db}.events ADD COLUMN email_disposable UInt8 DEFAULT 0;
ALTER TABLE {db}.events ADD COLUMN trusted UInt8 DEFAULT 0;
