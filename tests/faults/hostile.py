"""Hostile configuration files: rich base configurations, hypothesis strategies that break them at every
key the rules read (wrong types, nulls, huge and odd unicode values, deep nesting) and at the YAML level
(alias bombs, tags, duplicate keys, merge keys, encodings, syntax), and the invariants every command must
keep on them (checks.md §2: exit 0/1/10/11, never a traceback, a failure names the file).
"""
from __future__ import annotations

import copy
import json
import os

from click.testing import Result
from hypothesis import strategies as st

# Every Synapse key that the check and mapping rules read (mapping.md 2, checks.md 4.1/4.2), with a
# plausible value. The database section points at a closed local port: nothing is ever reached.
BASE_SYNAPSE: dict = {
    "server_name": "example.org",
    "public_baseurl": "https://matrix.example.org/",
    "database": {"name": "psycopg2", "args": {"user": "synapse", "password": "db-password", "dbname": "synapse",
                                              "host": "127.0.0.1", "port": 1, "connect_timeout": 2,
                                              "cp_min": 1, "cp_max": 5}},
    "bcrypt_rounds": 12,
    "enable_registration": True,
    "registration_requires_token": False,
    "registrations_require_3pid": ["email"],
    "enable_registration_captcha": True,
    "recaptcha_public_key": "public-key",
    "recaptcha_private_key": "private-key",
    "enable_3pid_changes": True,
    "enable_set_displayname": True,
    "registration_shared_secret": "registration-secret",
    "macaroon_secret_key": "macaroon-secret",
    "form_secret": "form-secret",
    "password_config": {"enabled": True, "localdb_enabled": True, "pepper": "pepper-value",
                        "policy": {"enabled": True, "minimum_length": 10, "require_digit": True}},
    "email": {"smtp_host": "mail.example.org", "smtp_port": 587, "smtp_user": "synapse", "smtp_pass": "smtp-pass",
              "require_transport_security": True, "notif_from": "Matrix <noreply@example.org>", "app_name": "Matrix",
              "enable_notifs": True},
    "user_consent": {"version": "1.0", "template_dir": "/srv/consent", "require_at_registration": True},
    "saml2_config": {"sp_config": {"metadata": {"remote": [{"url": "https://idp.example.org/metadata"}]}},
                     "idp_name": "Corp SAML"},
    "cas_config": {"enabled": False, "server_url": "https://cas.example.org"},
    "jwt_config": {"enabled": False, "secret": "jwt-secret", "algorithm": "HS256"},
    "password_providers": [{"module": "ldap_auth_provider.LdapAuthProvider", "config": {"enabled": True}}],
    "modules": [{"module": "my_module.Module", "config": {}}],
    "login_via_existing_session": {"enabled": False},
    "sso": {"client_whitelist": ["https://app.example.org/"]},
    "session_lifetime": "24h",
    "refresh_token_lifetime": "5m",
    "experimental_features": {"msc3861": {"enabled": False}},
    "matrix_authentication_service": {"enabled": False, "endpoint": "http://mas:8080/", "secret": "matrix-secret"},
    "oidc_providers": [
        {"idp_id": "corp", "idp_name": "Corp", "idp_icon": "mxc://example.org/icon", "idp_brand": "corp",
         "issuer": "https://id.example.org/", "client_id": "synapse", "client_secret": "oidc-client-secret",
         "client_auth_method": "client_secret_post", "pkce_method": "auto", "scopes": ["openid", "profile"],
         "discover": True, "skip_verification": False, "user_profile_method": "userinfo_endpoint",
         "allow_existing_users": True, "enable_registration": True, "backchannel_logout_enabled": True,
         "attribute_requirements": [{"attribute": "groups", "value": "matrix"}],
         "additional_authorization_parameters": {"acr_values": "2fa"},
         "user_mapping_provider": {"config": {"subject_claim": "sub", "localpart_template": "{{ user.preferred_username }}",
                                              "display_name_template": "{{ user.name }}",
                                              "email_template": "{{ user.email }}", "confirm_localpart": True}}},
        {"idp_id": "github", "idp_name": "GitHub", "discover": False, "issuer": "https://github.com/",
         "client_id": "gh", "client_secret_jwt_key": {"key": "jwt-key", "jwt_header": {"alg": "ES256"}},
         "authorization_endpoint": "https://github.com/login/oauth/authorize",
         "token_endpoint": "https://github.com/login/oauth/access_token",
         "userinfo_endpoint": "https://api.github.com/user", "jwks_uri": "https://github.com/jwks",
         "id_token_signing_alg_values_supported": ["RS256"]},
    ],
}

