"""Center loss at face-recognition scale: one full step (forward, backward, center update) of ours
against the dense B × C distance-matrix formulation, at C = 1,000 / 10,000 / 100,000, B = 512, D = 512."""

import json
import subprocess
import sys
from pathlib import Path

STEP = Path(__file__).with_name("center_step.py")
IMPLS = {
    "paper": "metricbench center-term, update=paper (gather + index_add_, no autograd on centers)",
    "sgd": "metricbench center-term, update=sgd (gather; SGD step on the centers parameter)",
    "dense": "dense B x C distance matrix + mask (KaiyangZhou/pytorch-center-loss), SGD step",
}


def measure(impl: str, num_classes: int) -> dict:
    out = subprocess.run([sys.executable, str(STEP), impl, str(num_classes)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_center_step_vs_dense(record):
    rows = []
    for num_classes in (1_000, 10_000, 100_000):
        dense = measure("dense", num_classes)
        for impl in IMPLS:
            m = dense if impl == "dense" else measure(impl, num_classes)
            rows.append({
                "classes": num_classes, "impl": impl, "ms_per_step": round(m["seconds"] * 1e3, 2),
                "step_extra_peak_mb": round(m["peak_mb_after"] - m["peak_mb_before"]),
                "speedup_vs_dense": round(dense["seconds"] / m["seconds"], 1),
            })
    note = ("One step: forward, backward, center update; B = 512, D = 512, median of 15 steps after one warm-up, each "
            "case in a fresh process. step_extra_peak_mb = peak resident memory during the steps minus the resident memory before the first "
            "step (after the centers and inputs exist). Implementations: " + "; ".join(f"{k}: {v}" for k, v in IMPLS.items()))
    record("center_loss_step", rows, note)
    by = {(r["classes"], r["impl"]): r for r in rows}
    assert by[(100_000, "paper")]["step_extra_peak_mb"] < by[(100_000, "dense")]["step_extra_peak_mb"]
