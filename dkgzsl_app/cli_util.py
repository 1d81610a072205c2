"""What every command module shares: the one place a library error ends a command (``DkgzslGroup``),
``fail`` for the CLI's own checks, and ``warn``, the one way a notice reaches the user (stderr).

Commands do not catch ``DkgzslError`` themselves: the group's ``invoke`` does, for every sub-command
and sub-group, under ``main()`` and under typer's CliRunner alike.
"""
from __future__ import annotations

import math
from typing import NoReturn, Optional

import typer
from typer.core import TyperGroup


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (1: unusable input, 2: bad command line)."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg="yellow", err=True)


class DkgzslGroup(TyperGroup):
    """The root command group: a ``DkgzslError`` from any command becomes ``error: message`` on stderr
    and the exit code the error carries (no traceback)."""

    def invoke(self, ctx):
        from .models.errors import DkgzslError

        try:
            return super().invoke(ctx)
        except DkgzslError as e:
            fail(str(e), e.exit_code)


def finite(value: Optional[float]) -> Optional[float]:
    """Typer callback for float options: refuse nan and ±inf (exit code 2)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number.")
    return value


def given_options(ctx, drop: tuple[str, ...] = ()) -> list[str]:
    """The command's options as given on the command line or the environment (not defaults), in declaration
    order, with their values, minus the parameters named in ``drop``, as argv words."""
    words: list[str] = []
    for param in ctx.command.params:
        if param.name in drop or not getattr(param, "opts", None):
            continue
        source = getattr(ctx.get_parameter_source(param.name), "name", "DEFAULT")
        if source in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params.get(param.name)
        value = getattr(value, "value", value)  # enums
        if getattr(param, "is_flag", False) or isinstance(value, bool):
            off = getattr(param, "secondary_opts", None)
            if value:
                words.append(param.opts[0])
            elif off:
                words.append(off[0])
            continue
        words += [param.opts[0], str(value)]
    return words
