"""What every command module shares: how an error ends a command and how a warning is shown (stderr)."""
from __future__ import annotations

import typer


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (1: unusable input, 2: bad command line)."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg="yellow", err=True)
