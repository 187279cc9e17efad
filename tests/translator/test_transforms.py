"""The named transforms mapping rules use for what YAML cannot express (mapping.md 3.2, 4.5, 4.7, 7.1, 7.4)."""
from __future__ import annotations

import datetime as _dt

import pytest

from translator.randomness import Entropy
from translator.transforms import OMIT, TRANSFORMS, TransformContext, as_result, normalise_url

CTX = TransformContext(None, None)


def run(name, value, ctx=CTX, **args):
    return as_result(TRANSFORMS[name](value, ctx, **args))


@pytest.mark.parametrize("given, expected", [
    ("https://H.Example.ORG", "https://h.example.org/"),
    ("HTTP://example.org:8008", "http://example.org:8008/"),
    ("https://example.org/Path?Q=1#F", "https://example.org/Path?Q=1#F"),
    ("https://user:Pw@Example.org/x", "https://user:Pw@example.org/x"),
    ("http://[::1]:8080", "http://[::1]:8080/"),
    ("not a url", None), ("https://example.org:port/", None), ("example.org", None), (42, None),
    (" https://example.org/", None),
])
def test_url_normalisation(given, expected):
    assert normalise_url(given) == expected


def test_url_problem_omits_the_value():
    result = run("url", "https://x.org:99999/")
    assert result.value is OMIT and [p.kind for p in result.problems] == ["bad_url"]


@pytest.mark.parametrize("scopes, value, kinds", [
    (["openid", "profile", "email"], "email openid profile", []),
    (["openid", "openid"], OMIT, []),
    (["openid", "bad scope"], OMIT, ["invalid"]),
    (["profile", "profile", 'q"uote'], "profile", ["invalid"]),
    ([], "", ["empty"]),
    (["bad scope"], "", ["invalid", "empty"]),
    ("openid", OMIT, ["not_a_list"]),
])
def test_scope_normalisation(scopes, value, kinds):
    result = run("scope", scopes)
    assert result.value == value if value is not OMIT else result.value is OMIT
    assert [p.kind for p in result.problems] == kinds


def test_invalid_scope_problem_points_at_the_item():
    result = run("scope", ["openid", "a b"])
    assert result.problems[0].at == (1,) and result.problems[0].vars == {"scope": "a b"}


def test_auth_params_drop_response_mode_sort_and_report_non_strings():
    result = run("auth_params", {"response_mode": "query", "z": "1", "a": "2", "n": 3})
    assert list(result.value) == ["a", "z"]
    assert [(p.kind, p.at) for p in result.problems] == [("not_a_string", ("n",))]
    assert run("auth_params", {"response_mode": "query"}).value is OMIT


@pytest.mark.parametrize("template, app, expected", [
    ("%(app)s <noreply@example.org>", None, "Matrix <noreply@example.org>"),
    ("%(app)s <noreply@example.org>", "Chat", "Chat <noreply@example.org>"),
    ("100%% <a@example.org>", None, "100% <a@example.org>"),
    ("noreply@example.org", None, "noreply@example.org"),
])
def test_notif_from(template, app, expected):
    assert run("notif_from", {"template": template, "app_name": app}).value == expected


@pytest.mark.parametrize("template, kind", [("just a name", "not_a_mailbox"), ("%(application)s <a@b.org>", "bad_format"),
                                            ("%(app)d <a@b.org>", "bad_format")])
def test_notif_from_problems(template, kind):
    result = run("notif_from", {"template": template, "app_name": "x"})
    assert result.value is OMIT and result.problems[0].kind == kind


def test_string_and_integer():
    assert run("string", 12345).value == "12345"
    assert run("string", True).value == "true"
    assert run("string", {"a": 1}).value is OMIT
    assert run("integer", "587").value == 587
    assert run("integer", "smtp").value is OMIT
    assert run("integer", True).value is OMIT


def test_strtobool_reports_values_synapse_rejects():
    assert run("strtobool", "on").value is True
    bad = run("strtobool", "maybe")
    assert bad.value is False and bad.problems[0].vars == {"value": "maybe"}


def test_stable_ulid_reuses_the_existing_id_else_uses_the_run_clock():
    at = _dt.datetime(2026, 8, 7, tzinfo=_dt.timezone.utc)
    entropy = Entropy.seeded(1, at)
    new = run("stable_ulid", "oidc", TransformContext(entropy, at)).value
    assert len(new) == 26 and new[:10] == Entropy.seeded(2, at).ulid(at)[:10]
    kept = run("stable_ulid", "oidc", TransformContext(entropy, at, True, "01J0000000000000000000KEEP")).value
    assert kept == "01J0000000000000000000KEEP"


def test_secret_file_whitespace(tmp_path):
    clean, spaced, missing = tmp_path / "clean", tmp_path / "spaced", tmp_path / "missing"
    clean.write_text("secret\n")
    spaced.write_text("secret \n")
    assert run("secret_file_whitespace", str(clean)).problems == []
    assert [p.kind for p in run("secret_file_whitespace", str(spaced)).problems] == ["whitespace"]
    assert run("secret_file_whitespace", str(missing)).problems == []  # may exist on the server only


def test_template_filters_notes_only_unknown_filters():
    result = run("template_filters", "{{ user.email | localpart_from_email | lower }}", known=["lower"])
    assert result.value == "{{ user.email | localpart_from_email | lower }}"
    assert [p.vars for p in result.problems] == [{"filter": "localpart_from_email"}]


def test_omit_keys():
    assert run("omit_keys", {"msc3861": {}, "x": 1}, keys=["msc3861"]).value == {"x": 1}
