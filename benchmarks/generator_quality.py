#!/usr/bin/env python3
"""How good are the generator's unseen features? D3GZSL configurations side by side with a linear map, in one run.

For each configuration (TrainConfig overrides) the script trains a bundle the way ``proxy_ablation.py``
does (epochs and γ selected on validation classes), scores it on the test split (U/S/H/CZSL), and then
looks at its generator G alone, in the scaled feature space G works in:

- ``ncm_unseen_G``: nearest-class-mean accuracy of the real unseen test features among the unseen
  classes, the class means taken from G's samples (``--samples`` per class);
- ``ncm_seen_G``: the same for the real seen test features among the seen classes (high here and low
  on unseen classes = G memorised the seen classes);
- ``cos_unseen_G``: cosine between G's unseen class means and the real unseen test class means, both
  centred on the mean of the seen class means (the uncentred cosine is ~0.9 for any map);
- the linear reference (once per run): ridge from L2-normalised attributes (+ bias) to the seen
  classes' mean training features, ``ncm_unseen_linear`` per ridge λ; and the closed-form ridge
  classifier of ``proxy_ablation.py`` (features → attributes) for U/S/H/CZSL.

    python benchmarks/generator_quality.py /tmp/proxy/CUB --epochs 6 --hidden 512 --embed 512 \
        --batch-size 256 --lr 1e-3 --cls-weight 1.0 --ablation both \
        --config base --config "beta0.01:cls_weight=0.01" --out benchmarks/results/generator_quality_cub.json

A ``--config`` is ``NAME[:FIELD=VALUE,...]`` (TrainConfig fields; values parsed as JSON, else strings);
``g_init_ridge=val`` picks the ridge map's λ on validation classes (``select_ridge_lambda``).
Test images are only scored after training; every choice inside training uses validation classes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_ablation import ridge  # noqa: E402  (the benchmark's closed-form reference, unchanged)

from dkgzsl_app.models.bundle import load_bundle  # noqa: E402
from dkgzsl_app.trainer.config import TrainConfig  # noqa: E402
from dkgzsl_app.trainer.data import carve_validation, load_features  # noqa: E402
from dkgzsl_app.trainer.evaluate import evaluate_bundle  # noqa: E402
from dkgzsl_app.trainer.loop import ridge_map  # noqa: E402
from dkgzsl_app.trainer.task import fit_feature_scaling, make_task  # noqa: E402
from dkgzsl_app.trainer.train import train_bundle  # noqa: E402


def parse_config(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return name, overrides


RIDGE_LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0)


def select_ridge_lambda(fs, seed: int, val_class_fraction: float = 0.2, seen_holdout: float = 0.2,
                        lams=RIDGE_LAMBDAS) -> tuple[float, dict]:
    """The λ of ``g_init_ridge=val``: on the selection task (validation classes carved from the seen classes, as
    ``train_bundle`` does), the ridge map's class means for the validation-unseen classes, scored by nearest-mean
    accuracy of their real validation features. Test images are never read."""
    vs = carve_validation(fs, seed, val_class_fraction, seen_holdout)
    classes = np.flatnonzero(fs.seen)
    task = make_task(fs, classes, vs.seen[classes], vs.train, np.concatenate([vs.val_seen, vs.val_unseen]))
    lo, sc = fit_feature_scaling(task.features[task.train_idx])
    x_tr = (task.features[task.train_idx] - lo) * sc
    att = task.attributes / task.attributes.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ye = task.labels[task.eval_idx]
    keep = ~task.seen[ye]
    xe, ye = ((task.features[task.eval_idx][keep] - lo) * sc).double().numpy(), ye[keep].numpy()
    unseen = task.unseen_classes.numpy()
    scores = {}
    for lam in lams:
        w, a_mu, m_mu = ridge_map(x_tr, task.labels[task.train_idx], task.seen_classes, att, lam)
        means = torch.relu(m_mu + (att.double()[unseen] - a_mu) @ w).numpy()
        scores[lam] = ncm_accuracy(xe, ye, means, unseen)
    return max(scores, key=lambda k: (scores[k], -k)), scores


def ncm_accuracy(x: np.ndarray, y: np.ndarray, means: np.ndarray, classes: np.ndarray) -> float:
    """Share of rows of ``x`` (N, D) whose nearest (Euclidean) row of ``means`` (K, D) is their class ``y``."""
    d = (means ** 2).sum(1)[None, :] - 2.0 * x @ means.T  # (N, K), ||x||² dropped
    return float((classes[d.argmin(1)] == y).mean())


def centred_cosine(a: np.ndarray, b: np.ndarray, centre: np.ndarray) -> float:
    a, b = a - centre, b - centre
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).mean())


class Probe:
    """The test features in a model's scaled space, with the real class means and the linear map."""

    def __init__(self, fs, lams=(1.0, 3.0, 10.0)):
        self.fs = fs
        self.seen_c, self.unseen_c = np.flatnonzero(fs.seen), np.flatnonzero(~fs.seen)
        x = fs.features[fs.trainval].astype(np.float64)
        self.lo, span = x.min(0), x.max(0) - x.min(0)
        self.scale = np.where(span > 0, 1.0 / np.maximum(span, 1e-12), 0.0)  # = trainer.task.fit_feature_scaling
        s = self.scaled
        ytr = fs.labels[fs.trainval]
        self.seen_means = np.stack([s(x[ytr == c]).mean(0) for c in self.seen_c])  # (S, D)
        self.xu, self.yu = s(fs.features[fs.test_unseen]), fs.labels[fs.test_unseen]
        self.xs, self.ys = s(fs.features[fs.test_seen]), fs.labels[fs.test_seen]
        self.true_unseen = np.stack([self.xu[self.yu == c].mean(0) for c in self.unseen_c])
        att = fs.attributes.astype(np.float64)
        att = att / np.maximum(np.linalg.norm(att, axis=1, keepdims=True), 1e-12)
        self.linear = {}
        a_s = np.c_[att[self.seen_c], np.ones(len(self.seen_c))]
        a_u = np.c_[att[self.unseen_c], np.ones(len(self.unseen_c))]
        for lam in lams:
            w = np.linalg.solve(a_s.T @ a_s + lam * np.eye(a_s.shape[1]), a_s.T @ self.seen_means)
            p = a_u @ w
            self.linear[lam] = {"ncm_unseen": ncm_accuracy(self.xu, self.yu, p, self.unseen_c),
                                "cos_unseen": centred_cosine(p, self.true_unseen, self.seen_means.mean(0))}

    def scaled(self, raw: np.ndarray) -> np.ndarray:
        return (raw.astype(np.float64) - self.lo) * self.scale

    def generator(self, model, samples: int, seed: int = 0) -> dict:
        """G's class means (``samples`` per class, fixed noise seed) scored as above."""
        model.eval()
        rng = torch.Generator().manual_seed(seed)
        attr = model.normalized_attributes()
        def means(classes):
            with torch.no_grad():
                return np.stack([model.generator.sample(attr[int(c)].expand(samples, -1), rng).double().mean(0).numpy()
                                 for c in classes])
        gu, gs = means(self.unseen_c), means(self.seen_c)
        return {"ncm_unseen_G": ncm_accuracy(self.xu, self.yu, gu, self.unseen_c),
                "ncm_seen_G": ncm_accuracy(self.xs, self.ys, gs, self.seen_c),
                "cos_unseen_G": centred_cosine(gu, self.true_unseen, self.seen_means.mean(0)),
                "cos_seen_G": centred_cosine(gs, self.seen_means, self.seen_means.mean(0))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--embed", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--gen-per-unseen", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--cls-weight", type=float, default=1.0, help="β (the benchmarks' 1.0; paper: 0.01)")
    p.add_argument("--ablation", default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=200, help="generated features per class for G's class means")
    p.add_argument("--config", action="append", default=[], help="NAME[:FIELD=VALUE,...] (repeatable)")
    p.add_argument("--no-ridge", action="store_true", help="skip the closed-form ridge classifier reference")
    p.add_argument("--out", type=Path)
    a = p.parse_args()

    fs = load_features(a.features)
    probe = Probe(fs)
    rows: dict[str, dict] = {"linear_map": {f"lambda={k}": v for k, v in probe.linear.items()}}
    print(f"linear map: {rows['linear_map']}", flush=True)
    if not a.no_ridge:
        rows["ridge"] = ridge(fs, a.seed)
        print(f"ridge: {rows['ridge']}", flush=True)
    for text in a.config or ["base"]:
        name, overrides = parse_config(text)
        cfg = TrainConfig(ablation=a.ablation, epochs=a.epochs, hidden_dim=a.hidden, critic_hidden_dim=a.hidden,
                          embed_dim=a.embed, batch_size=a.batch_size, gen_per_unseen=a.gen_per_unseen, seed=a.seed,
                          lr=a.lr, cls_weight=a.cls_weight)
        if overrides.get("g_init_ridge") == "val":  # λ chosen on validation classes (once per run)
            if "ridge_lambda_val" not in rows:
                lam, scores = select_ridge_lambda(fs, a.seed)
                rows["ridge_lambda_val"] = {"chosen": lam, "val_ncm_unseen": {str(k): v for k, v in scores.items()}}
                print(f"g_init_ridge=val: {rows['ridge_lambda_val']}", flush=True)
            overrides = {**overrides, "g_init_ridge": rows["ridge_lambda_val"]["chosen"]}
        for key, value in overrides.items():
            if not hasattr(cfg, key):
                p.error(f"--config {text!r}: TrainConfig has no field {key!r}")
            setattr(cfg, key, value)
        run = Path(tempfile.mkdtemp(prefix=f"dkgzsl-gq-{name}-"))
        t = time.perf_counter()
        out = train_bundle(fs, cfg, run)
        secs = time.perf_counter() - t
        bundle = load_bundle(out.bundle_dir)
        r = evaluate_bundle(bundle, fs)
        rows[name] = {"overrides": overrides, **{k: r[k] for k in ("U", "S", "H", "CZSL", "AUSUC", "gamma")},
                      **probe.generator(bundle.model, a.samples, a.seed),
                      "selected_epoch": out.best_epoch, "train_seconds": round(secs, 1),
                      "val_H_cal": [round(h["val_H_cal"], 4) for h in out.select_history if "val_H_cal" in h]}
        print(f"{name}: {rows[name]}", flush=True)
        shutil.rmtree(run)
    result = {"features": str(a.features), "data_sha256": fs.sha256(), "settings": vars(a) | {"out": str(a.out)},
              "command": " ".join(["python", *sys.argv]), "rows": rows}
    best_lin = max(v["ncm_unseen"] for v in probe.linear.values())
    print(f"\nlinear map NCM unseen (best λ): {100 * best_lin:.1f}")
    print("| config | NCM unseen G | NCM seen G | cos unseen G | U | S | H | CZSL | epoch | train s |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if name in ("linear_map", "ridge_lambda_val"):
            continue
        g = [f"{100 * r[k]:.1f}" if k in r else "-" for k in ("ncm_unseen_G", "ncm_seen_G", "cos_unseen_G")]
        print(f"| {name} | {' | '.join(g)} | {100 * r['U']:.1f} | {100 * r['S']:.1f} | {100 * r['H']:.1f} | "
              f"{100 * r['CZSL']:.1f} | {r.get('selected_epoch', '-')} | {r.get('train_seconds', '-')} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
