import math

import torch

from metricbench.losses import build_loss


def test_matches_a_plain_loop():
    torch.manual_seed(0)
    loss_fn = build_loss("softmax", num_classes=4, embedding_dim=3)
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 4, (10,))
    loss_fn = loss_fn.double()
    w, b = loss_fn.head.weight.detach(), loss_fn.head.bias.detach()
    total = 0.0
    for xi, yi in zip(x, y):
        scores = [float(w[c] @ xi + b[c]) for c in range(4)]
        total += -(scores[yi] - math.log(sum(math.exp(s) for s in scores)))
    out = loss_fn(x, y)
    assert math.isclose(out.loss.item(), total / 10, rel_tol=1e-12)
    assert out.parts["ce"].item() == out.loss.item()


def test_head_belongs_to_the_loss():
    loss_fn = build_loss("softmax", num_classes=5, embedding_dim=7, bias=False)
    (group,) = loss_fn.param_groups()
    assert group["name"] == "loss" and [p.shape for p in group["params"]] == [torch.Size([5, 7])]
