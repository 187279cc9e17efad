"""The fast YAML path gives ruamel's data, positions and notes for every text it takes, and declines the rest."""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml.resolver import implicit_resolvers

from engine.errors import ConfigError
from engine.yamlfast import RESOLVERS, compose
from engine.yamlsource import load_fast, load_with_ruamel, load_yaml_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSIONS = [(1, 1), (1, 2)]


def _view(loaded):
    positions = {p: (loc.file, loc.line, loc.column, loc.key_path) for p, loc in loaded.positions.items()}
    return repr(loaded.data), positions, [(n.message, n.location) for n in loaded.notes]


def _same_as_ruamel(text: str, version) -> bool:
    """True when the fast path took ``text`` (and then gave ruamel's result); fails if they differ."""
    fast = load_fast(text, "f.yaml", version)
    if fast is None:
        return False
    try:
        slow = load_with_ruamel(text, "f.yaml", version)
    except ConfigError as exc:  # pragma: no cover - a failure message
        pytest.fail(f"the fast path took a text ruamel rejects ({exc}):\n{text}")
    assert _view(fast) == _view(slow), text
    return True


def test_the_resolver_table_is_ruamels():
    def norm(pattern: str) -> str:
        return re.sub(r"\s+", "", pattern)

    ours = [(versions, tag, norm(pattern), tuple(first)) for versions, tag, pattern, first in RESOLVERS]
    theirs = [(tuple(versions), tag, norm(regexp.pattern), tuple(first))
              for versions, tag, regexp, first in implicit_resolvers]
    assert ours == theirs


def _repository_yaml() -> list[str]:
    out = []
    for base in ("rules", "tests", "fixtures", "engine"):
        for root, _, files in os.walk(os.path.join(ROOT, base)):
            out += [os.path.join(root, f) for f in files if f.endswith((".yaml", ".yml"))]
    return sorted(out)


def test_every_yaml_file_of_the_repository_loads_as_with_ruamel():
    taken = 0
    for path in _repository_yaml():
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for version in VERSIONS:
            try:
                taken += _same_as_ruamel(text, version)
            except ConfigError:
                pass
    assert taken > 50  # the rule files, the fixtures and the test cases are mostly plain


@pytest.mark.parametrize("text", [
    "a: 1\nb:\n  c: [x, 'y', \"z\"]\n  d:\n  - 1\n  - e: f\n    g: h\n  -   i: j\n",
    "a:\n    - x   # comment\n    - 'it''s'\n# comment\nb: ~\nc:\nd: null\n",
    "k: |\n  line 1\n\n   more\n  line 3\nnext: 1\n",
    "k: |-\n  a\n  b\n\n\n",
    "k: |\n  no newline at the end",
    "k: >\n  a\n  b\n\n  c\n   d\n  e\n",
    "k: >-\n  folded\n  text\nz: 2\n",
    "- a\n- b: 1\n  c: 2\n- [1, 2.5, -3]\n",
    "y: n\nyes: no\non: off\nkey: 0\nf: -1.5\nt: true\n",
    "a: 1\nb: 2\na: 3\n",
    "  indented: root\n  other: 2\n",
    "url: http://[::]:8080/\nips: ['::1/128']\nip: ::1\nq: ?x\n",
    "a: b#c\nd: e #f\ng: 'h' # i\n",
    # Forms libyaml composes as ruamel does (the hand-written scanner used to leave them to ruamel).
    "a: {b: 1, 'c': [d, {e: f}]}\n", "a: b\n  c\n", "a: 'b\n  c'\n", "a: \"\\n\\t\\u00e9\\x41\"\n", "---\na: 1\n",
    "a: 1\n...\n", "a: 1\r\nb: 2\r\n", "- - a\n  - b\n- c\n", "-\n  a: 1\n", "? a\n: b\n", "a: [b, ]\n",
    "a: |2\n   x\n", "a: |+\n  x\n\n", "a: |\n\n  x\n", "a: |\n  x\n\n  y\n",
    "'quoted key': 1\n\"k\": 2\n", "a: ~\nb: ''\n", "a: b?\nc: [d, '?']\n", "a: x&y!z\n",
    "a: b  \n\n  d\n", "a:\n\n\n  b: 1\n", "é: ü\n", "k: 'x' \nl: \"y\" # z\n",
])
@pytest.mark.parametrize("version", VERSIONS)
def test_the_forms_it_takes(text, version):
    assert _same_as_ruamel(text, version)


@pytest.mark.parametrize("text", [
    # what the builder or the resolution need ruamel for
    "a: &x 1\nb: *x\n", "a: &x [1]\nb: *x\n", "a: &x 1\n", "&a: 1\n", "a: [&x 1]\n", "a: !tag 1\n", "a: !!str 1\n",
    "a: ! {b: 1}\n", "! a: '1'\n", "a: {b: ! 1}\n", "<<: {a: 1}\n",
    "a: 2001-01-01\n", "a: 0x10\n", "a: 1_000\n", "a: 1e3\n", "a: .inf\n", "a: 0755\n", "a: 1.\n", "a: =\n",
    "%YAML 1.1\n---\na: 1\n", "a: 1\n---\nb: 2\n",
    # what libyaml and ruamel read differently: tabs, a comment right after a block header, NEL/LS/PS, BOM,
    # lines of spaces only (before a block scalar's content), `?` in flow plain scalars, root scalars
    "a:\tb\n", "\ta: 1\n", "a: 1\n\tb: 2\n", "a: 'x\ty'\n", "a: |#c\n  x\n", "a: >-#c\n  x\n", "a: \x85b\n",
    "a: b\u2028c\n", "\u2029a: 1\n", "\ufeffa: 1\n", "a: '\ufeff'\n",
    "a: |\n  x\n   \n", "a: |\n  \n    x\n", "a: 1\n  \nb: 2\n", "a: [b?]\n", "a: {b?: c}\n", "| \n#x\n",
    "just a scalar\n", "---\n",
    # errors (ruamel reports them)
    "a: b: c\n", "a: 1\n b: 2\n", "a: [b\n", "a: \"\\ud800\"\n", "a: \x07\n",
    "a: @b\n", "a: '\n",
])
def test_what_it_leaves_to_ruamel(text):
    assert compose(text, (1, 1)) is None
    assert compose(text, (1, 2)) is None


