"""Data migration from Synapse's database into MAS's PostgreSQL database (data-migration.md)."""
