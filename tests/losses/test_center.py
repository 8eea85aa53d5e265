"""Center loss against plain loops over samples, for every update rule and several steps."""

import pytest
import torch

from metricbench.losses import CenterLoss, build_loss

C, D = 5, 3


def loop_term(x, y, centers):
    total = 0.0
    for xi, yi in zip(x.tolist(), y.tolist()):
        total += sum((a - b) ** 2 for a, b in zip(xi, centers[yi].tolist()))
    return total / (2 * len(y))


def loop_update(rule, x, y, centers, state, alpha=0.5, decay=0.95):
    """One step of each rule, written from its definition, one class at a time."""
    new = centers.clone()
    for j in set(y.tolist()):
        members = [x[i] for i in range(len(y)) if y[i] == j]
        n = len(members)
        if rule == "paper":
            delta = sum((centers[j] - xi for xi in members), torch.zeros(D, dtype=x.dtype)) / (1 + n)
            new[j] = centers[j] - alpha * delta
        elif rule == "ema":
            new[j] = decay * centers[j] + (1 - decay) * sum(members) / n
        else:  # cumulative
            state.setdefault(j, []).extend(members)
            new[j] = sum(state[j]) / len(state[j])
    return new


# Duplicate labels, a singleton (class 3 at step 0), classes absent from a batch (4, then 0/2).
BATCHES = [torch.tensor([0, 0, 1, 3, 1, 0]), torch.tensor([1, 4, 4, 3]), torch.tensor([2, 2, 2, 0, 1])]


def embeddings(step, n):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(step), dtype=torch.float64)


def test_center_term_matches_a_loop():
    term = build_loss("center-term", num_classes=C, embedding_dim=D).double()
    x, y = embeddings(0, 6), BATCHES[0]
    out = term(x, y)
    assert out.loss.item() == pytest.approx(loop_term(x, y, term.centers), rel=1e-12)
    assert out.parts["center"].item() == out.loss.item()


@pytest.mark.parametrize("rule", ["paper", "ema", "cumulative"])
@pytest.mark.parametrize("alpha, decay", [(0.5, 0.95), (1.0, 0.0), (0.1, 0.5)])
def test_update_rules_match_loops_over_several_steps(rule, alpha, decay):
    torch.manual_seed(0)
    loss_fn = build_loss("center", num_classes=C, embedding_dim=D, update=rule, alpha=alpha, decay=decay).double()
    expected, state = loss_fn.centers.clone(), {}
    for step, y in enumerate(BATCHES):
        x = embeddings(step, len(y))
        before = loss_fn.centers.clone()
        loss_fn(x, y)  # forward never moves the centers
        assert torch.equal(loss_fn.centers, before)
        loss_fn.update_state(x, y)
        expected = loop_update(rule, x, y, expected, state, alpha=alpha, decay=decay)
        torch.testing.assert_close(loss_fn.centers, expected, rtol=1e-12, atol=1e-12)
        absent = sorted(set(range(C)) - set(y.tolist()))
        assert torch.equal(loss_fn.centers[absent], before[absent]), "absent classes must keep their centers"


def test_ema_of_a_repeated_class_is_not_a_scatter_subtract():
    # A naive `centers.index_add_(0, y, (1 - decay) * (x - c))` would move class 0 three times.
    loss_fn = build_loss("center-term", num_classes=2, embedding_dim=1, update="ema", decay=0.5, init="zeros")
    loss_fn.update_state(torch.tensor([[2.0], [2.0], [2.0]]), torch.tensor([0, 0, 0]))
    assert loss_fn.centers[0].item() == 1.0