def test_without_libyaml_ruamel_composes(monkeypatch):
    import engine.yamlfast as yamlfast

    monkeypatch.setattr(yamlfast, "_loader_class", lambda: None)
    assert compose("a: 1\n", (1, 2)) is None
    assert load_yaml_text("a: 1\n", "f.yaml", (1, 2)).data == {"a": 1}


def test_empty_documents():
    assert load_fast("", "e.yaml", (1, 2)).data is None
    assert load_fast("# only a comment\n\n", "e.yaml", (1, 2)).data is None


def test_errors_come_from_ruamel_with_their_positions():
    with pytest.raises(ConfigError) as err:
        load_yaml_text("a: 1\nb: [1, 2\n", "hs.yaml", (1, 1))
    assert str(err.value).startswith("hs.yaml:") and "YAML syntax error" in str(err.value)


# ---------------------------------------------------------------- properties

_WORDS = ["a", "b", "key_1", "x.y", "on", "y", "N", "null", "~", "true", "False", "0", "12", "-3", "1.5", "-0.0",
          "0755", "1e3", "2001-01-01", "::1", "?x", ":x", "-x", "a b", "a:b", "a #b", "a#b", "http://h:1/p", "5m",
          "10.0.0.0/8", "Ünï", "a,b", "[x]", "{x}", "a: b", "a:", "'q'", '"d"', "it's", "=", "<<", "*x", "&x", "!x",
          "|", ">", "", " ", "{a: b}", "{}", "[]", "\\n", "\\t", "a\\\\b", "é\\u00e9", "-", "--- x", "... x", "? x",
          "%x", "@x", "`x", ": x", "a ,b"]
_scalar = st.one_of(
    st.sampled_from(_WORDS),
    st.sampled_from(_WORDS).map(lambda w: "'" + w.replace("'", "''") + "'"),
    st.sampled_from(_WORDS).map(lambda w: '"' + w + '"'),
    st.lists(st.sampled_from(_WORDS), max_size=3).map(lambda ws: "[" + ", ".join(ws) + "]"),
)
_comment = st.sampled_from(["", "", " # c", "  #c", "#c"])


@st.composite
def _document(draw, depth: int = 0, indent: int = 0) -> list[str]:
    """Lines of a block collection at ``indent``: mostly well formed, with some noise."""
    pad = " " * indent
    lines: list[str] = []
    if draw(st.booleans()):  # a mapping
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(["a", "b", "c", "on", "y", "1", "k.x", "a b", "-k"]))
            kind = draw(st.integers(0, 5 if depth < 2 else 2))
            if kind <= 2:
                lines.append(f"{pad}{key}: {draw(_scalar)}{draw(_comment)}")
            elif kind == 3:
                block = draw(st.sampled_from(["|", "|-", ">", ">-", "|+", ">+", "|2"]))
                body_indent = indent + draw(st.integers(1, 3))
                body = draw(st.lists(st.sampled_from(["text", " more", "", "# hash", "x  ", "   "]), min_size=1,
                                     max_size=4))
                lines.append(f"{pad}{key}: {block}")
                lines += [(" " * body_indent + b) if b else "" for b in body]
            else:
                lines.append(f"{pad}{key}:{draw(_comment)}")
                step = draw(st.sampled_from([0, 2, 4]))
                lines += draw(_document(depth + 1, indent + step))
    else:  # a sequence
        for _ in range(draw(st.integers(1, 3))):
            if depth < 2 and draw(st.booleans()):
                inner = draw(_document(depth + 1, indent + 2))
                first = inner[0]
                lines.append(f"{pad}- {first[indent + 2:]}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {draw(_scalar)}{draw(_comment)}")
    if draw(st.integers(0, 9)) == 0:
        noise = ["", "# note", "   # note", "  x: 1", "- y", "   ", "  more", "---", "...", "a:\tb"]
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(noise)))
    return lines


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document(), st.sampled_from(VERSIONS), st.sampled_from(["\n", ""]))
def test_property_generated_documents_load_as_with_ruamel(lines, version, end):
    _same_as_ruamel("\n".join(lines) + end, version)


_CHARS = list("a b\n:-#[]{},'\"\\|>?!&*.1é/nu0x%@`~=") + [
    "\\/", "\\N", "\\_", "\\L", "\\P", "\\ ", "\\e", "\\0", "---", "...", ": ", "- ", "\n  ", "\n    ", "\n- ", "<<",
    "y", "on", "1.5", "0o7", "0b1", "\r\n", "\t", "\ufeff", "\x85", "\u2028"]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["", "k: ", "- ", "k:\n  ", "k: [", "k: {", "k: |\n  ", "k: >\n  ", "k: \"", "k: '", "a:\n- "]),
       st.lists(st.sampled_from(_CHARS), min_size=1, max_size=25), st.sampled_from(VERSIONS))
def test_property_whatever_libyaml_takes_reads_as_with_ruamel(prefix, chars, version):
    """Character noise: where libyaml and ruamel part (an error in one only, other values or positions), the
    fast path must decline."""
    _same_as_ruamel(prefix + "".join(chars), version)
