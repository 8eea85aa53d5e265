import pytest
import torch

from metricbench.losses import build_loss

from triplet_reference import hard_loss

DISTANCES = ["l2", "squared_l2", "angular"]


def loss_fn(distance, margin=1.0, soft=False, dim=2):
    return build_loss("triplet-hard", num_classes=1, embedding_dim=dim, margin=margin, soft=soft, distance=distance)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("seed, labels", [
    (0, torch.arange(16) % 4),
    (1, torch.tensor([5, 5, 9, 9, 9, 2, 7, 7, 7, 7])),  # an anchor (2) without positives counts, as in TF Addons
])
def test_matches_the_plain_loop_reference(distance, soft, seed, labels):
    x = torch.randn(len(labels), 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = loss_fn(distance, 0.3, soft)(x, labels)
    assert out.loss.item() == pytest.approx(hard_loss(x, labels, 0.3, soft, distance), rel=1e-9)


def test_ties_and_duplicates():
    x = torch.tensor([[0.0, 0], [0, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    for distance in DISTANCES:
        assert loss_fn(distance)(x, labels).loss.item() == pytest.approx(hard_loss(x, labels, distance=distance), rel=1e-9)


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradcheck(distance):
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.autograd.gradcheck(lambda e: loss_fn(distance, 0.5, dim=3)(e, labels).loss, (x,))


@pytest.mark.parametrize("labels", [torch.arange(5), torch.zeros(5, dtype=torch.long)], ids=["no-positives", "one-class"])
def test_degenerate_batches_give_zero_with_a_graph(labels):
    x = torch.randn(5, 2, requires_grad=True)
    out = loss_fn("l2")(x, labels)
    assert out.loss.item() == 0.0 and out.parts["degenerate"].item() == 1.0
    out.loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
