DROP TABLE IF EXISTS device_tokens;
