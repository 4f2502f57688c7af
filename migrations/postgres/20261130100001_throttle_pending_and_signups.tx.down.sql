DROP TABLE IF EXISTS signup_throttle;

--bun:split

ALTER TABLE login_throttle DROP COLUMN pending;