BASE_MAS: dict = {
    "http": {"public_base": "https://auth.example.org/",
             "listeners": [{"name": "web", "resources": [{"name": "discovery"}], "binds": [{"address": "[::]:8080"}]}]},
    "database": {"host": "127.0.0.1", "port": 1, "username": "mas", "password": "mas-db-password", "database": "mas"},
    "matrix": {"kind": "synapse", "homeserver": "example.org", "secret": "matrix-secret",
               "endpoint": "http://synapse:8008/"},
    "secrets": {"encryption": "0" * 64, "keys": [{"kid": "key1", "key": "rsa-key-pem"}]},
    "passwords": {"enabled": True, "minimum_complexity": 3,
                  "schemes": [{"version": 1, "algorithm": "bcrypt", "unicode_normalization": True,
                               "secret": "pepper-value"},
                              {"version": 2, "algorithm": "argon2id"}]},
    "account": {"password_registration_enabled": True, "email_change_allowed": True,
                "password_recovery_enabled": True, "registration_token_required": False},
    "email": {"from": "Matrix <noreply@example.org>", "reply_to": "noreply@example.org", "transport": "smtp",
              "mode": "starttls", "hostname": "mail.example.org", "port": 587, "username": "mas",
              "password": "mas-smtp-pass"},
    "captcha": {"service": "recaptcha_v2", "site_key": "public-key", "secret_key": "private-key"},
    "branding": {"service_name": "Example", "tos_uri": "https://example.org/tos"},
    "clients": [{"client_id": "01HZX0G3P0V9Y8C6D5E4F3A2B9", "client_auth_method": "client_secret_basic",
                 "client_secret": "client-secret-value"}],
    "upstream_oauth2": {"providers": [
        {"id": "01HZX0G3P0V9Y8C6D5E4F3A2B1", "synapse_idp_id": "oidc-corp", "issuer": "https://id.example.org/",
         "client_id": "synapse", "client_secret": "oidc-client-secret",
         "token_endpoint_auth_method": "client_secret_post", "scope": "openid profile",
         "claims_imports": {"localpart": {"action": "require", "template": "{{ user.preferred_username }}"}}},
    ]},
}

# Values that are wrong somewhere, right elsewhere, or just odd (YAML 1.1 booleans, numbers as text, …).
ODD_STRINGS = ["", " ", "~", "null", "yes", "no", "on", "off", "y", "n", "0x1F", "1e999", ".inf", ".nan", "0o17",
               "2026-01-01", "12:30:00", "-", "0", "@:", "::", "https://", "file:///etc/passwd",
               "../../../../etc/passwd", "%s%n{0}{{x}}", "{{ 7*7 }}", "{% raw %}", "${HOME}", "$(id)", "`id`",
               "\u202e\u200bRTL", "\ufeffbom", "e\u0301\u00e9", "\U0001f600" * 20, "\u0000nul", "\x07\x1b[31mred",
               "line1\nline2", "\t", "ﬁ", "İı", "ß", "\u3000", "Ω" * 300, "x" * 10_000, "é" * 100_000,
               "'; DROP TABLE users; --", "<script>alert(1)</script>"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.sampled_from(ODD_STRINGS))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["enabled", "module", "config", "idp_id",
                                                                       "issuer", "client_id", "id"])),
                      children, max_size=4),
    max_leaves=12)


