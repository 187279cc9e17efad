"""The migrator's own pre-flight guard on the Synapse side (data-migration.md §14.2).

Runs inside the migration's Synapse snapshot before anything is written, and refuses when the data
holds something the pipeline cannot migrate: `foreign-server-users`, `orphan-rows`,
`oauth-delegated-leftovers`, unmapped providers (`auth-provider-*`, unless ignored) and
`duplicate-upstream-links`. The full database check rules (engine/dbchecks.py) report the same ids
with richer messages; this guard uses the same selections so that "check passes" ⇒ "migrate starts".
Samples are user ids only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import Syn2MasError

from .source import SynapseSource

SAMPLE_LIMIT = 5


@dataclass
class Problem:
    """One blocking condition: check id, what, how many, a few user-id samples."""

    check_id: str
    message: str
    count: int
    samples: list[str] = field(default_factory=list)


class MigrationRefused(Syn2MasError):
    """The Synapse data has blocking problems; nothing was written (exit 10)."""

    exit_code = 10

    def __init__(self, problems: list[Problem]):
        lines = [f"{p.check_id}: {p.message} ({p.count})" + (f", e.g. {', '.join(p.samples)}" if p.samples else "")
                 for p in problems]
        super().__init__("migration refused, nothing was written:\n  " + "\n  ".join(lines),
                         hint="run `syn2mas check` for details and remediation")
        self.problems = problems


def foreign_user_condition(source: SynapseSource) -> str:
    """SQL predicate on `users u`: the user id is not `@<localpart without ':'>:<server_name>`."""
    head = "substr(u.name, 1, length(u.name) - length(:suffix))"
    return ("(u.name IS NULL OR substr(u.name, 1, 1) <> '@' OR length(u.name) <= length(:suffix) "
            "OR substr(u.name, length(u.name) - length(:suffix) + 1) <> :suffix "
            f"OR {source.instr(head, chr(39) + ':' + chr(39))} > 0)")


# Rows `migrate` reads (§3) whose user does not exist, per table (`orphan-rows`).
ORPHAN_QUERIES: dict[str, str] = {
    "user_threepids": "SELECT t.user_id FROM user_threepids t WHERE NOT EXISTS "
                      "(SELECT 1 FROM users u WHERE u.name = t.user_id)",
    "user_external_ids": "SELECT e.user_id FROM user_external_ids e WHERE NOT EXISTS "
                         "(SELECT 1 FROM users u WHERE u.name = e.user_id)",
    # phase 4 selection (the reference's: device present, hidden or not)
    "access_tokens": "SELECT a.user_id FROM access_tokens a WHERE a.puppets_user_id IS NULL "
                     "AND a.refresh_token_id IS NULL AND (a.device_id IS NULL OR EXISTS (SELECT 1 FROM devices d "
                     "WHERE d.user_id = a.user_id AND d.device_id = a.device_id)) "
                     "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = a.user_id)",
    # phase 5 selection: non-puppet pairs with a matching refresh token and device row, not superseded
    # (the same selection as rules/checks/queries/fragments/phase5-refresh-pairs.sql)
    "refresh_tokens": "SELECT a.user_id FROM access_tokens a JOIN refresh_tokens r ON r.id = a.refresh_token_id "
                      "AND r.user_id = a.user_id AND r.device_id = a.device_id JOIN devices d "
                      "ON d.user_id = r.user_id AND d.device_id = r.device_id "
                      "WHERE a.puppets_user_id IS NULL AND (r.next_token_id IS NULL OR NOT EXISTS "
                      "(SELECT 1 FROM access_tokens n WHERE n.refresh_token_id = r.next_token_id AND n.used IS TRUE)) "
                      "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = a.user_id)",
    "devices": "SELECT d.user_id FROM devices d WHERE d.hidden IS NOT TRUE "
               "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = d.user_id)",
}


def _count_and_samples(source: SynapseSource, query: str, params: dict) -> tuple[int, list[str]]:
    n = int(source.scalar(f"SELECT count(*) FROM ({query}) q", params) or 0)
    samples: list[str] = []
    if n:
        rows = source.fetchall(f"SELECT DISTINCT * FROM ({query}) q ORDER BY 1 LIMIT {SAMPLE_LIMIT}", params)
        samples = [str(r[0]) for r in rows]
    return n, samples


def synapse_problems(source: SynapseSource, *, server_name: str, mapping: dict[str, str],
                     ignore_missing_providers: bool) -> list[Problem]:
    """Every blocking condition of the Synapse data for this migration (empty: the pipeline can run)."""
    problems: list[Problem] = []
    params = {"suffix": ":" + server_name}
    n, samples = _count_and_samples(
        source, "SELECT u.name FROM users u WHERE u.appservice_id IS NULL AND " + foreign_user_condition(source),
        params)
    if n:
        problems.append(Problem("foreign-server-users", f"user ids that are not `@localpart:{server_name}`",
                                n, samples))
    for table, query in ORPHAN_QUERIES.items():
        n, samples = _count_and_samples(source, query, {})
        if n:
            problems.append(Problem("orphan-rows", f"`{table}` rows whose user does not exist", n, samples))
    delegated = int(source.scalar("SELECT count(*) FROM user_external_ids WHERE auth_provider = 'oauth-delegated'")
                    or 0)
    if delegated:
        problems.append(Problem("oauth-delegated-leftovers", "`user_external_ids` rows with auth_provider "
                                "`oauth-delegated`", delegated))
    used = source.fetchall("SELECT e.auth_provider, count(*) FROM user_external_ids e JOIN users u "
                           "ON u.name = e.user_id WHERE u.appservice_id IS NULL "
                           "AND e.auth_provider <> 'oauth-delegated' GROUP BY e.auth_provider ORDER BY 1")
    if not ignore_missing_providers:
        for provider, count in used:
            if provider not in mapping:
                problems.append(Problem("auth-provider-missing-in-mas",
                                        f"links to Synapse provider `{provider}`, which no MAS provider maps "
                                        "(`synapse_idp_id`)", int(count)))
    problems.extend(_duplicate_links(source, mapping))
    return problems


def _duplicate_links(source: SynapseSource, mapping: dict[str, str]) -> list[Problem]:
    """`duplicate-upstream-links`: one (MAS provider, subject) on several migrated links."""
    if not mapping:
        return []
    params: dict[str, str] = {}
    whens = []
    for i, (idp, mas_id) in enumerate(sorted(mapping.items())):
        params[f"p{i}"], params[f"m{i}"] = idp, str(mas_id)
        whens.append(f"WHEN :p{i} THEN :m{i}")
    provider = "CASE e.auth_provider " + " ".join(whens) + " END"
    query = (f"SELECT {provider} AS mas_provider, e.external_id, count(*) AS n, min(e.user_id) AS sample "
             "FROM user_external_ids e JOIN users u ON u.name = e.user_id WHERE u.appservice_id IS NULL "
             f"AND {provider} IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1")
    n, _ = _count_and_samples(source, query, params)
    if not n:
        return []
    samples = [str(r[0]) for r in source.fetchall(f"SELECT sample FROM ({query}) q ORDER BY 1 LIMIT {SAMPLE_LIMIT}",
                                                  params)]
    return [Problem("duplicate-upstream-links", "(provider, subject) pairs linked to more than one user", n, samples)]


def ensure_migratable(source: SynapseSource, **kwargs: object) -> None:
    """Raise MigrationRefused when `synapse_problems` finds anything."""
    problems = synapse_problems(source, **kwargs)  # type: ignore[arg-type]
    if problems:
        raise MigrationRefused(problems)
