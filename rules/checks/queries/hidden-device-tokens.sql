-- hidden-device-tokens: tokens of phase 4 and refresh pairs of phase 5 (counted per refresh token)
-- whose device is hidden (skipped), has hidden NULL, or is a `guest_device` of a non-guest user (both
-- migrated as normal devices). Only tokens that would otherwise migrate count: the user exists, is no
-- application service, is active and no guest. Samples are "user_id device_id".
--
-- The phase conditions are those of fragments/phase4-access-tokens.sql and phase5-refresh-pairs.sql
-- minus their "device row exists" test, which the join with `devices` states here
-- (tests/engine/test_dbrules_equivalence.py pins this query to the fragments); the successor test is a
-- plain NOT EXISTS (an anti-join; the fragment's OR form becomes a subplan). `hidden IS NOT FALSE`
-- is `hidden IS NULL OR hidden = TRUE` in one test (a fifth of the device scan's cost).
-- Joining every token with every flagged device costs a hash of a million devices probed by millions
-- of tokens. Equal ids have equal lengths, and login device ids (10 letters), cross-signing keys (43
-- characters) and `guest_device` rarely share one: a token whose device id has no flagged device's
-- length cannot be on a flagged device (lengths in bytes: octet_length does not count UTF-8
-- characters, a third of the scans' cost; syn2mas supplies it to SQLite before 3.43), so usually no
-- token is left to join, and PostgreSQL then skips the hash of the flagged devices altogether. The
-- refresh tokens are pruned by length before their joins: PostgreSQL, which underestimates the pairs'
-- join (its three conditions are correlated), would otherwise test the length only after joining and
-- anti-joining every pair (0.45 s at 1M users); the LIMIT, which no table reaches, keeps the planner
-- from moving the test (a fence both dialects accept, unlike OFFSET 0 alone).
-- cost: 1.0
-- shape: detail
WITH flagged_lengths AS (
  SELECT DISTINCT octet_length(d.device_id) AS n
  FROM devices d
  WHERE d.hidden IS NOT FALSE OR d.device_id = 'guest_device'
)
SELECT CASE
         WHEN d.hidden IS NULL THEN 'hidden-null'
         WHEN d.hidden = TRUE THEN 'hidden'
         ELSE 'guest-device'
       END AS grp,
       t.user_id || ' ' || t.device_id AS sample,
       t.token_key AS unit
FROM (
  SELECT a.user_id, a.device_id, 'access:' || CAST(a.id AS TEXT) AS token_key
  FROM access_tokens a
  WHERE a.puppets_user_id IS NULL
    AND a.refresh_token_id IS NULL
    AND a.device_id IS NOT NULL
    AND octet_length(a.device_id) IN (SELECT n FROM flagged_lengths)
  UNION ALL
  SELECT r.user_id, r.device_id, 'refresh:' || CAST(r.id AS TEXT)
  FROM (SELECT r0.id, r0.user_id, r0.device_id, r0.next_token_id
        FROM refresh_tokens r0
        WHERE octet_length(r0.device_id) IN (SELECT n FROM flagged_lengths)
        LIMIT 9223372036854775807) r
  JOIN access_tokens a ON a.refresh_token_id = r.id AND a.user_id = r.user_id AND a.device_id = r.device_id
  WHERE a.refresh_token_id IS NOT NULL
    AND a.puppets_user_id IS NULL
    -- (a NULL next_token_id matches no row: the pair is kept, as the fragment's explicit test says)
    AND NOT EXISTS (SELECT 1 FROM access_tokens n WHERE n.refresh_token_id = r.next_token_id AND n.used = TRUE)
) t
JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
JOIN users u ON u.name = t.user_id
WHERE (d.hidden IS NOT FALSE OR d.device_id = 'guest_device')
  AND u.appservice_id IS NULL AND u.deactivated = 0 AND u.is_guest = 0
