from dataclasses import dataclass

import pytest
import torch

from metricbench.losses import EmbeddingLoss, LossOutput, available_losses, build_loss, register_loss


def test_builtin_losses_are_registered():
    assert {"softmax", "normsoftmax", "arcface", "cosface", "weighted-sum"} <= set(available_losses())


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown loss 'sofmax'; available: arcface, .*softmax.*pml:<LossName>"):
        build_loss("sofmax", num_classes=3, embedding_dim=4)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'margn' for loss 'arcface'; valid options: margin, scale"):
        build_loss("arcface", num_classes=3, embedding_dim=4, margn=0.3)


def test_option_ranges_are_checked():
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        build_loss("softmax", num_classes=3, embedding_dim=4, label_smoothing=1.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        build_loss("normsoftmax", num_classes=3, embedding_dim=4, temperature=0)


def test_option_types_are_checked_by_the_config_coercion():
    from metricbench.errors import InputTypeError

    with pytest.raises(InputTypeError, match=r"^margin must be float, got 'abc'$"):
        build_loss("triplet-semihard", num_classes=2, embedding_dim=4, margin="abc")
    with pytest.raises(InputTypeError, match="margin must be float, got True"):
        build_loss("triplet-semihard", num_classes=2, embedding_dim=4, margin=True)
    with pytest.raises(InputTypeError, match=r"terms\[0\] must be a table, got 'softmax'"):
        build_loss("weighted-sum", num_classes=2, embedding_dim=4, terms=["softmax"])
    margin = build_loss("triplet-semihard", num_classes=2, embedding_dim=4, margin=1).config.margin
    assert margin == 1.0 and type(margin) is float  # ints are accepted for floats


def test_data_facts_are_required_and_checked():
    with pytest.raises(TypeError):
        build_loss("softmax", embedding_dim=4)  # num_classes is keyword-only and required
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        build_loss("softmax", num_classes=0, embedding_dim=4)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="'softmax' is already registered"):
        register_loss("softmax")(type("Again", (EmbeddingLoss,), {}))


def test_custom_loss_plugs_in(scratch_registry):
    @dataclass(frozen=True)
    class MeanNormConfig:
        scale: float = 2.0

    @register_loss("test-mean-norm")
    class MeanNormLoss(EmbeddingLoss):
        Config = MeanNormConfig

        def compute(self, embeddings, labels):
            loss = self.config.scale * embeddings.norm(dim=1).mean()
            return LossOutput(loss, {"norm": loss.detach()})

    loss_fn = build_loss("test-mean-norm", num_classes=2, embedding_dim=3, scale=3.0)
    x = torch.ones(2, 3)
    torch.testing.assert_close(loss_fn(x, torch.tensor([0, 1])).loss, torch.tensor(3.0 * 3**0.5))
    assert "test-mean-norm" in available_losses()
