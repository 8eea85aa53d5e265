"""One contract test for every registered loss (and two pytorch-metric-learning adapters)."""

import pytest
import torch

from metricbench.losses import EmbeddingLoss, LossOutput, available_losses, build_loss

NUM_CLASSES, DIM = 6, 16
# Losses whose defaults need a choice to be runnable.
EXAMPLE_OPTIONS = {
    "weighted-sum": {"terms": [{"name": "softmax"}, {"name": "pml:ContrastiveLoss", "weight": 0.5}]},
}
NAMES = available_losses() + ["pml:TripletMarginLoss", "pml:ArcFaceLoss"]


def make(name: str, seed: int = 0) -> EmbeddingLoss:
    torch.manual_seed(seed)
    return build_loss(name, num_classes=NUM_CLASSES, embedding_dim=DIM, **EXAMPLE_OPTIONS.get(name, {}))


def batch(seed: int = 0, n: int = 24):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, DIM, generator=g, dtype=torch.float64).float(), torch.arange(n) % NUM_CLASSES


@pytest.fixture(params=NAMES)
def name(request):
    return request.param


def test_finite_scalar_loss_and_detached_parts(name):
    loss_fn = make(name)
    x, y = batch()
    out = loss_fn(x, y)
    assert isinstance(out, LossOutput)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.parts, "every loss reports at least one part"
    for key, value in out.parts.items():
        assert isinstance(key, str) and value.ndim == 0 and not value.requires_grad, key


def test_gradients_reach_embeddings(name):
    x, y = batch()
    x.requires_grad_(True)
    make(name)(x, y).loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_batch_order_does_not_matter(name):
    loss_fn = make(name)
    x, y = batch()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss_fn(x, y).loss, loss_fn(x[perm], y[perm]).loss, rtol=1e-5, atol=1e-6)


def test_every_trainable_parameter_in_exactly_one_group(name):
    loss_fn = make(name)
    grouped = [p for g in loss_fn.param_groups() for p in g["params"]]
    trainable = [p for p in loss_fn.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}), "a parameter appears in two groups"
    assert {id(p) for p in grouped} == {id(p) for p in trainable}
    assert all(isinstance(g["name"], str) for g in loss_fn.param_groups())


def test_state_dict_round_trip(name):
    x, y = batch()
    trained, fresh = make(name, seed=0), make(name, seed=1)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1)
    trained.update_state(x, y)
    fresh.load_state_dict(trained.state_dict())
    torch.testing.assert_close(fresh(x, y).loss, trained(x, y).loss)


def test_forward_has_no_side_effects(name):
    loss_fn = make(name)
    before = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    loss_fn(*batch())
    after = loss_fn.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize(
    "embeddings, labels, message",
    [
        (torch.randn(DIM), torch.zeros(1, dtype=torch.long), r"embeddings must have shape \(batch, dim\), got \(16,\)"),
        (torch.randn(4, DIM), torch.zeros(4, 1, dtype=torch.long), r"labels must have shape \(batch,\), got \(4, 1\)"),
        (torch.randn(4, DIM), torch.zeros(5, dtype=torch.long), "one entry per embedding"),
        (torch.randn(4, DIM + 1), torch.zeros(4, dtype=torch.long), "embeddings must have dim 16"),
    ],
)
def test_shape_errors_name_the_argument(name, embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        make(name)(embeddings, labels)


def test_dtype_errors(name):
    with pytest.raises(ValueError, match="labels must be an integer tensor, got torch.float32"):
        make(name)(torch.randn(4, DIM), torch.zeros(4))
    with pytest.raises(TypeError, match="embeddings must be a floating tensor"):
        make(name)(torch.zeros(4, DIM, dtype=torch.long), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("name", [n for n in NAMES if make(n).indexes_classes])
def test_class_indexing_losses_reject_out_of_range_labels(name):
    loss_fn = make(name)
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, {NUM_CLASSES}\), got \[-1, {NUM_CLASSES}\]"):
        loss_fn(torch.randn(3, DIM), torch.tensor([0, NUM_CLASSES, -1]))


@pytest.mark.parametrize("name", available_losses())
def test_search_space_names_options_and_its_bounds_are_valid_configs(name):
    from metricbench.losses import make_config
    from metricbench.losses.registry import loss_class
    from metricbench.losses.search_space import Choice, check_search_space

    cls = loss_class(name)
    check_search_space(cls.search_space, cls.Config)
    for option, param in cls.search_space.items():
        for value in param.values if isinstance(param, Choice) else (param.low, param.high):
            options = {**EXAMPLE_OPTIONS.get(name, {}), option: value}
            make_config(cls.Config, options, owner=name)  # the config's own checks raise when out of range


def test_search_space_check_names_the_bad_entry():
    from metricbench.losses.search_space import FloatRange, check_search_space
    from metricbench.losses import SoftmaxLossConfig

    with pytest.raises(ValueError, match="'lr'.*not an option of SoftmaxLossConfig"):
        check_search_space({"lr": FloatRange(1e-4, 1e-2, log=True)}, SoftmaxLossConfig)
    with pytest.raises(ValueError, match="low < high"):
        check_search_space({"label_smoothing": FloatRange(0.3, 0.1)}, SoftmaxLossConfig)
