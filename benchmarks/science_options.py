"""The science-slip options (README "Methods and our decisions") against the defaults, on the synthetic set.

    python benchmarks/science_options.py SEEDS [VARIANTS] [--work DIR]   # e.g. 0,1  default,g_od_real

Training config: tests/conftest.py's tiny_config(epochs=20); data: python -m dkgzsl_app.trainer.synthetic's
set (30 classes, 6 unseen). One JSON line per run: test S/U/H/CZSL/AUSUC, γ, ε's parameters and its
saturation (epoch, mean c, share of c outside [0.01, 0.99]) in the first and last final-run epoch.
Results from a 2-core CPU: benchmarks/results/science_options.jsonl.
"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_config
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.synthetic import make_feature_set
from dkgzsl_app.trainer.train import train_bundle

variants = {
    "default": {},
    "energy_raw": {"ood_score": "energy", "energy_norm": "none"},
    "energy_quantile": {"ood_score": "energy", "energy_norm": "quantile"},
    "g_od_real": {"g_od_real": True},
    "final_iterations": {"final_length": "iterations"},
    "final_gamma_seen_rate": {"final_gamma": "seen_rate"},
    "iterations+seen_rate": {"final_length": "iterations", "final_gamma": "seen_rate"},
}
args = sys.argv[1:]
work = Path(args.pop(args.index("--work") + 1)) if "--work" in args else Path(tempfile.mkdtemp())
args = [a for a in args if a != "--work"]
names = args[1].split(",") if len(args) > 1 else list(variants)
seeds = [int(x) for x in args[0].split(",")]
fs = make_feature_set(0, n_classes=30, n_unseen=6)
for seed in seeds:
    for name in names:
        t = time.time()
        out = train_bundle(fs, tiny_config(epochs=20, seed=seed, **variants[name]), work / f"{name}-{seed}")
        b = load_bundle(out.bundle_dir)
        m = evaluate_bundle(b, fs)
        sd = b.model.state_dict()
        eps_rows = [(r["epoch"], round(r["eps_c"], 3), round(r["eps_sat"], 3)) for r in out.final_history if "eps_c" in r]
        row = {"variant": name, "seed": seed, "best_epoch": out.best_epoch, "gamma": round(out.calibration, 4),
               **{k: round(m[k], 4) for k in ("S", "U", "H", "CZSL", "AUSUC", "H_uncalibrated")},
               "eps_w": round(float(sd["epsilon.weight"]), 3), "eps_b": round(float(sd["epsilon.bias"]), 3),
               "eps_c_sat_first_last": [eps_rows[0], eps_rows[-1]] if eps_rows else None,
               "final_epochs": len(out.final_history) - 1,
               "prov": {k: v for k, v in b.config.provenance.items() if k in ("final_epochs", "selected_iterations", "seen_rate", "select_gamma")},
               "s": round(time.time() - t, 1)}
        print(json.dumps(row), flush=True)