@pytest.mark.parametrize("weight", [0.001, 0.1, 10.0])
def test_sgd_centers_step_does_not_depend_on_lambda(weight):
    torch.manual_seed(0)
    loss_fn = build_loss("center", num_classes=C, embedding_dim=D, update="sgd", center_weight=weight,
                         center_lr=0.5).double()
    groups = {g["name"]: g for g in loss_fn.param_groups()}
    assert set(groups) == {"head", "centers"} and groups["centers"]["lr"] == 0.5
    assert groups["centers"]["weight_decay"] == 0.0
    optimizer = torch.optim.SGD(loss_fn.param_groups(), lr=0.1)
    x, y = embeddings(0, 6).requires_grad_(True), BATCHES[0]
    start = loss_fn.centers.detach().clone()
    x_ce = x.detach().clone().requires_grad_(True)
    loss_fn.softmax(x_ce, y).loss.backward()  # the cross-entropy part of the embeddings' gradient
    optimizer.zero_grad()
    out = loss_fn(x, y)
    assert out.loss.item() == pytest.approx(
        loss_fn.softmax(x, y).loss.item() + weight * loop_term(x.detach(), y, start), rel=1e-12)
    out.loss.backward()
    optimizer.step()
    # Centers: one SGD step on L_C itself, dL_C/dc_j = -Σ_{i:y_i=j} (x_i - c_j) / B, whatever λ is.
    expected = start.clone()
    for j in range(C):
        grad = sum((-(x[i].detach() - start[j]) / len(y) for i in range(len(y)) if y[i] == j), torch.zeros(D, dtype=torch.float64))
        expected[j] = start[j] - 0.5 * grad
    torch.testing.assert_close(loss_fn.centers.detach(), expected, rtol=1e-12, atol=1e-12)
    # Embeddings: λ · (x_i - c_{y_i}) / B on top of the cross-entropy gradient.
    torch.testing.assert_close(x.grad - x_ce.grad, weight * (x.detach() - start[y]) / len(y), rtol=1e-10, atol=1e-12)


def test_non_gradient_rules_give_the_optimizer_the_head_only():
    loss_fn = build_loss("center", num_classes=C, embedding_dim=D)
    assert [g["name"] for g in loss_fn.param_groups()] == ["head"]
    assert not loss_fn.centers.requires_grad and loss_fn.centers.shape == (C, D)
    assert "term.centers" in loss_fn.state_dict()


def test_parts_and_total():
    torch.manual_seed(0)
    loss_fn = build_loss("center", num_classes=C, embedding_dim=D, center_weight=0.3)
    x, y = torch.randn(6, D), BATCHES[0]
    out = loss_fn(x, y)
    assert set(out.parts) == {"ce", "center"}
    torch.testing.assert_close(out.loss, out.parts["ce"] + 0.3 * out.parts["center"])


def test_every_option_is_accepted_whatever_the_rule():
    loss_fn = build_loss("center", num_classes=C, embedding_dim=D, update="ema", alpha=0.2, decay=0.9,
                         center_lr=0.1, init="zeros", center_weight=0.5)
    assert isinstance(loss_fn, CenterLoss) and loss_fn.centers.abs().sum() == 0


@pytest.mark.parametrize("options, message", [
    ({"update": "adam"}, "update must be one of paper, ema, cumulative, sgd; got 'adam'"),
    ({"alpha": 0}, r"alpha must be in \(0, 1\], got 0"),
    ({"decay": 1.0}, r"decay must be in \[0, 1\), got 1.0"),
    ({"init": "xavier"}, "init must be one of zeros, normal"),
    ({"center_weight": -1}, "center_weight must be >= 0"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        build_loss("center", num_classes=C, embedding_dim=D, **options)


def test_out_of_range_labels_are_named_in_update_state_too():
    loss_fn = build_loss("center", num_classes=C, embedding_dim=D)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\), got \[7\]"):
        loss_fn(torch.randn(2, D), torch.tensor([0, 7]))


def test_a_step_at_100k_classes_touches_only_present_classes():
    loss_fn = build_loss("center", num_classes=100_000, embedding_dim=4, update="paper")
    before = loss_fn.centers.clone()
    y = torch.tensor([5, 99_999, 5])
    loss_fn.update_state(torch.randn(3, 4), y)
    changed = (loss_fn.centers != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [5, 99_999]
