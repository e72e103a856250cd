-- Events sent while the user was impersonated by support staff: kept in the
-- timeline, marked here, with no device_token (they create no device).
ALTER TABLE {db}.events ADD COLUMN impersonated UInt8 DEFAULT 0;
