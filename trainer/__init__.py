"""Feature data, training loops and evaluation (installed as ``dkgzsl_app.trainer``)."""
