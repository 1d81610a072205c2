"""dkgzsl: recognise image categories you have no photos of.

Importing this package is cheap: torch and friends load only inside the functions that need them.
"""

__version__ = "0.1.0"
