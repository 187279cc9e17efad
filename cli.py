"""syn2mas command line: parses options, calls engine/translator/migrator, picks a reporter, sets the exit code.

Imports of the heavy modules happen inside the commands so that `syn2mas lint` starts fast.
"""
from __future__ import annotations

import os
import sys

import click

EXIT_USAGE = 1


class _Group(click.Group):
    """Turns every known error into a one-paragraph message and exit 1; never a traceback."""

    def invoke(self, ctx: click.Context):
        from engine.errors import Syn2MasError

        try:
            return super().invoke(ctx)
        except Syn2MasError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was committed", err=True)
            ctx.exit(EXIT_USAGE)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # last resort: a bug must still not print a traceback (or a secret in it)
            if os.environ.get("SYN2MAS_DEBUG"):
                raise
            click.echo(f"internal error ({type(exc).__name__}); nothing was committed. "
                       "Re-run with SYN2MAS_DEBUG=1 for details and report it.", err=True)
            ctx.exit(EXIT_USAGE)


synapse_config_option = click.option(
    "--synapse-config", "synapse_configs", multiple=True, required=True, metavar="FILE",
    help="Synapse configuration file or directory; repeatable, later files replace whole top-level keys.")
mas_config_option = click.option(
    "--config", "mas_configs", multiple=True, metavar="FILE",
    help="MAS configuration file; repeatable, merged as MAS does.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syn2mas")
def main() -> None:
    """Move a Matrix homeserver's authentication from Synapse to MAS without logging anyone out."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
