-- hidden-device-tokens: tokens of phase 4 and refresh pairs of phase 5 (counted per refresh token)
-- whose device is hidden (skipped), has hidden NULL, or is a `guest_device` of a non-guest user (both
-- migrated as normal devices). Only tokens that would otherwise migrate count: the user exists, is no
-- application service, is active and no guest. Samples are "user_id device_id".
-- shape: detail
WITH tokens AS (
  SELECT p4.user_id, p4.device_id, 'access:' || CAST(p4.id AS TEXT) AS token_key
  FROM /* include: phase4-access-tokens */ p4
  WHERE p4.device_id IS NOT NULL
  UNION
  SELECT p5.user_id, p5.device_id, 'refresh:' || CAST(p5.refresh_id AS TEXT)
  FROM /* include: phase5-refresh-pairs */ p5
),
on_devices AS (
  SELECT t.user_id, t.device_id, t.token_key, d.hidden
  FROM tokens t
  JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
  JOIN users u ON u.name = t.user_id
  WHERE u.appservice_id IS NULL AND u.deactivated = 0 AND u.is_guest = 0
)
SELECT CASE
         WHEN hidden IS NULL THEN 'hidden-null'
         WHEN hidden = TRUE THEN 'hidden'
         ELSE 'guest-device'
       END AS grp,
       user_id || ' ' || device_id AS sample,
       token_key AS unit
FROM on_devices
WHERE hidden IS NULL OR hidden = TRUE OR device_id = 'guest_device'
