import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from metricbench.losses import build_loss
from metricbench.losses.triplet_mining import semihard_negatives

from triplet_reference import distance_matrix, semihard_loss

DISTANCES = ["l2", "squared_l2", "angular"]


def loss_fn(distance, margin=1.0, dim=2):
    return build_loss("triplet-semihard", num_classes=1, embedding_dim=dim, margin=margin, distance=distance)


def batches():
    g = torch.Generator().manual_seed(0)
    yield "random", torch.randn(16, 2, generator=g, dtype=torch.float64), torch.randint(0, 4, (16,), generator=g)
    # Integer grid: many exactly tied distances.
    yield "ties", torch.randint(-2, 3, (14, 2), generator=g).double(), torch.arange(14) % 3
    x = torch.randn(12, 2, generator=g, dtype=torch.float64)
    x[6:] = x[:6]  # every point twice, under different labels too
    yield "duplicates", x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 1, 2, 2])
    centers = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]], dtype=torch.float64)
    labels = torch.arange(12) % 3
    yield "separated", centers[labels] + 0.1 * torch.randn(12, 2, generator=g, dtype=torch.float64), labels
    yield "collapsed", torch.ones(8, 2, dtype=torch.float64), torch.arange(8) % 2
    yield "sparse-ids", torch.randn(10, 2, generator=g, dtype=torch.float64), torch.tensor([1000, 7, 7, 1000, -3, -3, 7, 99, 99, 1000])


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("name, x, labels", list(batches()), ids=[b[0] for b in batches()])
def test_matches_the_plain_loop_reference(distance, name, x, labels):
    for margin in (1.0, 0.2):
        expected, pairs, fallbacks = semihard_loss(x, labels, margin, distance)
        out = loss_fn(distance, margin)(x, labels)
        assert out.loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12), name
        assert out.parts["positive_pairs"].item() == pairs
        assert out.parts["fallback_fraction"].item() == pytest.approx(fallbacks / pairs)


def test_every_pair_falls_back_when_positives_are_farther_than_all_negatives():
    x = torch.tensor([[10.0, 0], [-10, 0], [0, 10], [0, -10]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    out = loss_fn("l2")(x, labels)
    assert out.parts["fallback_fraction"].item() == 1.0 and out.parts["semihard_fraction"].item() == 0.0
    assert out.loss.item() == pytest.approx(1.0 + 20 - 200**0.5)


def test_mining_picks_the_closest_strictly_farther_negative():
    d = torch.tensor([[0.0, 1.0, 1.0, 3.0, 2.0],
                      [1.0, 0.0, 5.0, 5.0, 5.0],
                      [1.0, 5.0, 0.0, 1.0, 1.0],
                      [3.0, 5.0, 1.0, 0.0, 1.0],
                      [2.0, 5.0, 1.0, 1.0, 0.0]])
    mined = semihard_negatives(d, torch.tensor([0, 0, 1, 1, 1]))
    chosen = {(a, int(p)): (mined.negative_distance[a, k].item(), bool(mined.semihard[a, k]))
              for a in range(5) for k, p in enumerate(mined.positive_index[a]) if mined.valid[a, k]}
    assert len(chosen) == 2 + 6  # ordered positive pairs: 2 in class 0, 6 in class 1
    # Anchor 0, positive 1 (d = 1): negatives at 1 (not > 1), 3, 2 → 2. Anchor 1, positive 0: all at 5 → 5.
    assert chosen[(0, 1)] == (2.0, True) and chosen[(1, 0)] == (5.0, True)
    # Anchor 3, positive 2 (d = 1): negatives at 3, 5 → 3. Anchor 2, positive 3 (d = 1): negatives at 1, 5 → 5.
    assert chosen[(3, 2)] == (3.0, True) and chosen[(2, 3)] == (5.0, True)
    # Anchor 4, positive 2 (d = 1): negatives at 2, 5 → 2.
    assert chosen[(4, 2)] == (2.0, True)
    # Anchor 2 against a positive farther than all its negatives would fall back to its farthest negative, 5.
    d[2, 3] = d[2, 4] = 9.0
    far = semihard_negatives(d, torch.tensor([0, 0, 1, 1, 1]))
    assert far.negative_distance[2][far.valid[2]].tolist() == [5.0, 5.0] and not far.semihard[2].any()


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradcheck(distance):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    assert torch.autograd.gradcheck(lambda e: loss_fn(distance, 0.5, dim=3)(e, labels).loss, (x,))


@pytest.mark.parametrize("labels", [torch.arange(6), torch.zeros(6, dtype=torch.long)], ids=["no-positives", "one-class"])
def test_degenerate_batches_give_zero_with_a_graph(labels):
    x = torch.randn(6, 2, requires_grad=True)
    out = loss_fn("l2")(x, labels)
    assert out.loss.item() == 0.0 and out.parts["degenerate"].item() == 1.0
    out.loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_parts_describe_the_mining():
    x = torch.tensor([[0.0, 0], [0.5, 0], [3, 0], [3.2, 0]])
    out = loss_fn("l2")(x, torch.tensor([0, 0, 1, 1]))
    parts = {k: v.item() for k, v in out.parts.items()}
    assert parts["positive_pairs"] == 4 and parts["semihard_fraction"] == 1.0 and parts["degenerate"] == 0.0
    assert parts["mean_d_ap"] == pytest.approx((0.5 * 2 + 0.2 * 2) / 4, rel=1e-5)
    # (0,1): closest negative of 0 is at 3 → hinge 0; (1,0): 2.5 → 0; (2,3): 2.5 → 0; (3,2): 2.7 → 0.
    assert parts["mean_d_an"] == pytest.approx((3 + 2.5 + 2.5 + 2.7) / 4, rel=1e-6)
    assert parts["active_fraction"] == 0.0 and out.loss.item() == 0.0


def test_distance_matrix_reference_agrees_with_ours():
    from metricbench.losses.distances import pairwise_distances

    x = torch.randn(7, 4, dtype=torch.float64)
    for distance in DISTANCES:
        ours = pairwise_distances(x, distance)
        torch.testing.assert_close(ours, torch.tensor(distance_matrix(x, distance), dtype=torch.float64), rtol=1e-9, atol=1e-12)


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any operation returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.numel = max([self.numel, *sizes])
        return out


def test_memory_is_quadratic_not_cubic():
    # B = 2048 would need a (B·B, B) float tensor of 32 GiB in TF Addons' formulation; here no intermediate,
    # gradients included, is larger than the (B, B) distance matrix (a (B, B, D) difference tensor would fail too).
    batch = 2048
    x = torch.randn(batch, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    with LargestTensor() as largest:
        out = loss_fn("l2", dim=8)(x, torch.arange(batch) % 64)
        out.loss.backward()
    assert largest.numel == batch * batch
    assert torch.isfinite(out.loss) and out.loss > 0 and torch.isfinite(x.grad).all()


def test_bad_options():
    with pytest.raises(ValueError, match="distance must be one of l2, squared_l2, angular; got 'cosine'"):
        loss_fn("cosine")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        loss_fn("l2", margin=-1)
