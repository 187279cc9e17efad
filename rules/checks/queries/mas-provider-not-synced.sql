-- mas-provider-not-synced: MAS providers that will receive links but are missing from
-- `upstream_oauth_providers` or disabled there. The providers come from the MAS configuration
-- (`synapse_idp_id` is not stored in the database), as parallel arrays.
SELECT cfg.synapse_idp_id, cfg.provider_id,
       p.upstream_oauth_provider_id IS NOT NULL AS present,
       p.disabled_at IS NOT NULL AS disabled
FROM unnest(CAST(:linked_provider_keys AS text[]), CAST(:linked_provider_ids AS text[]),
            CAST(:linked_provider_uuids AS uuid[])) AS cfg(synapse_idp_id, provider_id, provider_uuid)
LEFT JOIN upstream_oauth_providers p ON p.upstream_oauth_provider_id = cfg.provider_uuid
WHERE p.upstream_oauth_provider_id IS NULL OR p.disabled_at IS NOT NULL
ORDER BY cfg.synapse_idp_id, cfg.provider_id
