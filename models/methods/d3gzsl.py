"""D3GZSL (Wang et al., AAAI 2024) on an f-CLSWGAN generator over pooled features: the plug-in.

The generator may be CE-GZSL's instead (``config.generator.kind``; ``train --generator ce-gzsl``): the same
networks plus its embedding net, whose h the student reads (models/cegzsl.py, trainer/cegzsl.py).

The networks are ``models.networks.ZSLModel`` (generator, critic, teacher, student, OOD head, ε); they are
the base that DKGZSL extends. Training: ``trainer/loop.py``. The ``baseline`` ablation (generator + unified
classifier with L_cls only) is this method too: its bundles say method ``d3gzsl`` and record the ablation.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..networks import ZSLModel


@dataclass
class Options:
    """D3GZSL has no options beyond ModelConfig's generator and head sections."""


MODEL = ZSLModel
