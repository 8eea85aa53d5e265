"""Forward + backward of a semi-hard triplet loss on one batch, in a fresh process (for peak memory).

Usage: python tests/perf/triplet_step.py IMPL BATCH   (IMPL: ours | pml)
Prints JSON: median seconds, peak RSS before and after; or {"error": ...} when the process runs out of
the memory it is allowed (RLIMIT_AS = 20 GiB, under this machine's 24 GiB).
"""

import json
import resource
import sys
import time

import torch
from pytorch_metric_learning import losses, miners

from memory import peak_mb, reset_peak
from metricbench.losses import build_loss

D, PER_CLASS, MARGIN, REPEATS = 128, 32, 0.2, 5
LIMIT = 20 * 2**30


def main(impl: str, batch: int) -> None:
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(batch, D), dim=1).requires_grad_(True)
    labels = torch.arange(batch) % (batch // PER_CLASS)
    if impl == "ours":
        ours = build_loss("triplet-semihard", num_classes=1, embedding_dim=D, margin=MARGIN)
        fn = lambda: ours(x, labels).loss  # noqa: E731
    else:
        miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard")
        loss = losses.TripletMarginLoss(margin=MARGIN)
        fn = lambda: loss(x, labels, miner(x, labels))  # noqa: E731
    before = reset_peak()
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    times = []
    try:
        for _ in range(REPEATS):
            start = time.perf_counter()
            x.grad = None
            fn().backward()
            times.append(time.perf_counter() - start)
    except (MemoryError, RuntimeError) as err:
        print(json.dumps({"error": f"out of memory under a 20 GiB limit ({type(err).__name__})"}))
        return
    times.sort()
    print(json.dumps({"seconds": times[len(times) // 2], "peak_mb_before": before, "peak_mb_after": peak_mb()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