def deep(depth: int, leaf=None):
    """A list nested ``depth`` levels deep."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


hostile_values = st.one_of(values, st.builds(deep, st.sampled_from([20, 60])))


def all_paths(doc, prefix: tuple = ()) -> list[tuple]:
    """Every node's path (keys and list indexes), the root excluded."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out.extend(all_paths(v, prefix + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out.extend(all_paths(v, prefix + (i,)))
    return out


def set_path(doc, path: tuple, value, delete: bool = False):
    node = doc
    for part in path[:-1]:
        node = node[part]
    if delete:
        if isinstance(node, dict):
            del node[path[-1]]
        else:
            node.pop(path[-1])
    else:
        node[path[-1]] = value


def mutated(base: dict, exclude: tuple[str, ...] = ()):
    """Strategy: ``base`` with one to three nodes replaced by hostile values or deleted."""
    paths = [p for p in all_paths(base) if p[0] not in exclude]

    @st.composite
    def build(draw):
        doc = copy.deepcopy(base)
        for _ in range(draw(st.integers(1, 3))):
            live = [p for p in paths if _exists(doc, p)]
            if not live:
                break
            path = draw(st.sampled_from(live))
            if draw(st.integers(0, 9)) == 0:
                set_path(doc, path, None, delete=True)
            else:
                set_path(doc, path, draw(hostile_values))
        return doc

    return build()


def _exists(doc, path: tuple) -> bool:
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


def to_yaml(doc, ascii_only: bool = True) -> str:
    """Block-style top level, JSON flow values (JSON is YAML): keeps every hostile value representable."""
    if not isinstance(doc, dict):
        return json.dumps(doc, ensure_ascii=ascii_only) + "\n"
    lines = []
    for k, v in doc.items():
        lines.append(f"{json.dumps(str(k), ensure_ascii=ascii_only)}: {json.dumps(v, ensure_ascii=ascii_only)}")
    return "\n".join(lines) + "\n"


