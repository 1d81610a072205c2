"""Networks, losses and model-bundle I/O (installed as ``dkgzsl_app.models``)."""
