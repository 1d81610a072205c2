"""dkgzsl: recognise image categories you have no photos of.

Importing this package is cheap: torch and friends load only inside the functions that need them.
"""

__version__ = "0.1.0"


def load(source: str, device: str = "auto", offline: bool = False, precision: str = "auto"):
    """Load a bundle for classifying photos: ``dkgzsl_app.load("hf-hub:ORG/NAME").classify([...])``;
    ``precision`` (auto, fp32, bf16) is the backbone's on the CPU (auto: bf16 where native, else fp32)."""
    from .classify import load as _load

    return _load(source, device, offline, precision)
