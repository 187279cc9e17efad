"""`mas-config-invalid`: the published schema with format checking, every rule of mapping.md 6.2, unknown keys."""
from __future__ import annotations

import copy
import datetime as dt
import os
import string
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.configdoc import ConfigDoc, load_mas_config
from engine.errors import ConfigError
from engine.mailbox import PLAIN_MAILBOX, parses_as_mailbox
from engine.masrules import RULES, key_kind, key_loaders, rule_findings, rule_table
from engine.masvalidate import RULE_ID, format_checker, is_valid_mailbox, looks_like_key_name, validate_mas_config
from translator.fresh import fresh_mas_config
from translator.randomness import Entropy

ULID_A = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
ULID_B = "01BX5ZZKBKACTAV9WEVGEMMVRZ"
HEX64 = "0123456789abcdef" * 4
SPEC_RULE_IDS = [
    "MAS-S1", "MAS-S2", "MAS-S3", "MAS-K1", "MAS-K2", "MAS-K3", "MAS-M1", "MAS-D1", "MAS-D2", "MAS-D3", "MAS-H1",
    "MAS-H2", "MAS-H3", "MAS-E1", "MAS-E2", "MAS-P1", "MAS-P2", "MAS-P3", "MAS-P4", "MAS-C1", "MAS-U1", "MAS-U2",
    "MAS-U3", "MAS-U4", "MAS-U5", "MAS-U6", "MAS-U7", "MAS-U8", "MAS-U9", "MAS-CL1", "MAS-CL2", "MAS-CL3",
    "MAS-R1", "MAS-T1", "MAS-X1",
]


def _pem(key: Any, fmt=serialization.PrivateFormat.TraditionalOpenSSL, password: bytes | None = None) -> str:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc).decode()


_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())
RSA_PEM = _pem(_RSA)
EC_PEM = _pem(_EC)
RSA_PKCS8_LOCKED = _pem(_RSA, serialization.PrivateFormat.PKCS8, b"pw")
EC_PKCS8_LOCKED = _pem(_EC, serialization.PrivateFormat.PKCS8, b"pw")


@pytest.fixture(scope="module")
def schema_path(shared_dir) -> str:
    return os.path.join(shared_dir, "mas", "config.schema.json")


@pytest.fixture(scope="module")
def base_config() -> dict:
    """A fresh config with one upstream provider and one client, all valid."""
    cfg = fresh_mas_config(Entropy.seeded("masvalidate", dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)))
    cfg["upstream_oauth2"] = {"providers": [_provider()]}
    cfg["clients"] = [{"client_id": ULID_B, "client_auth_method": "client_secret_basic", "client_secret": "cs"}]
    return cfg


def _provider(**extra: Any) -> dict:
    out = {"id": ULID_A, "synapse_idp_id": "oidc-corp", "issuer": "https://idp.example.com/", "client_id": "syn",
           "client_secret": "provider-secret", "token_endpoint_auth_method": "client_secret_basic"}
    out.update(extra)
    return out


