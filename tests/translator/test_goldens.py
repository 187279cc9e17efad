"""Golden end-to-end cases: fixtures/generate-*/ (Synapse inputs, options) -> expected MAS file, overlay, findings.

Generated with a fixed seed and clock and compared byte for byte; ``pytest --update-goldens`` rewrites the
expected files (review the diff). Every golden must also be valid for MAS and regenerate to the same bytes.
"""
from __future__ import annotations

import contextlib
import os

import pytest

from engine.yamlsource import load_yaml_file
from translator.generate import GenerateOptions, finding_lines, generate
from translator.randomness import Entropy
from tests.rulecases.mapping import CLOCK, error_ids, validation_errors

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures")
CASES = sorted(name for name in os.listdir(FIXTURES) if name.startswith("generate-"))
# The MAS rules a golden is expected to break, by case (mapping.md says the output keeps them).
EXPECTED_INVALID = {"generate-oidc-providers": []}


def _inputs(case_dir: str) -> list[str]:
    inputs = ["synapse/homeserver.yaml"]
    if os.path.isdir(os.path.join(case_dir, "synapse", "conf.d")):
        inputs.append("synapse/conf.d")
    return inputs


def _options(case_dir: str) -> dict:
    path = os.path.join(case_dir, "options.yaml")
    return dict(load_yaml_file(path, (1, 2)).data or {}) if os.path.exists(path) else {}


def _outputs(case: str, **extra) -> dict[str, str]:
    case_dir = os.path.join(FIXTURES, case)
    with contextlib.chdir(case_dir):
        result = generate(_inputs(case_dir), GenerateOptions(**_options(case_dir), **extra),
                          Entropy.seeded(case, CLOCK))
    return {"mas.yaml": result.mas_text, "synapse-patch.yaml": result.patch_text,
            "findings.txt": "\n".join(finding_lines(result.findings)) + "\n"}


def test_there_are_goldens_for_every_required_case():
    assert set(CASES) >= {"generate-minimal", "generate-legacy-oidc", "generate-oidc-providers",
                          "generate-passwords-off", "generate-split-config", "generate-recaptcha",
                          "generate-smtp-email", "generate-pepper"}


@pytest.mark.parametrize("case", CASES)
def test_golden(case, request, tmp_path):
    expected_dir = os.path.join(FIXTURES, case, "expected")
    outputs = _outputs(case)
    if request.config.getoption("--update-goldens"):
        os.makedirs(expected_dir, exist_ok=True)
        for name, text in outputs.items():
            with open(os.path.join(expected_dir, name), "w", encoding="utf-8") as fh:
                fh.write(text)
    for name, text in outputs.items():
        with open(os.path.join(expected_dir, name), encoding="utf-8") as fh:
            assert text == fh.read(), f"{case}/expected/{name} differs; run pytest --update-goldens and review"
    assert error_ids(validation_errors(outputs["mas.yaml"], str(tmp_path))) == EXPECTED_INVALID.get(case, [])


@pytest.mark.parametrize("case", CASES)
def test_golden_regenerates_to_the_same_bytes(case):
    """Updating the golden MAS file from unchanged inputs (another seed) changes nothing (mapping.md 5.10)."""
    expected = os.path.join(FIXTURES, case, "expected", "mas.yaml")
    case_dir = os.path.join(FIXTURES, case)
    with contextlib.chdir(case_dir):
        result = generate(_inputs(case_dir), GenerateOptions(**_options(case_dir), from_mas=expected),
                          Entropy.seeded("another seed", CLOCK))
    with open(expected, encoding="utf-8") as fh:
        assert result.mas_text == fh.read()
