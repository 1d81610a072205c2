"""``dkgzsl add-class`` and ``dkgzsl classes list|show|export|remove|rename|repair``: the class registry from
the shell.

Registered on the main app by cli.py. Like every command, the heavy imports happen inside the commands; a
DkgzslError propagates to the app group, which prints it and exits with its code.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .sources import DEFAULT_MODEL
from .cli_util import fail as _fail, warn as _warn

MODEL_HELP = "Bundle: hf-hub:ORG/NAME[@REV], local-dir:PATH, a folder, or a bundled model name."

classes_app = typer.Typer(help="Classes of a model: built-in and user-added (the class registry).",
                          no_args_is_help=True)


def _progress(quiet: bool = False):
    """A progress bar for the refit on stderr, drawn only on a terminal (quiet in pipes, CI and --json)."""
    from .progress import TrainProgress

    return TrainProgress(enabled=not quiet and sys.stderr.isatty())


def _parse_sets(sets: list[str]) -> dict[str, str]:
    out = {}
    for item in sets:
        attr, eq, value = item.partition("=")
        if not eq or not attr.strip():
            _fail(f"--set {item!r}: write it as ATTRIBUTE=VALUE, e.g. --set colour:red=1.", 2)
        out[attr.strip()] = value.strip()
    return out


def add_class(
    attributes: Optional[Path] = typer.Option(None, "--attributes", "-a", help="CSV: a 'name' column and one column per attribute of the model (an 'origin' column is optional); one row per new class."),
    from_class: Optional[str] = typer.Option(None, "--from-class", help="Instead of a CSV: start from this class's attribute values ..."),
    name: Optional[str] = typer.Option(None, "--name", help="... name the new class ..."),
    sets: list[str] = typer.Option([], "--set", help="... and change attributes: --set ATTRIBUTE=VALUE (repeatable)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    offline: bool = typer.Option(False, "--offline", help="Use only the local Hub cache (no network)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Add classes you have no photos of, from their attribute values; classify recognises them at once.

    The model's generator synthesises features for each new class and the classifier gets a row for it,
    fitted against a replay of the model's own classes. The bundle is not changed: user classes live in
    the class registry (dkgzsl classes list --user; dkgzsl classes remove NAME undoes an add).
    """
    from .classes import add_classes, add_classes_from_csv, derive_class

    if (attributes is None) == (from_class is None):
        _fail("give either --attributes CSV or --from-class NAME --name NEW [--set ATTRIBUTE=VALUE ...].", 2)
    if from_class is not None:
        if not name:
            _fail("--from-class needs --name NEW: the name of the class to add.", 2)
        settings = _parse_sets(sets)
        values = derive_class(model, from_class, settings, offline)
        with _progress(as_json) as bar:
            added = add_classes(model, {name: values}, offline, warn=_warn, progress=bar.advance)
    else:
        if sets or name:
            _fail("--name and --set go with --from-class; with --attributes the CSV names the classes.", 2)
        with _progress(as_json) as bar:
            added = add_classes_from_csv(model, attributes, offline, warn=_warn, progress=bar.advance)
    if as_json:
        typer.echo(json.dumps({"model": model, "added": added}))
    elif added:
        typer.echo(f"added {len(added)} class{'es' if len(added) != 1 else ''} to {model}: {', '.join(added)}")
    else:
        typer.echo("nothing to add: every class in the file is already there")


