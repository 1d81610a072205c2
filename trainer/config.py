"""Training configuration (a dataclass; the CLI maps options onto it, library code takes it whole)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

ABLATIONS = {  # name -> (use_id, use_od); "baseline" = generator + L_cls only
    "baseline": (False, False),
    "id": (True, False),
    "od": (False, True),
    "both": (True, True),
}

# The values each string option may take: validate() checks them and the CLI offers them as choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("d3gzsl", "dkgzsl", "msdn", "msdnpp"),  # the trainable methods (models/methods IMPLEMENTED; trainer/methods.py)
    "fde_mask": ("soft", "topk"),
    "ablation": tuple(ABLATIONS),
    "od_target": ("class", "domain"),
    "select": ("val", "none"),
    "final_length": ("epochs", "iterations"),
    "final_gamma": ("select", "seen_rate"),
    "energy_norm": ("quantile", "none"),
    "ood_score": ("msp", "energy"),
    "kl_normalize": ("both", "teacher"),
    "generator": ("clswgan", "ce-gzsl"),  # models/cegzsl.py GENERATORS
    "counterfactual": ("uniform", "random"),
    "mlp_precision": ("fp32", "bf16"),
}


@dataclass
class TrainConfig:
    """Generator (f-CLSWGAN) + D3GZSL unified classifier, or DKGZSL on top of it. Defaults follow METHODS.md /
    the paper."""

    method: str = "d3gzsl"  # d3gzsl | dkgzsl (what the bundle will say it is)
    ablation: str = "both"  # baseline | id (+ID²SD: L_kl + L_be) | od (+O²DBD: L_od) | both
    epochs: int = 30  # an epoch = one pass of the real training features through the critic
    teacher_epochs: int = 15
    batch_size: int = 256
    lr: float = 1e-4  # G and D (Adam)
    betas: tuple[float, float] = (0.5, 0.999)
    student_lr: float = 1e-3  # E_s, C_s, H, ε (Adam)
    teacher_lr: float = 1e-3
    critic_steps: int = 5  # critic updates per generator update
    gp_weight: float = 10.0  # λ_gp
    cls_weight: float = 0.01  # β: teacher CE on generated seen features (f-CLSWGAN's classification loss)
    d3_weight: float = 1e-4  # λ: weight of (L_be + L_kl + L_cls + L_od) in the generator's objective
    gen_per_unseen: int = 5  # generated features per unseen class per student step
    hidden_dim: int = 4096
    critic_hidden_dim: int = 4096
    embed_dim: int = 2048
    tau_teacher: float = 1.0
    tau_student: float = 1.0
    tau_kl: float = 1.0
    tau_be: float = 1.0
    tau_od: float = 1.0
    kl_normalize: str = "both"
    ood_score: str = "msp"
    pair_balance: bool = True
    od_target: str = "class"  # class | domain
    gd_lr_growth: float = 1.0  # the released D3GZSL code multiplies G/D lr by 1.09 every 20 epochs; the paper does not
    gd_lr_growth_every: int = 20
    select: str = "val"  # "val": choose epochs and γ on a validation split of the seen classes; "none": last epoch, γ = 0
    # -- options for the reviewer's "science slips" (README "Methods and our decisions"); defaults = the old behaviour
    final_length: str = "epochs"  # "epochs": the final run trains the selected epoch count (≈1.5× the selection's
    #   generator iterations, its epochs being longer); "iterations": the selected number of generator iterations
    final_gamma: str = "select"  # "select": γ chosen on the selection model; "seen_rate": re-fitted on the final
    #   model so that held-out seen training images fall on the seen side as often as at selection
    gamma_holdout: float = 0.1  # final_gamma=seen_rate: per-class share of seen training images kept out of the final run
    energy_norm: str = "quantile"  # ood_score=energy: "quantile" maps the frozen teacher's energies on real seen
    #   training features to [0, 1] (their 1st..99th percentile), the range ε is initialised for; "none": raw (saturates ε)
    g_od_real: bool = False  # G's L_cls + L_od batch: generated unseen only (False) or with the iteration's real seen
    #   features too (True, the paper's batch)
    # -- generator quality (issue 12 item 9; benchmarks/generator_quality.py); defaults = the old behaviour
    g_attr_noise: float = 0.0  # std of Gaussian noise on G's (L2-normalised) conditioning attributes in G's own
    #   update (the critic still judges against the class's clean attributes): G must map a neighbourhood of each
    #   seen class's attributes to its features, a smooth map (input noise ≈ ridge) instead of one memorised point
    g_weight_decay: float = 0.0  # L2 penalty (sum of squared weight matrices) on G, in G's objective
    g_mean_weight: float = 0.0  # weight of a class-mean term in G's objective (CADA-VAE/f-VAEGAN-like): MSE between
    #   the batch's generated per-class means and those classes' real mean training features
    g_init_ridge: float = 0.0  # > 0: start G as the closed-form ridge map (this λ) from attributes to the seen classes'
    #   mean training features, written into G's own weights (pairs of hidden units carry it linearly through the
    #   LeakyReLU; those units ignore the noise, the other units' output weights start at 0): no new parameters
    g_unseen_anchor: float = 0.0  # > 0 (needs g_init_ridge): weight of an MSE in G's objective between G's generated
    #   unseen class means and the ridge map's prediction for those classes (the map G started from): the critic
    #   only sees seen classes, and fitting them drags the unseen means away from the map (issue 12 item 9)
    # -- the generator (generative methods d3gzsl, dkgzsl): f-CLSWGAN, or CE-GZSL (models/cegzsl.py, trainer/cegzsl.py):
    #   + an embedding net h = E(v) trained with instance- and class-level contrastive losses, which G receives too;
    #   the unified classifier reads h. Widths 0 follow embed_dim like the paper's (2048 -> 2048 -> 512, comparator 2048)
    generator: str = "clswgan"
    ce_embed_dim: int = 0  # width of h; 0: embed_dim
    ce_proj_dim: int = 0  # width of the projection z of the instance-level loss; 0: a quarter of h's
    ce_comparator_dim: int = 0  # hidden width of the class-level comparator F([h, a]); 0: h's
    ce_ins_weight: float = 1e-3  # weight of the instance-level loss in G's objective (the paper: 0.01 for FLO/SUN)
    ce_cls_weight: float = 1e-3  # weight of the class-level loss in G's objective (the paper: 0.01 for FLO/SUN)
    ce_ins_temp: float = 0.1
    ce_cls_temp: float = 0.1
    # -- DKGZSL (method="dkgzsl"; models/methods/dkgzsl.py): parts, and how SOVR and KTN are trained
    fde: bool = True  # SOVR's feature denoising encoder (region features only)
    ara: bool = True  # SOVR's attribute-region attention (region features only)
    ktn: bool = True  # knowledge transfer network + meta-fusion units in G
    fde_mask: str = "soft"
    fde_topk: int = 0
    attn_dim: int = 128
    ara_weight: float = 1.0  # seen-class CE on ARA's attribute scores (aᵀ·scores), in SOVR's objective
    ktn_weight: float = 1.0  # KTN's reconstruction of real refined features (MSE), in G's objective
    sovr_lr: float = 1e-4  # Adam lr of SOVR after the warm-up (during the warm-up: teacher_lr)
    # -- MSDN / MSDN++ (method="msdn" | "msdnpp"; models/methods/msdn.py, trainer/msdn.py). They train with RMSprop at
    #   ``lr`` (1e-4, the paper's) on ``batch_size`` images (the paper: 50) for ``epochs`` (the paper: ~30)
    attr_embed_dim: int = 300  # width d of the learned attribute embeddings
    attr_embeddings: str = ""  # msdn/msdnpp: a CSV of one vector per attribute (name,v1..vd; e.g. GloVe of the
    # attribute names) that starts the attribute embeddings (their width d then comes from the file); "": random
    msdn_fuse: float = 0.1  # share of the visual->attribute sub-net in the fused prediction (the authors' 0.9/0.1)
    distill_weight: float = 1e-3  # semantic distillation (symmetric JS between the sub-nets' predictions)
    msdn_weight_decay: float = 1e-4  # RMSprop weight decay
    msdn_momentum: float = 0.9  # RMSprop momentum
    msdn_cal_weight: float = 0.0  # the authors' code's self-calibration term (-log of the mean probability mass on
    #   unseen classes, weight 0.1 there); METHODS.md calibrates with γ instead, so off by default
    causal_weight: float = 1.0  # msdnpp: CE on the attention's effect, logits(learned) - logits(counterfactual)
    counterfactual: str = "uniform"  # msdnpp: counterfactual attention, uniform or random (softmax of N(0, 1) logits)
    # -- fine-tuning (train --from; trainer/finetune.py): the source bundle's folder and its weights' SHA-256
    init_from: str = ""  # "": a fresh random initialisation
    init_sha256: str = ""
    # -- the image backbone (train --images --finetune-backbone; trainer/backbone_ft.py): trained with the head
    #   on the photos' live features instead of frozen cached ones; its weights go into the bundle
    finetune_backbone: bool = False
    backbone_lr: float = 1e-5  # Adam lr of the backbone (pretrained weights: ~1/100 of the heads' 1e-3)
    val_class_fraction: float = 0.2
    seen_holdout: float = 0.2
    # -- speed (issue 17 item 4; benchmarks/train_throughput.py)
    mlp_precision: str = "fp32"  # d3gzsl, dkgzsl: "bf16" runs the generator/critic/student steps under bf16 autocast
    #   (matrix products in bf16; weights, gradients and Adam's states stay fp32). Faster where the CPU has bf16
    #   matrix units (AMX; `lscpu` flag amx_bf16) or on CUDA; a different result from fp32 (not byte-reproducible
    #   against it): the shipped figures and the demo bundle are fp32
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def use_id(self) -> bool:
        return ABLATIONS[self.ablation][0]

    @property
    def use_od(self) -> bool:
        return ABLATIONS[self.ablation][1]

    def validate(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.final_gamma == "seen_rate" and self.select != "val":
            raise ValueError("final_gamma='seen_rate' transfers the operating point chosen on validation: "
                             "it needs select='val'")
        if not 0.0 < self.gamma_holdout < 1.0:
            raise ValueError(f"gamma_holdout must be between 0 and 1 (exclusive), not {self.gamma_holdout}")
        if not self.backbone_lr > 0:
            raise ValueError(f"backbone_lr must be a positive number, not {self.backbone_lr}")
        if self.g_unseen_anchor > 0 and not self.g_init_ridge > 0:
            raise ValueError("g_unseen_anchor holds G's unseen class means at the ridge map of g_init_ridge: "
                             "set g_init_ridge > 0 too")
        if self.fde_mask == "topk" and self.fde_topk < 1:
            raise ValueError("fde_mask 'topk' needs fde_topk of at least 1")
        for name in ("ce_embed_dim", "ce_proj_dim", "ce_comparator_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (follow embed_dim) or a positive width")
        if not (self.ce_ins_temp > 0 and self.ce_cls_temp > 0):
            raise ValueError("ce_ins_temp and ce_cls_temp must be positive")
        for name in ("epochs", "batch_size", "critic_steps", "embed_dim", "hidden_dim", "critic_hidden_dim",
                     "attn_dim", "attr_embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)
