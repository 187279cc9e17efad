"""``syn2mas config generate``: options in, files and stderr lines out, exit code back (cli.py stays thin)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from typing import Sequence, TextIO

from engine.errors import ConfigError
from engine.outputs import check_output, inside_directory
from engine.sensitive import scrub

from .generate import GenerateOptions, GenerateResult, finding_lines, generate, write_outputs
from .randomness import Entropy

# The fixed clock of seeded runs when --clock is not given (tests only; a seeded run warns on every use).
DEFAULT_TEST_CLOCK = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)


def entropy_for(seed: str | None, clock: str | None) -> Entropy:
    """The OS CSPRNG, or (tests only, with a warning outside pytest) a seeded source with a fixed clock."""
    if clock is not None:
        try:
            moment = _dt.datetime.fromisoformat(clock.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError("option --clock: not an ISO 8601 date and time", key="--clock") from None
    else:
        moment = DEFAULT_TEST_CLOCK
    if seed is None:
        return Entropy.system(lambda: moment) if clock is not None else Entropy.system()
    return Entropy.seeded(seed, moment)


def _trace_json(result: GenerateResult, compat: str) -> str:
    entries = [dict(t.as_dict(), document=t.document) for t in result.trace]
    # `compat` records which meaning of the two inverted options was used (mapping.md 4.8).
    return json.dumps({"version": 1, "compat": compat, "trace": entries}, indent=2) + "\n"


def _check_targets(inputs: Sequence[str], targets: dict[str, str | None],
                   synapse_configs: Sequence[str] = ()) -> None:
    """Every output is checked before the first is written (a late failure would leave some written): none
    may destroy an input, be a device or pipe, share a file with another output, or sit in an unwritable
    directory. The MAS file may not go into a Synapse configuration directory, which Synapse (and the next
    run) would read as Synapse configuration; the overlay is meant for Synapse and may."""
    seen: dict[str, str] = {}
    for flag, path in targets.items():
        if not path:
            continue
        check_output(path, flag, inputs)
        real = os.path.realpath(path)
        if real in seen:
            raise ConfigError(f"options {seen[real]} and {flag} name the same file", file=path, key=flag)
        seen[real] = flag
        directory = inside_directory(path, synapse_configs) if flag == "--output" else None
        if directory:
            raise ConfigError(f"option {flag}: the MAS configuration would be inside the Synapse configuration "
                              f"directory {directory}, which Synapse reads", file=path, key=flag,
                              hint="write it elsewhere; nothing was written")


def run(synapse_configs: Sequence[str], options: GenerateOptions, *, synapse_patch: str | None = None,
        trace_file: str | None = None, seed: str | None = None, clock: str | None = None,
        err: TextIO | None = None) -> int:
    """Generate, write the outputs atomically (mode 0600), report to ``err`` (default: the current stderr).

    Returns exit code 0; errors raise :class:`~engine.errors.Syn2MasError` (exit 1) before anything is written.
    """
    if not options.output:
        raise ConfigError("no output file", key="--output", hint="pass --output FILE")
    targets = {"--output": options.output, "--synapse-patch": synapse_patch, "--trace": trace_file}
    _check_targets([*synapse_configs, *([options.from_mas] if options.from_mas else [])], targets, synapse_configs)
    result = generate(list(synapse_configs), options, entropy_for(seed, clock))
    write_outputs(result, options.output, synapse_patch)
    if trace_file:
        from .writer import atomic_write

        atomic_write(trace_file, _trace_json(result, options.compat), mode=0o644)
    lines = finding_lines(result.findings)
    source = "updated" if result.base != "fresh" else "wrote a fresh configuration to"
    lines.append(f"{source} {options.output}" + (f" (from {result.base})"
                                                 if result.base not in ("fresh", options.output) else ""))
    for path in result.secret_files:
        lines.append(f"wrote secret file {path}")
    if synapse_patch:
        lines.append(f"wrote the Synapse overlay {synapse_patch}; give it to Synapse last, after `syn2mas "
                     "migrate` succeeded. To edit the Synapse files in place instead:")
        lines.extend(f"  - {edit}" for edit in result.edits)
    warnings = sum(1 for f in result.findings if f.severity == "warning")
    notes = sum(1 for f in result.findings if f.severity == "info")
    lines.append(f"{warnings} warning{'s' if warnings != 1 else ''}, {notes} note{'s' if notes != 1 else ''}")
    # Last line of defence: nothing printed may contain a secret of either configuration.
    (err or sys.stderr).write(scrub("\n".join(lines) + "\n", result.secrets))
    return 0


def run_synapse_patch(synapse_configs: Sequence[str], mas_configs: Sequence[str], output: str,
                      options: GenerateOptions, err: TextIO | None = None) -> int:
    """`syn2mas synapse-patch`: write the overlay for the given MAS configuration (mode 0600), list the
    edits on ``err``; exit 0, or raise (exit 1) before anything is written."""
    from .generate import synapse_patch

    _check_targets([*synapse_configs, *mas_configs], {"--output": output})
    result = synapse_patch(synapse_configs, mas_configs, options)
    from .writer import atomic_write

    atomic_write(output, result.text)
    lines = [f"wrote the Synapse overlay {output}; give it to Synapse last, after `syn2mas migrate` succeeded. "
             "To edit the Synapse files in place instead:", *(f"  - {edit}" for edit in result.edits)]
    (err or sys.stderr).write(scrub("\n".join(lines) + "\n", result.secrets))
    return 0
