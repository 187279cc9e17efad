"""Secrets never leave the files that must hold them (SECURITY.md, style.md §7).

Random peppers, client secrets, SMTP and database passwords, the matrix secret, the encryption key,
registration/macaroon/form secrets, and random tokens, password hashes and email addresses in the Synapse
database: none appears in standard output or error of `lint`, `check`, `config generate`, `migrate` or
`verify`, nor in any report they write (text, JSON, SARIF, GitHub, parsable, the migration report); the
files that hold secrets (generated MAS configuration, overlay, secrets directory) are mode 0600.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import tempfile
import urllib.parse

import psycopg
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from faulthelpers import PROVIDER_ULID, SERVER, db_state, dbname_of, run_cli
from hostile import assert_clean

# Secrets as admins write them: printable, no blanks or line breaks (YAML would fold those).
secret_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Zl", "Zp", "Zs")),
                      min_size=8, max_size=20)
NAMES = ("pepper", "smtp_pass", "registration", "macaroon", "form", "recaptcha", "oidc_client", "msc_secret",
         "db_password", "mas_db_password", "matrix_secret", "encryption", "scheme_secret", "client_secret",
         "mas_smtp", "captcha", "upstream_secret")
def _named(vals: list[str]) -> dict[str, str]:
    out = {name: f"S{i:02d}{v}" for i, (name, v) in enumerate(zip(NAMES, vals))}
    out["encryption"] = hashlib.sha256(out["encryption"].encode()).hexdigest()  # MAS wants 64 hex digits
    out["scheme_secret"] = out["pepper"]  # MAS scheme 1 must carry Synapse's pepper (pepper-mismatch)
    return out


secrets_strategy = st.lists(secret_text, min_size=len(NAMES), max_size=len(NAMES)).map(_named)


@functools.cache
def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
def q(value: str) -> str:
    """A JSON string is a valid YAML double-quoted scalar (astral characters written as themselves: MAS rejects
    surrogate-pair escapes)."""
    return json.dumps(value, ensure_ascii=False)


def configs(d: str, s: dict, synapse_uri: str, mas_uri: str) -> tuple[str, str]:
    syn = urllib.parse.urlsplit(synapse_uri)
    mas = urllib.parse.urlsplit(mas_uri)
    mas_with_password = urllib.parse.urlunsplit(mas._replace(
        netloc=f"{mas.username}:{urllib.parse.quote(s['mas_db_password'], safe='')}@{mas.hostname}:{mas.port}"))
    hs = os.path.join(d, "homeserver.yaml")
    with open(hs, "w", encoding="utf-8") as fh:
        fh.write(f"""server_name: {SERVER}
public_baseurl: https://matrix.{SERVER}/
database:
  name: psycopg2
  args: {{user: {syn.username}, password: {q(s['db_password'])}, host: {syn.hostname}, port: {syn.port},
          dbname: {dbname_of(synapse_uri)}}}
password_config: {{enabled: true, pepper: {q(s['pepper'])}}}
registration_shared_secret: {q(s['registration'])}
macaroon_secret_key: {q(s['macaroon'])}
form_secret: {q(s['form'])}
enable_registration_captcha: true
recaptcha_public_key: public
recaptcha_private_key: {q(s['recaptcha'])}
email: {{smtp_host: mail.{SERVER}, smtp_user: synapse, smtp_pass: {q(s['smtp_pass'])}, notif_from: "x <n@{SERVER}>"}}
experimental_features: {{msc3861: {{enabled: false, admin_token: {q(s['msc_secret'])}}}}}
oidc_providers:
  - {{idp_id: dex, idp_name: Dex, issuer: "https://dex.{SERVER}/", client_id: synapse,
      client_secret: {q(s['oidc_client'])}, scopes: [openid]}}
""")
    mas_path = os.path.join(d, "mas.yaml")
    with open(mas_path, "w", encoding="utf-8") as fh:
        fh.write(f"""http: {{public_base: "https://auth.{SERVER}/"}}
database: {{uri: {q(mas_with_password)}}}
matrix: {{kind: synapse, homeserver: {SERVER}, endpoint: "http://synapse:8008/", secret: {q(s['matrix_secret'])}}}
secrets: {{encryption: {q(s['encryption'])}, keys: [{{kid: rsa, key: {q(rsa_pem())}}}]}}
passwords:
  schemes: [{{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: {q(s['scheme_secret'])}}},
            {{version: 2, algorithm: argon2id}}]
clients: [{{client_id: 01HZX0G3P0V9Y8C6D5E4F3A2B9, client_auth_method: client_secret_basic,
           client_secret: {q(s['client_secret'])}}}]
email: {{from: "n@{SERVER}", transport: smtp, mode: starttls, hostname: mail.{SERVER}, username: mas,
        password: {q(s['mas_smtp'])}}}
captcha: {{service: recaptcha_v2, site_key: public, secret_key: {q(s['captcha'])}}}
upstream_oauth2:
  providers:
    - {{id: {PROVIDER_ULID}, synapse_idp_id: oidc-dex, issuer: "https://dex.{SERVER}/", client_id: synapse,
        token_endpoint_auth_method: client_secret_basic, client_secret: {q(s['upstream_secret'])}}}
""")
    return hs, mas_path


def spellings(value: str) -> set[str]:
    """The secret as text, JSON-escaped and URL-encoded (how it could leak through a report or a URI)."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            urllib.parse.quote(value, safe="")}