def _bomb(width: int, depth: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# Whole-file hostility, each a function of the valid base text.
RAW_MUTATIONS = {
    "alias-bomb": lambda base: base + _bomb(10, 9),
    "small-aliases": lambda base: "x: &x {a: 1}\n" + base + "y: [*x, *x, *x]\nz:\n  <<: *x\n  b: 2\n",
    "recursive-alias": lambda base: base + "loop: &loop [*loop]\n",
    "merge-of-scalar": lambda base: base + "s: &s 5\nm:\n  <<: *s\n",
    "merge-list": lambda base: "p: &p {enabled: true}\nq: &q {module: x}\n" + base + "r:\n  <<: [*p, *q]\n",
    "undefined-alias": lambda base: base + "u: *nowhere\n",
    "include-tag": lambda base: base + "extra: !include other.yaml\n",
    "python-tag": lambda base: base + "extra: !!python/object/apply:os.system ['echo pwned']\n",
    "python-name": lambda base: base + "extra: !!python/name:os.system\n",
    "local-tag-mapping": lambda base: base + "extra: !custom {a: 1}\n",
    "binary": lambda base: base + "extra: !!binary aGVsbG8=\n",
    "set-omap": lambda base: base + "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\n",
    "timestamp": lambda base: base + "t: 2001-12-14t21:59:43.10-05:00\nd: 2002-12-14\n",
    "dup-top": lambda base: base + base.splitlines()[0] + "\n",
    "dup-nested": lambda base: base + "password_config: {enabled: true, enabled: false}\n",
    "complex-key": lambda base: base + "? [a, b]\n: c\n",
    "null-key": lambda base: base + "~: x\n",
    "int-key": lambda base: base + "1: x\n2.5: y\ntrue: z\n",
    "two-docs": lambda base: base + "---\nserver_name: other.org\n",
    "doc-end": lambda base: base + "...\n",
    "only-doc-marker": lambda base: "---\n",
    "comment-only": lambda base: "# nothing here\n",
    "scalar-doc": lambda base: "just a string\n",
    "list-doc": lambda base: "- a\n- b\n",
    "null-doc": lambda base: "~\n",
    "tab-indent": lambda base: "password_config:\n\tenabled: true\n" + base,
    "unclosed-quote": lambda base: base + 'broken: "abc\n',
    "unclosed-flow": lambda base: base + "broken: [a, b\n",
    "bad-indent": lambda base: base + "  misplaced: 1\n",
    "long-line": lambda base: base + "long: " + "a" * 300_000 + "\n",
    "many-keys": lambda base: base + "".join(f"k{i}: {i}\n" for i in range(5_000)),
    "deep-flow": lambda base: base + "deep: " + "[" * 1500 + "]" * 1500 + "\n",
    "deep-199": lambda base: base + "deep: " + "[" * 198 + "]" * 198 + "\n",
    "deep-201": lambda base: base + "deep: " + "[" * 201 + "]" * 201 + "\n",
    "deep-in-key-read": lambda base: base + "oidc_providers: " + "[" * 250 + "]" * 250 + "\n",
    "deep-block": lambda base: base + "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1\n",
}

RAW_BYTES = {
    "non-utf8": lambda base: base.encode() + b"extra: \xff\xfe\xfd\n",
    "latin1": lambda base: base.encode() + "name: caf\u00e9\n".encode("latin-1"),
    "utf8-bom": lambda base: b"\xef\xbb\xbf" + base.encode(),
    "utf16": lambda base: base.encode("utf-16"),
    "nul-byte": lambda base: base.encode() + b"extra: a\x00b\n",
    "control-chars": lambda base: base.encode() + b"extra: a\x01\x02\x1b[2Jb\n",
    "crlf": lambda base: base.replace("\n", "\r\n").encode(),
    "cr-only": lambda base: base.replace("\n", "\r").encode(),
    "c1-controls": lambda base: base.encode() + "extra: a\u0085b\u009fc\n".encode(),
    "truncated-utf8": lambda base: base.encode() + "extra: \u20ac".encode()[:-1],
    "empty": lambda base: b"",
    "whitespace": lambda base: b"   \n\n\t\n",
}

EXIT_CODES = {0, 1, 10, 11}


def file_text(base: dict, kind: str, ascii_only: bool = True) -> bytes:
    text = to_yaml(base, ascii_only)
    if kind in RAW_MUTATIONS:
        return RAW_MUTATIONS[kind](text).encode("utf-8", "surrogatepass")
    return RAW_BYTES[kind](text)


def write(path: str, data: bytes | str) -> str:
    mode = "wb" if isinstance(data, bytes) else "w"
    kwargs = {} if isinstance(data, bytes) else {"encoding": "utf-8", "errors": "surrogatepass"}
    with open(path, mode, **kwargs) as fh:
        fh.write(data)
    return path


def assert_clean(result: Result, files: list[str], *, allowed: set[int] = frozenset(EXIT_CODES),
                 databases: bool = False, named: bool = True) -> None:
    """checks.md §2: a known exit code, no traceback, and an exit-1 message that names where the problem is."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"exception escaped: {exc!r}\n{result.output[-2000:]}"
    out = result.output
    assert "Traceback" not in out, out[-3000:]
    assert "internal error" not in out, out[-3000:]
    assert result.exit_code in allowed, f"exit {result.exit_code}\n{out[-3000:]}"
    if result.exit_code == 1 and named:
        named = [f for f in files if f in out or os.path.basename(f) in out]
        # a database that cannot be used, or whose data does not fit the configuration, is named instead
        about_db = databases and ("database" in out or "provider `" in out)
        assert named or about_db, f"exit 1 without naming a file:\n{out[-3000:]}"
