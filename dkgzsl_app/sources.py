"""Model sources: ``hf-hub:ORG/NAME[@REV]``, ``local-dir:PATH``, a folder or a bundled model name → a bundle
folder. Shared by classify (the Classifier) and the class registry (dkgzsl_app.classes), so neither
imports the other for it."""
from __future__ import annotations

from pathlib import Path

from .models.errors import BundleError

DEFAULT_MODEL = "demo-shapes"


def bundled_models() -> dict[str, Path]:
    """Bundles shipped inside the package (models/pretrained/<name>/), by name."""
    from . import models

    root = Path(models.__file__).parent / "pretrained"
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()} if root.is_dir() else {}


def resolve_source(source: str, offline: bool = False) -> Path:
    """``hf-hub:ORG/NAME[@REV]``, ``local-dir:PATH``, a bundled model name or a folder path → the local
    bundle folder."""
    if source.startswith("local-dir:"):
        return Path(source[len("local-dir:"):])
    if source.startswith("hf-hub:"):
        from .hub import download_bundle, parse_hub_source

        return download_bundle(parse_hub_source(source), offline)
    bundled = bundled_models()
    if source in bundled and not Path(source).is_dir():
        return bundled[source]
    if Path(source).is_dir():
        return Path(source)
    names = ", ".join(bundled) or "none"
    raise BundleError(f"model {source!r} is neither a bundle folder, a bundled model ({names}) nor a Hub name: "
                      "use local-dir:PATH for a folder on disk or hf-hub:ORG/NAME[@REVISION] for the "
                      "Hugging Face Hub.")


def source_for_folder(folder: Path | None) -> str | None:
    """A ``--model`` value that names ``folder`` for a command the user can paste: None for the default
    model (no --model needed), the name of a bundled model, else ``local-dir:FOLDER``."""
    if folder is None:
        return None
    for name, path in bundled_models().items():
        if Path(folder).resolve() == path.resolve():
            return None if name == DEFAULT_MODEL else name
    return f"local-dir:{folder}"