def assert_no_secret(text: str, secrets: dict, where: str) -> None:
    key_body = "".join(rsa_pem().splitlines()[1:-1])
    secrets = {**secrets, "rsa-key-line": rsa_pem().splitlines()[1], "rsa-key-tail": key_body[-40:]}
    for name, value in secrets.items():
        for spelling in spellings(value):
            assert spelling not in text, f"secret {name} appears in {where}"


def read_all(paths) -> str:
    out = []
    for p in paths:
        if os.path.isfile(p):
            with open(p, encoding="utf-8", errors="replace") as fh:
                out.append(fh.read())
    return "\n".join(out)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(s=secrets_strategy)
def test_config_secrets_never_printed(tmp_path_factory, small_synapse, target_mas, s):
    """lint in every format, check in every format, config generate: stdout, stderr and report files."""
    d = tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())
    mas_uri, _ = target_mas
    hs, mas = configs(d, s, small_synapse, mas_uri)
    runner = CliRunner()
    for command in ("lint", "check"):
        for fmt in ("text", "json", "sarif", "github", "parsable"):
            outputs = [os.path.join(d, f"{command}.{fmt}.out"), os.path.join(d, f"{command}.{fmt}.sarif")]
            for args in ([], ["--output", outputs[0], "--sarif-file", outputs[1]]):
                result = runner.invoke(cli.main, [command, "--synapse-config", hs, "--config", mas, "--format", fmt,
                                                  *args])
                assert_clean(result, [hs, mas], allowed={0, 10, 11})
                assert_no_secret(result.output + read_all(outputs), s, f"{command} --format {fmt} {args}")
    out, patch, sd = (os.path.join(d, n) for n in ("gen-mas.yaml", "gen-overlay.yaml", "gen-secrets"))
    trace = os.path.join(d, "trace.json")
    result = runner.invoke(cli.main, ["config", "generate", "--synapse-config", hs, "--output", out,
                                      "--synapse-patch", patch, "--secrets-dir", sd, "--trace", trace])
    assert_clean(result, [hs], allowed={0})
    assert_no_secret(result.output + read_all([trace]), s, "config generate output or trace")
    for path in [out, patch] + [os.path.join(sd, n) for n in os.listdir(sd)]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    # the generated secrets are secrets too: lint of the generated file must not print them either
    generated = {f"generated-{n}": open(os.path.join(sd, n), encoding="utf-8", errors="replace").read().strip()
                 for n in os.listdir(sd)}
    generated = {k: v for k, v in generated.items() if len(v) >= 8}
    result = runner.invoke(cli.main, ["lint", "--synapse-config", hs, "--config", out, "--format", "json"])
    assert_clean(result, [hs, out])
    assert_no_secret(result.output, {**s, **generated}, "lint of the generated configuration")


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(s=secrets_strategy, token=secret_text, refresh=secret_text, pw_hash=secret_text, email=secret_text)
def test_database_secrets_never_printed(tmp_path_factory, synapse_db, target_mas, s, token, refresh, pw_hash, email):
    """Tokens, password hashes and addresses in Synapse: not in migrate's or verify's output or reports."""
    d = tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())
    mas_uri, baseline = target_mas
    hs, mas = configs(d, s, synapse_db, mas_uri)
    values = {"token": f"syt_{token}", "refresh": f"syr_{refresh}", "hash": f"$2b$12${pw_hash}",
              "email": f"{email}@mail.example", **s}
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("TRUNCATE users, user_threepids, user_external_ids, devices, access_tokens, refresh_tokens "
                     "CASCADE")
        conn.execute("INSERT INTO users (name, password_hash, creation_ts) VALUES ('@s:example.org', %s, 1)",
                     (values["hash"],))
        conn.execute("INSERT INTO user_threepids VALUES ('@s:example.org', 'email', %s, 1, 1)", (values["email"],))
        conn.execute("INSERT INTO user_external_ids VALUES ('oidc-dex', 'subject', '@s:example.org')")
        conn.execute("INSERT INTO devices (user_id, device_id, last_seen, ip) VALUES ('@s:example.org', 'D', 1, "
                     "'10.0.0.1')")
        conn.execute("INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES (1, '@s:example.org', "
                     "'D', %s)", (values["refresh"],))
        conn.execute("INSERT INTO access_tokens (id, user_id, device_id, token, refresh_token_id) VALUES "
                     "(1, '@s:example.org', 'D', %s, 1), (2, '@s:example.org', NULL, %s, NULL)",
                     (values["token"], values["token"] + "x"))
    synapse_before = db_state(synapse_db)
    outputs = []
    for args in (["migrate", "--dry-run", "--report", os.path.join(d, "dry.json")],
                 ["check", "--format", "json", "--output", os.path.join(d, "check.json"),
                  "--sarif-file", os.path.join(d, "check.sarif")],
                 ["migrate", "--report", os.path.join(d, "report.json")],
                 ["verify", "--report", os.path.join(d, "verify.json"),
                  "--migration-report", os.path.join(d, "report.json")]):
        res = run_cli([args[0], "--synapse-config", hs, "--config", mas, *args[1:]], cwd=d)
        assert res.returncode in (0, 11), res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        outputs.append(res.stdout + res.stderr)
    reports = read_all(os.path.join(d, n) for n in ("dry.json", "check.json", "check.sarif", "report.json",
                                                    "verify.json"))
    assert json.loads(read_all([os.path.join(d, "report.json")]))["entities"]["access_tokens"]["migrated"] == 2
    assert_no_secret("\n".join(outputs) + reports, values, "migrate/check/verify output or reports")
    assert db_state(synapse_db) == synapse_before
    from faulthelpers import reset_mas

    reset_mas(mas_uri)
    assert db_state(mas_uri) == baseline