@classes_app.command("list")
def classes_list(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    user: bool = typer.Option(False, "--user", help="Only user-added classes."),
    offline: bool = typer.Option(False, "--offline"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every class of the model with its origin: seen, unseen (built in) or user (added)."""
    from .classes import all_classes

    table = all_classes(model, offline, user_only=user)
    rows = [{"name": n, "origin": o} for n, o in zip(table.names, table.origins)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no user classes (add some with dkgzsl add-class)" if user else "no classes")
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['origin']}")


@classes_app.command("show")
def classes_show(
    name: str = typer.Argument(..., help="Class name."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    offline: bool = typer.Option(False, "--offline"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A class's origin and attribute values."""
    import difflib

    import numpy as np

    from .classes import all_classes

    table = all_classes(model, offline)
    if name not in table.names:
        close = difflib.get_close_matches(name, table.names, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        _fail(f"{name!r}: no such class{hint}. List them with `dkgzsl classes list`.")
    i = table.names.index(name)
    # float32 values shown as their shortest text (0.3, not 0.300000012): what the user typed reads back
    text = {a: str(np.float32(v)) for a, v in zip(table.attribute_names, table.values[i])}
    values = {a: float(t) for a, t in text.items()}
    if as_json:
        typer.echo(json.dumps({"name": name, "origin": table.origins[i], "attributes": values}))
        return
    typer.echo(f"{name} ({table.origins[i]})")
    width = max(len(a) for a in values)
    for a, v in text.items():
        typer.echo(f"  {a:<{width}}  {v}")


@classes_app.command("export")
def classes_export(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the CSV here (default: stdout)."),
    user_only: bool = typer.Option(False, "--user-only", help="Only user-added classes."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    offline: bool = typer.Option(False, "--offline"),
) -> None:
    """Write the classes as a class CSV (name, origin, attributes) that add-class reads back unchanged."""
    from .models.atomic import atomic_write_bytes
    from .models.classcsv import class_csv_bytes
    from .classes import all_classes

    table = all_classes(model, offline, user_only=user_only)
    data = class_csv_bytes(table)
    if output is None:
        typer.echo(data.decode("utf-8"), nl=False)
    else:
        atomic_write_bytes(output, data)
        typer.echo(f"{len(table.names)} classes written to {output}", err=True)


@classes_app.command("remove")
def classes_remove(
    names: list[str] = typer.Argument(..., help="User classes to remove."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    offline: bool = typer.Option(False, "--offline"),
) -> None:
    """Remove user classes (the remaining ones are refit; with none left the model is the bundle exactly)."""
    from .classes import remove_classes

    with _progress() as bar:
        removed = remove_classes(model, names, offline, warn=_warn, progress=bar.advance)
    typer.echo(f"removed {', '.join(removed)}")


@classes_app.command("rename")
def classes_rename(
    old: str = typer.Argument(..., help="Current name of a user class."),
    new: str = typer.Argument(..., help="New name."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    offline: bool = typer.Option(False, "--offline"),
) -> None:
    """Rename a user class."""
    from .classes import rename_class

    rename_class(model, old, new, offline)
    typer.echo(f"renamed {old} to {new}")


@classes_app.command("repair")
def classes_repair(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    offline: bool = typer.Option(False, "--offline"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make a damaged class registry usable again (after a file in it was edited or corrupted).

    The damaged files are moved into a set-aside folder of the registry (nothing is deleted); the user
    classes whose entries still verify are kept (and refit). A registry that verifies is left alone.
    """
    from .classes import repair_classes

    with _progress(as_json) as bar:
        done = repair_classes(model, offline, warn=_warn, progress=bar.advance)
    if as_json:
        typer.echo(json.dumps({"model": model, "kept": done.kept, "lost": done.lost,
                               "set_aside": str(done.set_aside) if done.set_aside else None}))
        return
    if done.set_aside is None:
        typer.echo(f"the class registry verifies: nothing to repair ({len(done.kept)} user classes)")
        return
    typer.echo(f"repaired: {done.problem}")
    typer.echo(f"kept {len(done.kept)} user class{'es' if len(done.kept) != 1 else ''}"
               + (f": {', '.join(done.kept)}" if done.kept else ""))
    if done.lost:
        typer.echo(f"set aside {len(done.lost)} whose entries did not verify: {', '.join(done.lost)} (check their "
                   f"rows in the class table there and add them back with dkgzsl add-class --attributes)")
    typer.echo(f"damaged files moved to {done.set_aside}")


def register(app: typer.Typer) -> None:
    """Add ``add-class`` and the ``classes`` group to the main app."""
    app.command("add-class")(add_class)
    app.add_typer(classes_app, name="classes")
