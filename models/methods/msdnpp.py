"""MSDN++: MSDN with causal attention, the plug-in.

The networks, options and inference are MSDN's (``msdn.py``). What differs is training (``trainer/msdn.py``,
``MSDNPPTrainer``): besides MSDN's losses, each sub-net's prediction under its learned attention is compared
with its prediction under counterfactual attention (uniform, or random: ``TrainConfig.counterfactual``), and
the effect of the attention, logits(learned) − logits(counterfactual), is trained with the seen-class
cross-entropy too (weight ``causal_weight``), so the attention must cause the right prediction rather than
ride on the score maps alone. Its bundles say method ``msdnpp``.
"""
from __future__ import annotations

from .msdn import MSDNModel, Options  # noqa: F401  (Options: the options this method's bundles carry)


class MSDNPPModel(MSDNModel):
    method = "msdnpp"


MODEL = MSDNPPModel
