import pytest
import torch

from metricbench.losses import WeightedSumLoss, build_loss


def test_sum_of_weighted_terms_with_prefixed_parts():
    torch.manual_seed(0)
    x, y = torch.randn(12, 4), torch.arange(12) % 3
    softmax = build_loss("softmax", num_classes=3, embedding_dim=4)
    contrastive = build_loss("pml:ContrastiveLoss", num_classes=3, embedding_dim=4)
    total = WeightedSumLoss.of([("ce", 1.0, softmax), ("pairs", 0.25, contrastive)])
    out = total(x, y)
    torch.testing.assert_close(out.loss, softmax(x, y).loss + 0.25 * contrastive(x, y).loss)
    assert set(out.parts) == {"ce/ce", "pairs/loss"}
    assert [g["name"] for g in total.param_groups()] == ["ce/loss"]
    assert total.indexes_classes and total.needs_positive_pairs


def test_built_from_config():
    loss_fn = build_loss("weighted-sum", num_classes=3, embedding_dim=4,
                         terms=[{"name": "softmax"}, {"name": "cosface", "weight": 0.1, "options": {"margin": 0.2}}])
    assert loss_fn.weights == [1.0, 0.1] and loss_fn.terms[1].config.margin == 0.2


def test_bad_terms():
    with pytest.raises(ValueError, match="at least one loss"):
        build_loss("weighted-sum", num_classes=3, embedding_dim=4)
    with pytest.raises(ValueError, match=r"terms\[0\] must be a mapping with 'name'"):
        build_loss("weighted-sum", num_classes=3, embedding_dim=4, terms=[{"loss": "softmax"}])
    with pytest.raises(ValueError, match="prefixes must be unique"):
        build_loss("weighted-sum", num_classes=3, embedding_dim=4, terms=[{"name": "softmax"}, {"name": "softmax"}])
