-- Device commands (kind device.approve / device.report) name their device
-- here rather than in device_token, so they never count as the device
-- being seen (devices_mv folds rows with a device_token).
ALTER TABLE {db}.events ADD COLUMN target_device_token String;