class Files:
    """Writes helper files for cases that reference secret or key files."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, name: str, content: str | bytes) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content.encode() if isinstance(content, str) else content)
        return path

    def missing(self, name: str) -> str:
        return os.path.join(self.root, "absent", name)

    def fifo(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.mkfifo(path)
        return path


def run(cfg: dict, schema_path: str, base_dir: str | None = None) -> list:
    return validate_mas_config(ConfigDoc(data=cfg), schema_path, base_dir=base_dir)


# ---------------------------------------------------------------- mutations used by the case table

Mutation = Callable[[dict, Files], None]


def prov(**changes: Any) -> Mutation:
    """Change (value) or remove (None) keys of the first upstream provider."""
    def apply(cfg: dict, _: Files) -> None:
        p = cfg["upstream_oauth2"]["providers"][0]
        for k, v in changes.items():
            p.pop(k, None) if v is None else p.__setitem__(k, v)
    return apply


def client(**values: Any) -> Mutation:
    def apply(cfg: dict, _: Files) -> None:
        cfg["clients"] = [dict({"client_id": ULID_B}, **values)]
    return apply


def put(path: str, value: Any) -> Mutation:
    """Set (or with value None delete) the dotted path, creating mappings on the way."""
    def apply(cfg: dict, _: Files) -> None:
        *parents, last = path.split(".")
        node = cfg
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return apply


def seq(*muts: Mutation) -> Mutation:
    def apply(cfg: dict, files: Files) -> None:
        for m in muts:
            m(cfg, files)
    return apply


def enc_file(content: str) -> Mutation:
    def apply(cfg: dict, files: Files) -> None:
        cfg["secrets"].pop("encryption")
        cfg["secrets"]["encryption_file"] = files("enc", content)
    return apply


def only_keys(*entries: Callable[[Files], dict], keys_dir: Callable[[Files], str] | None = None) -> Mutation:
    def apply(cfg: dict, files: Files) -> None:
        cfg["secrets"]["keys"] = [e(files) for e in entries]
        if keys_dir:
            cfg["secrets"]["keys_dir"] = keys_dir(files)
    return apply


def ec_inline(_: Files) -> dict:
    return {"key": EC_PEM}


def smtp(**values: Any) -> Mutation:
    def apply(cfg: dict, _: Files) -> None:
        cfg["email"] = dict({"transport": "smtp", "hostname": "mail.example.com", "mode": "starttls"}, **values)
        for k in [k for k, v in cfg["email"].items() if v is None]:
            del cfg["email"][k]
    return apply


def sendmail(**values: Any) -> Mutation:
    def apply(cfg: dict, _: Files) -> None:
        cfg["email"] = dict({"transport": "sendmail", "command": "sendmail"}, **values)
        for k in [k for k, v in cfg["email"].items() if v is None]:
            del cfg["email"][k]
    return apply


def apple_block(**values: Any) -> dict:
    out = {"team_id": "T", "key_id": "K", "private_key": EC_PEM}
    out.update(values)
    return {k: v for k, v in out.items() if v is not None}


# (rule, case name, mutation, key path of the finding, severity)
FIRING: list[tuple[str, str, Mutation, str, str]] = [
    ("MAS-S1", "both_inline_and_file", lambda c, f: c["secrets"].__setitem__("encryption_file", f("e", HEX64)),
     "secrets.encryption_file", "error"),
    ("MAS-S1", "neither", put("secrets.encryption", None), "secrets", "error"),
    ("MAS-S2", "66_hex_characters", put("secrets.encryption", HEX64 + "ab"), "secrets.encryption", "error"),
    ("MAS-S2", "junk_before_64_hex", put("secrets.encryption", "zz" + HEX64), "secrets.encryption", "error"),
    ("MAS-S2", "63_characters", put("secrets.encryption", HEX64[:63]), "secrets.encryption", "error"),
    ("MAS-S3", "trailing_newline", enc_file(HEX64 + "\n"), "secrets.encryption_file", "error"),
    ("MAS-S3", "short_content", enc_file("abc"), "secrets.encryption_file", "error"),
    ("MAS-S3", "non_hex_content", enc_file("g" * 64), "secrets.encryption_file", "error"),
    ("MAS-S3", "unreadable_is_unverifiable",
     lambda c, f: (c["secrets"].pop("encryption"), c["secrets"].__setitem__("encryption_file", f.missing("e"))),
     "secrets.encryption_file", "warning"),
    ("MAS-S3", "named_pipe_is_not_read",  # reading it would block the lint forever
     lambda c, f: (c["secrets"].pop("encryption"), c["secrets"].__setitem__("encryption_file", f.fifo("pipe"))),
     "secrets.encryption_file", "warning"),
    ("MAS-K1", "both_key_and_key_file", put("secrets.keys.1.key_file", "/x.pem"), "secrets.keys[1].key_file",
     "error"),
    ("MAS-K1", "neither_key_nor_file", put("secrets.keys.1.key", None), "secrets.keys[1]", "error"),
    ("MAS-K2", "password_and_password_file", seq(put("secrets.keys.1.password", "pw"),
                                                 put("secrets.keys.1.password_file", "/pw")),
     "secrets.keys[1].password_file", "error"),
    ("MAS-K3", "only_ec_keys", only_keys(ec_inline), "secrets.keys", "error"),
    ("MAS-K3", "no_keys_at_all", put("secrets.keys", None), "secrets", "error"),
    ("MAS-K3", "ec_key_file_only", only_keys(lambda f: {"key_file": f("ec.pem", EC_PEM)}), "secrets.keys",
     "error"),
    ("MAS-K3", "rsa_key_file_unreadable", only_keys(ec_inline, lambda f: {"key_file": f.missing("rsa.pem")}),
     "secrets.keys", "warning"),
    ("MAS-K3", "keys_dir_unreadable", only_keys(ec_inline, keys_dir=lambda f: f.missing("dir")), "secrets.keys",
     "warning"),
    ("MAS-K3", "encrypted_ec_key_without_password", only_keys(lambda f: {"key": EC_PKCS8_LOCKED}), "secrets.keys",
     "warning"),
    ("MAS-K3", "password_file_unreadable",
     only_keys(lambda f: {"key": RSA_PKCS8_LOCKED, "password_file": f.missing("pw")}), "secrets.keys", "warning"),
    ("MAS-M1", "both_secret_and_file", put("matrix.secret_file", "/m"), "matrix.secret_file", "error"),
    ("MAS-M1", "neither", put("matrix.secret", None), "matrix", "error"),
    ("MAS-D1", "uri_and_host", put("database.host", "db.example.com"), "database.host", "error"),
    ("MAS-D1", "uri_and_password_file", put("database.password_file", "/pw"), "database.password_file", "error"),
    ("MAS-D2", "password_pair", seq(put("database.uri", None), put("database.password", "p"),
                                    put("database.password_file", "/p")), "database.password_file", "error"),
    ("MAS-D2", "ssl_ca_pair", seq(put("database.ssl_ca", "PEM"), put("database.ssl_ca_file", "/ca")),
     "database.ssl_ca_file", "error"),
    ("MAS-D3", "certificate_without_key", put("database.ssl_certificate", "PEM"), "database.ssl_key", "error"),
    ("MAS-D3", "key_file_without_certificate", put("database.ssl_key_file", "/k"), "database.ssl_certificate",
     "error"),
    ("MAS-H1", "empty_resources", put("http.listeners.0.resources", []), "http.listeners[0].resources", "error"),
    ("MAS-H1", "empty_binds", put("http.listeners.1.binds", []), "http.listeners[1].binds", "error"),
    ("MAS-H2", "host_without_port", put("http.listeners.1.binds", [{"host": "localhost"}]),
     "http.listeners[1].binds[0]", "error"),
    ("MAS-H2", "typo_in_key", put("http.listeners.0.binds", [{"adress": "[::]:8080"}]),
     "http.listeners[0].binds[0]", "error"),
    ("MAS-H2", "port_as_string", put("http.listeners.0.binds", [{"port": "8080"}]), "http.listeners[0].binds[0]",
     "error"),
    ("MAS-H3", "no_certificate", put("http.listeners.0.tls", {"key": "PEM"}), "http.listeners[0].tls", "error"),
    ("MAS-H3", "two_keys", put("http.listeners.0.tls", {"certificate": "C", "key": "K", "key_file": "/k"}),
     "http.listeners[0].tls.key_file", "error"),
    ("MAS-H3", "two_passwords", put("http.listeners.0.tls", {"certificate": "C", "key": "K", "password": "p",
                                                             "password_file": "/p"}),
     "http.listeners[0].tls.password_file", "error"),
    ("MAS-E1", "no_hostname", smtp(hostname=None), "email.hostname", "error"),
    ("MAS-E1", "no_mode", smtp(mode=None), "email.mode", "error"),
    ("MAS-E1", "from_is_not_a_mailbox", smtp(**{"from": "Support <support@>"}), "email.from", "error"),
    ("MAS-E1", "reply_to_two_addresses", smtp(reply_to="a@example.com, b@example.com"), "email.reply_to", "error"),
    ("MAS-E1", "username_without_password", smtp(username="u"), "email.password", "error"),
    ("MAS-E1", "password_without_username", smtp(password="p"), "email.username", "error"),
    ("MAS-E1", "password_and_password_file", smtp(username="u", password="p", password_file="/p"),
     "email.password_file", "error"),
    ("MAS-E1", "command_with_smtp", smtp(command="sendmail"), "email.command", "error"),
    ("MAS-E2", "no_command", sendmail(command=None), "email.command", "error"),
    ("MAS-E2", "smtp_hostname", sendmail(hostname="mail.example.com"), "email.hostname", "error"),
    ("MAS-E2", "smtp_password", sendmail(password="p"), "email.password", "error"),
    ("MAS-E2", "invalid_reply_to", sendmail(reply_to="nobody"), "email.reply_to", "error"),
    ("MAS-P1", "enabled_with_no_schemes", put("passwords.schemes", []), "passwords.schemes", "error"),
    ("MAS-P1", "enabled_by_default", seq(put("passwords.enabled", None), put("passwords.schemes", [])),
     "passwords.schemes", "error"),
    ("MAS-P2", "secret_and_secret_file", seq(put("passwords.schemes.0.secret", "s"),
                                             put("passwords.schemes.0.secret_file", "/s")),
     "passwords.schemes[0].secret_file", "error"),
    ("MAS-P3", "two_version_1", put("passwords.schemes", [{"version": 1, "algorithm": "bcrypt"},
                                                          {"version": 1, "algorithm": "argon2id"}]),
     "passwords.schemes[1].version", "error"),
    ("MAS-P4", "secret_file_unreadable",
     lambda c, f: c["passwords"]["schemes"][0].__setitem__("secret_file", f.missing("pepper")),
     "passwords.schemes[0].secret_file", "warning"),
    ("MAS-P4", "secret_file_is_a_directory",
     lambda c, f: c["passwords"]["schemes"][0].__setitem__("secret_file", f.root), "passwords.schemes[0].secret_file",
     "warning"),
    ("MAS-C1", "recaptcha_without_secret_key", put("captcha", {"service": "recaptcha_v2", "site_key": "k"}),
     "captcha.secret_key", "error"),
    ("MAS-C1", "recaptcha_without_site_key", put("captcha", {"service": "recaptcha_v2", "secret_key": "k"}),
     "captcha.site_key", "error"),
    ("MAS-U1", "discovery_without_issuer", prov(issuer=None), "upstream_oauth2.providers[0].issuer", "error"),
    ("MAS-U1", "insecure_discovery_without_issuer", prov(issuer=None, discovery_mode="insecure"),
     "upstream_oauth2.providers[0].issuer", "error"),
    ("MAS-U2", "none_with_secret", prov(token_endpoint_auth_method="none"),
     "upstream_oauth2.providers[0].client_secret", "error"),
    ("MAS-U2", "private_key_jwt_with_secret_file",
     prov(token_endpoint_auth_method="private_key_jwt", client_secret=None, client_secret_file="/s",
          token_endpoint_auth_signing_alg="RS256"), "upstream_oauth2.providers[0].client_secret_file", "error"),
    ("MAS-U3", "basic_without_secret", prov(client_secret=None), "upstream_oauth2.providers[0]", "error"),
    ("MAS-U3", "post_with_both_secrets", prov(token_endpoint_auth_method="client_secret_post",
                                              client_secret_file="/s"),
     "upstream_oauth2.providers[0].client_secret_file", "error"),
    ("MAS-U4", "jwt_without_alg", prov(token_endpoint_auth_method="client_secret_jwt"),
     "upstream_oauth2.providers[0].token_endpoint_auth_signing_alg", "error"),
    ("MAS-U4", "basic_with_alg", prov(token_endpoint_auth_signing_alg="HS256"),
     "upstream_oauth2.providers[0].token_endpoint_auth_signing_alg", "error"),
    ("MAS-U5", "apple_without_block", prov(token_endpoint_auth_method="sign_in_with_apple", client_secret=None),
     "upstream_oauth2.providers[0].sign_in_with_apple", "error"),
    ("MAS-U5", "block_with_other_method", prov(sign_in_with_apple=apple_block()),
     "upstream_oauth2.providers[0].sign_in_with_apple", "error"),
    ("MAS-U5", "block_without_private_key", prov(token_endpoint_auth_method="sign_in_with_apple",
                                                 client_secret=None, sign_in_with_apple=apple_block(private_key=None)),
     "upstream_oauth2.providers[0].sign_in_with_apple", "error"),
    ("MAS-U5", "block_without_team_id", prov(token_endpoint_auth_method="sign_in_with_apple", client_secret=None,
                                             sign_in_with_apple=apple_block(team_id=None)),
     "upstream_oauth2.providers[0].sign_in_with_apple.team_id", "error"),
    ("MAS-U6", "skip_confirmation_with_force",
     prov(claims_imports={"skip_confirmation": True, "localpart": {"action": "force"}}),
     "upstream_oauth2.providers[0].claims_imports.skip_confirmation", "error"),
    ("MAS-U6", "skip_confirmation_with_suggested_email",
     prov(claims_imports={"skip_confirmation": True, "localpart": {"action": "require"},
                          "email": {"action": "suggest"}}),
     "upstream_oauth2.providers[0].claims_imports.skip_confirmation", "error"),
    ("MAS-U7", "on_conflict_add_with_suggest",
     prov(claims_imports={"localpart": {"action": "suggest", "on_conflict": "add"}}),
     "upstream_oauth2.providers[0].claims_imports.localpart.on_conflict", "error"),
    ("MAS-U7", "on_conflict_set_with_default_action", prov(claims_imports={"localpart": {"on_conflict": "set"}}),
     "upstream_oauth2.providers[0].claims_imports.localpart.on_conflict", "error"),
    ("MAS-U8", "double_space", prov(scope="openid  profile"), "upstream_oauth2.providers[0].scope", "error"),
    ("MAS-U8", "trailing_space", prov(scope="openid "), "upstream_oauth2.providers[0].scope", "error"),
    ("MAS-U8", "quote_character", prov(scope='openid "email"'), "upstream_oauth2.providers[0].scope", "error"),
    ("MAS-U9", "same_synapse_idp_id", lambda c, f: c["upstream_oauth2"]["providers"].append(_provider(id=ULID_B)),
     "upstream_oauth2.providers[1].synapse_idp_id", "error"),
    ("MAS-U9", "same_id", lambda c, f: c["upstream_oauth2"]["providers"].append(_provider(synapse_idp_id="oidc-b")),
     "upstream_oauth2.providers[1].id", "error"),
    ("MAS-CL1", "private_key_jwt_without_jwks", client(client_auth_method="private_key_jwt"), "clients[0]",
     "error"),
    ("MAS-CL1", "private_key_jwt_with_both_key_sets",
     client(client_auth_method="private_key_jwt", jwks={"keys": []}, jwks_uri="https://c.example.com/jwks"),
     "clients[0].jwks_uri", "error"),
    ("MAS-CL1", "private_key_jwt_with_secret", client(client_auth_method="private_key_jwt",
                                                      jwks_uri="https://c.example.com/jwks", client_secret="s"),
     "clients[0].client_secret", "error"),
    ("MAS-CL2", "basic_without_secret", client(client_auth_method="client_secret_basic"), "clients[0]", "error"),
    ("MAS-CL2", "post_with_jwks_uri", client(client_auth_method="client_secret_post", client_secret="s",
                                             jwks_uri="https://c.example.com/jwks"), "clients[0].jwks_uri", "error"),
    ("MAS-CL3", "none_with_secret", client(client_auth_method="none", client_secret_file="/s"),
     "clients[0].client_secret_file", "error"),
    ("MAS-R1", "zero_rate", put("rate_limiting", {"login": {"per_ip": {"burst": 3, "per_second": 0}}}),
     "rate_limiting.login.per_ip.per_second", "error"),
    ("MAS-R1", "huge_registration_rate", put("rate_limiting", {"registration": {"burst": 3, "per_second": 2e9}}),
     "rate_limiting.registration.per_second", "error"),
    ("MAS-R1", "negative_recovery_rate",
     put("rate_limiting", {"account_recovery": {"per_address": {"burst": 3, "per_second": -1}}}),
     "rate_limiting.account_recovery.per_address.per_second", "error"),
    ("MAS-T1", "sentry_rate_above_one", put("telemetry", {"sentry": {"sample_rate": 1.5}}),
     "telemetry.sentry.sample_rate", "error"),
    ("MAS-T1", "tracing_rate_negative", put("telemetry", {"tracing": {"sample_rate": -0.1}}),
     "telemetry.tracing.sample_rate", "error"),
    ("MAS-X1", "hard_below_soft", put("experimental", {"session_limit": {"soft_limit": 5, "hard_limit": 3}}),
     "experimental.session_limit.hard_limit", "error"),
    ("MAS-X1", "eviction_with_hard_limit_1",
     put("experimental", {"session_limit": {"soft_limit": 1, "hard_limit": 1, "dangerous_hard_limit_eviction": True}}),
     "experimental.session_limit.hard_limit", "error"),
]

# (rule, case name, mutation): the rule must stay silent.
SILENT: list[tuple[str, str, Mutation]] = [
    ("MAS-S3", "file_without_newline", enc_file(HEX64)),
    ("MAS-S3", "upper_case_hex", enc_file(HEX64.upper())),
    ("MAS-K3", "rsa_in_key_file", only_keys(ec_inline, lambda f: {"key_file": f("rsa.pem", RSA_PEM)})),
    ("MAS-K3", "rsa_in_keys_dir", only_keys(ec_inline, keys_dir=lambda f: os.path.dirname(f("kd/a.pem", RSA_PEM)))),
    ("MAS-K3", "encrypted_rsa_with_password", only_keys(lambda f: {"key": RSA_PKCS8_LOCKED, "password": "pw"})),
    ("MAS-K3", "encrypted_rsa_with_password_file",
     only_keys(lambda f: {"key": RSA_PKCS8_LOCKED, "password_file": f("pw", "pw")})),
    ("MAS-K3", "pkcs8_rsa", only_keys(lambda f: {"key": _pem(_RSA, serialization.PrivateFormat.PKCS8)})),
    ("MAS-K3", "der_rsa_file", only_keys(lambda f: {"key_file": f("rsa.der", _RSA.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))})),
    ("MAS-D1", "split_options_without_uri", seq(put("database.uri", None), put("database.host", "db"),
                                                put("database.port", 5432))),
    ("MAS-D3", "certificate_and_key_file", seq(put("database.ssl_certificate_file", "/c"),
                                               put("database.ssl_key_file", "/k"))),
    ("MAS-H2", "explicit_fd", put("http.listeners.0.binds", [{"fd": 0, "kind": "tcp"}])),
    ("MAS-H2", "unix_socket", put("http.listeners.0.binds", [{"socket": "/run/mas.sock"}])),
    ("MAS-H3", "complete_tls", put("http.listeners.0.tls", {"certificate_file": "/c", "key_file": "/k"})),
    ("MAS-E1", "valid_smtp_with_credentials", smtp(username="u", password_file="/p")),
    ("MAS-E1", "blackhole_ignores_smtp_keys", put("email.hostname", "mail.example.com")),
    ("MAS-E2", "valid_sendmail", sendmail(**{"from": "Matrix <noreply@example.org>"})),
    ("MAS-P1", "disabled_with_no_schemes", seq(put("passwords.enabled", False), put("passwords.schemes", []))),
    ("MAS-P1", "schemes_left_at_default", put("passwords.schemes", None)),
    ("MAS-P4", "readable_secret_file",
     lambda c, f: c["passwords"]["schemes"][0].__setitem__("secret_file", f("pepper", "p"))),
    ("MAS-C1", "hcaptcha_needs_nothing_here", put("captcha", {"service": "hcaptcha", "site_key": "k"})),
    ("MAS-U1", "disabled_discovery_without_issuer", prov(issuer=None, discovery_mode="disabled")),
    ("MAS-U3", "secret_file_only", prov(client_secret=None, client_secret_file="/s")),
    ("MAS-U5", "complete_apple", prov(token_endpoint_auth_method="sign_in_with_apple", client_secret=None,
                                      sign_in_with_apple=apple_block(private_key=None, private_key_file="/k"))),
    ("MAS-U6", "skip_confirmation_with_require",
     prov(claims_imports={"skip_confirmation": True, "localpart": {"action": "require"},
                          "displayname": {"action": "force"}})),
    ("MAS-U7", "on_conflict_replace_with_require",
     prov(claims_imports={"localpart": {"action": "require", "on_conflict": "replace"}})),
    ("MAS-U8", "several_scopes", prov(scope="openid profile email urn:custom:scope")),
    ("MAS-U9", "distinct_providers",
     lambda c, f: c["upstream_oauth2"]["providers"].append(_provider(id=ULID_B, synapse_idp_id="oidc-b"))),
    ("MAS-CL1", "private_key_jwt_with_jwks_uri",
     client(client_auth_method="private_key_jwt", jwks_uri="https://c.example.com/jwks")),
    ("MAS-CL3", "public_client", client(client_auth_method="none")),
    ("MAS-R1", "positive_rates", put("rate_limiting", {"login": {"per_ip": {"burst": 3, "per_second": 0.05}},
                                                      "registration": {"burst": 3, "per_second": 1e9}})),
    ("MAS-T1", "boundary_rates", put("telemetry", {"sentry": {"sample_rate": 0, "traces_sample_rate": 1.0}})),
    ("MAS-X1", "eviction_with_hard_limit_2",
     put("experimental", {"session_limit": {"soft_limit": 2, "hard_limit": 2, "dangerous_hard_limit_eviction": True}})),
]


def _apply(base_config: dict, mutation: Mutation, tmp_path) -> tuple[dict, Files]:
    cfg = copy.deepcopy(base_config)
    files = Files(str(tmp_path))
    mutation(cfg, files)
    return cfg, files


def test_base_config_is_clean(base_config, schema_path):
    assert run(copy.deepcopy(base_config), schema_path) == []


@pytest.mark.parametrize("rule,case,mutation,key_path,severity", FIRING,
                         ids=[f"{r}/{c}" for r, c, *_ in FIRING])
def test_rule_fires(rule, case, mutation, key_path, severity, base_config, schema_path, tmp_path):
    cfg, _ = _apply(base_config, mutation, tmp_path)
    findings = run(cfg, schema_path, base_dir=str(tmp_path))
    hits = [f for f in findings if f.option == rule]
    assert [(f.location.key_path, f.severity) for f in hits] == [(key_path, severity)], [f.message for f in findings]
    hit = hits[0]
    assert hit.rule == RULE_ID and hit.scope == "synapse+mas" and hit.details == {"mas_rule": rule}
    assert hit.message.startswith(f"{rule}: " if severity == "error" else f"{rule} (unverifiable): ")
    assert hit.remediation


@pytest.mark.parametrize("rule,case,mutation", SILENT, ids=[f"{r}/{c}" for r, c, _ in SILENT])
def test_rule_is_silent(rule, case, mutation, base_config, schema_path, tmp_path):
    cfg, _ = _apply(base_config, mutation, tmp_path)
    assert [f.message for f in run(cfg, schema_path, base_dir=str(tmp_path)) if f.option == rule] == []


def test_rule_table_matches_the_spec_and_every_rule_has_a_firing_case():
    assert [r.id for r in RULES] == SPEC_RULE_IDS
    assert all(r.section and r.summary and r.origin for r in RULES)
    assert [row["id"] for row in rule_table()] == SPEC_RULE_IDS
    assert rule_table()[5] == {"id": "MAS-K3", "section": "secrets", "origin": RULES[5].origin,
                               "summary": RULES[5].summary}
    assert {rule for rule, *_ in FIRING} == set(SPEC_RULE_IDS)


def test_rule_findings_without_a_schema(base_config):
    cfg = copy.deepcopy(base_config)
    cfg["matrix"]["secret_file"] = "/m"
    cfg["database"]["max_connections"] = 0  # a schema error: not reported without the schema
    [finding] = rule_findings(ConfigDoc(data=cfg))
    assert (finding.rule, finding.option, finding.location.key_path) == (RULE_ID, "MAS-M1", "matrix.secret_file")


def test_relative_file_paths_are_read_from_base_dir(base_config, schema_path, tmp_path):
    cfg = copy.deepcopy(base_config)
    cfg["secrets"].pop("encryption")
    cfg["secrets"]["encryption_file"] = "enc.key"
    (tmp_path / "enc.key").write_text(HEX64 + "\n")
    found = run(cfg, schema_path, base_dir=str(tmp_path))
    assert [(f.option, f.severity) for f in found] == [("MAS-S3", "error")]
    assert "newline" in found[0].message


def test_s2_replaces_the_schema_pattern_error_but_not_other_errors(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["secrets"]["encryption"] = "xyz"  # fails the schema pattern too: reported once, as MAS-S2
    cfg["database"]["host"] = "bad host!"  # MAS-D1 and the hostname format both apply here
    found = run(cfg, schema_path)
    assert [f.option for f in found if f.location.key_path == "secrets.encryption"] == ["MAS-S2"]
    assert sorted(f.option for f in found if f.location.key_path == "database.host") == ["MAS-D1", "schema:format"]


def test_two_x1_violations_at_once(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["experimental"] = {"session_limit": {"soft_limit": 3, "hard_limit": 1, "dangerous_hard_limit_eviction": True}}
    assert [f.option for f in run(cfg, schema_path)] == ["MAS-X1", "MAS-X1"]


def test_provider_findings_name_the_provider(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["upstream_oauth2"]["providers"][0].pop("issuer")
    [finding] = run(cfg, schema_path)
    assert finding.provider == "oidc-corp"


# ---------------------------------------------------------------- schema findings


SCHEMA_CASES: list[tuple[str, Mutation, str, str]] = [
    ("integer_secret", put("matrix.secret", 12345), "matrix.secret", "must be a string (or leave it out), not an "
                                                                     "integer"),
    ("missing_section", put("matrix", None), "matrix", "is missing the required key `matrix`"),
    ("uri_format", put("http.public_base", "not a uri"), "http.public_base", "is not an absolute URI"),
    ("hostname_format", seq(put("database.uri", None), put("database.host", "bad host!")), "database.host",
     "is not a host name"),
    ("ip_format", lambda c, f: c["http"]["trusted_proxies"].append("10.0.0.300/8"), "http.trusted_proxies[6]",
     "is not an IP address or network"),
    ("email_format", put("email.from", "no-at-sign"), "email.from", "is not an email address"),
    ("ulid_pattern", prov(id="abc"), "upstream_oauth2.providers[0].id", "must be a ULID"),
    ("minimum", put("database.max_connections", 0), "database.max_connections", "must be at least 1"),
    ("enum_like_one_of", put("passwords.schemes.0.algorithm", "md5"), "passwords.schemes[0].algorithm",
     "must be one of `bcrypt`, `argon2id`, `pbkdf2`"),
    ("unknown_resource", lambda c, f: c["http"]["listeners"][0]["resources"].append({"name": "metrics"}),
     "http.listeners[0].resources[6].name", "must be one of `health`, `prometheus`"),
    ("resource_without_name", lambda c, f: c["http"]["listeners"][0]["resources"].append({"path": "/x"}),
     "http.listeners[0].resources[6].name", "is missing the required key `name`"),
    ("resource_as_string", put("http.listeners.0.resources", ["discovery"]), "http.listeners[0].resources[0]",
     "must be a mapping, not a string"),
    ("inside_nullable_reference", put("http.listeners.0.tls", {"certificate": "C", "key": 5}),
     "http.listeners[0].tls.key", "must be a string (or leave it out), not an integer"),
    ("missing_required_in_list_item", client(client_secret="s"), "clients[0].client_auth_method",
     "is missing the required key `client_auth_method`"),
    ("boolean_expected", put("passwords.enabled", "yes"), "passwords.enabled", "must be true or false, not a string"),
]


@pytest.mark.parametrize("case,mutation,key_path,fragment", SCHEMA_CASES, ids=[c for c, *_ in SCHEMA_CASES])
def test_schema_violation_in_plain_words(case, mutation, key_path, fragment, base_config, schema_path, tmp_path):
    cfg, _ = _apply(base_config, mutation, tmp_path)
    found = [f for f in run(cfg, schema_path) if f.option and f.option.startswith("schema:")]
    assert [f.location.key_path for f in found] == [key_path], [f.message for f in found]
    assert found[0].message.startswith("schema") and fragment in found[0].message
    assert found[0].severity == "error" and found[0].rule == RULE_ID and found[0].remediation


def test_schema_message_names_the_definition_and_suggests_quoting(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["matrix"]["secret"] = 12345
    [finding] = run(cfg, schema_path)
    assert finding.message.startswith("schema (MatrixConfig.secret): `matrix.secret`")
    assert "Quote the value" in finding.remediation
    assert finding.details["schema_keyword"] == "type"


def test_unreadable_schema_is_a_config_error(base_config, tmp_path):
    with pytest.raises(ConfigError):
        run(copy.deepcopy(base_config), str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        run(copy.deepcopy(base_config), str(bad))


# ---------------------------------------------------------------- unknown keys


def test_unknown_top_level_key_is_a_note_with_a_suggestion(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["passwrods"] = {"enabled": False}
    [note] = run(cfg, schema_path)
    assert (note.rule, note.severity, note.scope, note.location.key_path) == ("note", "info", "synapse+mas",
                                                                              "passwrods")
    assert "did you mean `passwords`?" in note.message


def test_unknown_nested_keys_are_notes(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["http"]["listeners"][0]["bind"] = []
    cfg["upstream_oauth2"]["providers"][0]["client_secrt"] = "x"
    notes = [(f.location.key_path, f.message) for f in run(cfg, schema_path) if f.rule == "note"]
    assert [k for k, _ in notes] == ["http.listeners[0].bind", "upstream_oauth2.providers[0].client_secrt"]
    assert "`binds`" in notes[0][1] and "`client_secret`" in notes[1][1]


def test_free_form_maps_and_other_branch_keys_are_not_unknown(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg["upstream_oauth2"]["providers"][0]["additional_authorization_parameters"] = {"kc_idp_hint": "saml"}
    cfg["http"]["listeners"][1]["binds"] = [{"host": "localhost"}]  # read as fd 0: MAS-H2, not an unknown key
    assert [f.option for f in run(cfg, schema_path)] == ["MAS-H2"]


def test_a_key_that_looks_like_a_secret_is_never_shown(tmp_path, schema_path):
    secret = "Zq8vN2" + HEX64[:26]
    path = tmp_path / "mas.yaml"
    # The operator forgot to indent the value of `encryption`: it became a key of `secrets`.
    path.write_text(f"secrets:\n  encryption:\n  {secret}: null\n  keys: [{{key_file: /k}}]\n"
                    "matrix: {secret_file: /m}\n")
    notes = [f for f in validate_mas_config(load_mas_config([str(path)]), schema_path) if f.rule == "note"]
    assert len(notes) == 1
    assert secret not in notes[0].message + notes[0].location.key_path
    assert (notes[0].location.line, notes[0].location.key_path) == (3, "secrets")


@pytest.mark.parametrize("name,shown", [("passwrods", True), ("client_secrt", True), ("Passwords", True),
                                        ("deadbeefdeadbeef00", False), ("x" * 41, False), ("0abc", False),
                                        ("hunter2Pass", False), ("a b", False)])
def test_which_unknown_key_names_are_shown(name, shown):
    assert looks_like_key_name(name) is shown


def test_non_string_keys_are_noted_without_being_shown(base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg[7] = "x"
    [note] = run(cfg, schema_path)
    assert note.location.key_path == "" and "does not look like a key name" in note.message


# ---------------------------------------------------------------- positions in real files


def test_findings_point_at_the_offending_node(tmp_path, schema_path):
    rsa_file = tmp_path / "rsa.pem"
    rsa_file.write_text(RSA_PEM)
    main = tmp_path / "mas.yaml"
    main.write_text(
        "secrets:\n"
        f"  encryption: \"{HEX64}ff\"\n"
        f"  keys:\n    - key_file: {rsa_file}\n"
        "matrix:\n  secret: s\n  secret_file: /m\n"
        "upstream_oauth2:\n  providers:\n"
        f"    - id: {ULID_A}\n      synapse_idp_id: oidc-a\n      issuer: https://a/\n      client_id: c\n"
        "      token_endpoint_auth_method: none\n")
    overlay = tmp_path / "providers.yaml"
    overlay.write_text(
        "upstream_oauth2:\n  providers:\n"
        f"    - id: {ULID_B}\n      synapse_idp_id: oidc-a\n      issuer: https://b/\n      client_id: c\n"
        "      token_endpoint_auth_method: none\n")
    doc = load_mas_config([str(main), str(overlay)])
    found = {f.option: f.location for f in validate_mas_config(doc, schema_path)}
    assert (found["MAS-S2"].file, found["MAS-S2"].line, found["MAS-S2"].column) == (str(main), 2, 3)
    assert (found["MAS-M1"].line, found["MAS-M1"].key_path) == (7, "matrix.secret_file")
    u9 = found["MAS-U9"]
    assert (u9.file, u9.line, u9.column, u9.key_path) == (str(overlay), 4, 7,
                                                          "upstream_oauth2.providers[1].synapse_idp_id")
    assert set(found) == {"MAS-S2", "MAS-M1", "MAS-U9"}


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("text,valid", [
    ('"Authentication Service" <root@localhost>', True), ("root@localhost", True), ("<a@example.com>", True),
    ("Ünïcode Name <a@example.com>", True), ("not an email", False), ("foo@", False), ("@example.com", False),
    ("a@example.com, b@example.com", False), ("Name <a@example.com", False), ("group: a@example.com;", False),
    ("", False), ("a@example.com\nBcc: x@example.com", False), ("Name <a@example.com> trailing", False),
    # Periods in the display name (RFC 5322's obsolete phrase), which MAS's parser (lettre) accepts:
    # Synapse's default sender with an app_name such as "example.org", a company or a person's initial.
    ("Your Friendly example.org homeserver <noreply@example.org>", True), ("Example Inc. <a@example.com>", True),
    ("Dr. J. Doe <a@example.com>", True), ('"Quoted.Name" <a@example.com>', True),
    (".Leading <a@example.com>", False), ("Name <a@exa..mple.com>", False), ("a.@example.com", False),
    # Comments, which RFC 5322 allows and lettre refuses; parentheses inside a quoted name are text.
    ("a@example.com (Matrix)", False), ("Name (Team) <a@example.com>", False), ("Name <a@example.com> (x)", False),
    ('"Name (Team)" <a@example.com>', True),
])
def test_mailbox_parsing(text, valid):
    assert is_valid_mailbox(text) is valid


@settings(max_examples=500, deadline=None)
@given(st.from_regex(PLAIN_MAILBOX, fullmatch=True))
def test_plain_mailboxes_accepted_without_the_parser_are_accepted_by_it(text):
    assert parses_as_mailbox(text)


@pytest.mark.parametrize("fmt,value,valid", [
    ("uri", "postgresql://", True), ("uri", "http://[::]:8080/", True), ("uri", "https://a.example/p?q=1#f", True),
    ("uri", "no-scheme", False), ("uri", "http://exa mple/", False), ("uri", "http://[::1/", False),
    ("hostname", "db.example.com", True), ("hostname", "localhost", True), ("hostname", "-bad.example", False),
    ("hostname", "a..b", False), ("hostname", "x" * 64, False),
    ("ip", "127.0.0.1/8", True), ("ip", "::1/128", True), ("ip", "10.0.0.1", True), ("ip", "10.0.0.0/33", False),
    ("email", "a@b", True), ("email", "ab", False),
])
def test_format_checker(fmt, value, valid):
    assert format_checker().conforms(value, fmt) is valid


@pytest.mark.parametrize("data,password,kind", [
    (RSA_PEM.encode(), None, "rsa"), (EC_PEM.encode(), None, "other"), (RSA_PKCS8_LOCKED.encode(), b"pw", "rsa"),
    (RSA_PKCS8_LOCKED.encode(), b"wrong", "locked"), (EC_PKCS8_LOCKED.encode(), None, "locked"),
    (_pem(_RSA, password=b"pw").encode(), None, "rsa"), (RSA_PEM.encode(), b"unneeded", "rsa"),
    (b"-----BEGIN RSA PRIVATE KEY-----\nnonsense\n-----END RSA PRIVATE KEY-----\n", None, "invalid"),
    (b"\x00\x01garbage", None, "invalid"),
], ids=["rsa", "ec", "pkcs8_with_password", "wrong_password", "encrypted_ec", "legacy_encrypted_rsa_label",
        "password_for_plain_key", "bad_pem", "bad_der"])
def test_key_kind(data, password, kind):
    assert key_kind(data, password) == kind


def test_key_loaders_are_the_public_cryptography_functions():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    load_pem, load_der, rsa_private_key, _ = key_loaders()
    assert (load_pem, load_der) == (serialization.load_pem_private_key, serialization.load_der_private_key)
    assert issubclass(rsa_private_key, rsa.RSAPrivateKey)


# ---------------------------------------------------------------- properties: no secret in messages, no crash

_SECRET = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=_SECRET)
def test_secret_values_never_appear_in_findings(secret, base_config, schema_path, tmp_path):
    cfg = copy.deepcopy(base_config)
    cfg["secrets"]["encryption"] = secret  # MAS-S2 (and the schema pattern)
    cfg["secrets"]["keys"].append({"key": secret, "key_file": "/k", "password": secret, "password_file": "/p"})
    cfg["matrix"]["secret_file"] = "/m"  # MAS-M1 with an inline secret
    cfg["matrix"]["secret"] = secret
    cfg["database"] = {"uri": f"postgresql://user:{secret}@db/mas {secret}", "password": secret,
                       "password_file": "/p", "ssl_key": secret}
    cfg["passwords"]["schemes"].append({"version": 1, "algorithm": "bcrypt", "secret": secret,
                                        "secret_file": "/s"})
    cfg["upstream_oauth2"]["providers"][0].update(token_endpoint_auth_method="none", client_secret=secret,
                                                  scope=f"openid  {secret}")
    cfg["clients"] = [{"client_id": secret, "client_auth_method": "none", "client_secret": secret}]
    cfg["email"] = {"transport": "sendmail", "password": secret, "from": secret, "reply_to": f"{secret}@"}
    cfg["captcha"] = {"service": "recaptcha_v2", "secret_key": secret}
    cfg["http"]["listeners"][0]["tls"] = {"key": secret, "key_file": "/k", "password": secret}
    cfg["http"]["public_base"] = secret
    cfg[secret[:3] + "x"] = {"nested": secret}
    enc = tmp_path / "enc"
    enc.write_text(secret + "\n")
    cfg["secrets"]["encryption_file"] = str(enc)
    findings = run(cfg, schema_path)
    assert len({f.option for f in findings}) >= 15
    for f in findings:
        assert secret not in f.message and secret not in f.remediation
        assert secret not in repr(f.details)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70000) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "port", "key", "secret", "version", "action", "id", "x", "providers", "keys",
                         "binds", "resources", "tls", "transport", "scope", "claims_imports", "localpart"]),
        children, max_size=4),
    max_leaves=12)
_SECTIONS = ["clients", "http", "database", "telemetry", "email", "secrets", "passwords", "matrix",
             "rate_limiting", "upstream_oauth2", "captcha", "experimental", "policy"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(_SECTIONS), value=_JSON)
def test_arbitrary_section_content_never_crashes(section, value, base_config, schema_path):
    cfg = copy.deepcopy(base_config)
    cfg[section] = value
    for f in run(cfg, schema_path):
        assert f.rule in (RULE_ID, "note") and f.severity in ("error", "warning", "info")
