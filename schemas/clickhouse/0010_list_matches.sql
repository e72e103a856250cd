-- The list items a policy matched for a decision (Decision.Lists), as
-- parallel arrays: analysts can see which blocklist or allowlist entry
-- decided an event.
ALTER TABLE {db}.events ADD COLUMN list_ids Array(String) DEFAULT [];
ALTER TABLE {db}.events ADD COLUMN list_item_ids Array(String) DEFAULT [];
ALTER TABLE {db}.events ADD COLUMN list_fields Array(String) DEFAULT [];
