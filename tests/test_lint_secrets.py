"""Property (style.md 7): random secret values in sensitive keys never appear in any output format."""
from __future__ import annotations

import io
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.lint import LintOptions, emit, run_config_checks
from engine.reporters import FORMATS

# Secrets as admins write them: printable, no line separators (YAML would fold those), no surrounding blanks.
# The fixed prefix keeps a "secret" from being an ordinary word of a message ("Generate"), which would be
# scrubbed from the output but tell nothing about leaks.
secret_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=6, max_size=24) \
    .map(lambda s: "Zq\u00a7" + s).filter(lambda s: s.strip() == s)


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def _configs(s: list[str]) -> tuple[str, str]:
    synapse = f"""\
server_name: example.org
password_config:
  pepper: {_q(s[0])}
registration_shared_secret: {_q(s[1])}
macaroon_secret_key: {_q(s[1])}
email:
  smtp_host: mail.example.org
  smtp_user: synapse
  smtp_pass: {_q(s[2])}
oidc_providers:
  - idp_id: corp
    issuer: https://id.example.org/
    client_id: synapse
    client_secret: {_q(s[3])}
    idp_icon: mxc://example.org/icon
matrix_authentication_service:
  enabled: true
  secret: {_q(s[4])}
database:
  name: psycopg2
  args: {{user: synapse, password: {_q(s[5])}}}
"""
    mas = f"""\
secrets:
  encryption: {_q(s[6])}
matrix:
  homeserver: example.com
  secret: {_q(s[7])}
passwords:
  schemes:
    - {{version: 1, algorithm: argon2id, secret: {_q(s[8])}}}
email:
  transport: smtp
  hostname: mail.example.org
  username: mas
  password: {_q(s[9])}
upstream_oauth2:
  providers:
    - id: 01H8PKNWKKRPCBW4YGH1RWV279
      synapse_idp_id: oidc-corp
      issuer: https://login.example.org/
      client_secret: {_q(s[10])}
"""
    return synapse, mas


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(secret_text, min_size=11, max_size=11, unique=True))
def test_no_secret_reaches_any_output_format(secrets):
    synapse_text, mas_text = _configs(secrets)
    with tempfile.TemporaryDirectory() as tmp:
        hs, mas = os.path.join(tmp, "homeserver.yaml"), os.path.join(tmp, "mas.yaml")
        with open(hs, "w", encoding="utf-8") as fh:
            fh.write(synapse_text)
        with open(mas, "w", encoding="utf-8") as fh:
            fh.write(mas_text)
        findings, context = run_config_checks([hs], [mas], LintOptions(default_acknowledgements=False))
        # The rules themselves never interpolate a secret (scrubbing is only the last line of defence).
        for f in findings:
            for s in secrets:
                assert s not in f.message and s not in f.remediation, f.rule
        assert {"pepper-mismatch", "matrix-secret-mismatch", "server-name-mismatch"} <= {f.rule for f in findings}
        for fmt in FORMATS:
            out = io.StringIO()
            emit(list(findings), context, fmt, stream=out)
            text = out.getvalue()
            for s in secrets:
                for spelling in {s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1]}:
                    assert spelling not in text, (fmt, s)
