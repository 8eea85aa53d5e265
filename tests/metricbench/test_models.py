import pytest
import torch

from metricbench.models import ModelConfig, build_model


@pytest.mark.parametrize("arch, shape", [("auto", (1, 28, 28)), ("cnn", (3, 8, 8)), ("lenetpp", (1, 28, 28)),
                                         ("auto", (20,)), ("mlp", (1, 8, 8))])
def test_output_is_batch_by_embedding_dim(arch, shape):
    model = build_model(ModelConfig(arch=arch, embedding_dim=5), input_shape=shape, mean=torch.zeros(()), std=torch.ones(()))
    model.eval()
    assert model(torch.randn(4, *shape)).shape == (4, 5)


def test_normalize_puts_embeddings_on_the_unit_sphere():
    model = build_model(ModelConfig(arch="mlp", embedding_dim=3, normalize=True), input_shape=(6,),
                        mean=torch.zeros(6), std=torch.ones(6))
    norms = model.eval()(torch.randn(10, 6) * 50).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(10))


def test_input_statistics_are_part_of_the_state():
    model = build_model(ModelConfig(arch="mlp"), input_shape=(2,), mean=torch.tensor([1.0, 2.0]), std=torch.tensor([3.0, 0.0]))
    state = model.state_dict()
    assert torch.equal(state["mean"], torch.tensor([1.0, 2.0]))
    assert state["std"][1] > 0  # a constant feature is not divided by zero


def test_cnn_on_vectors_is_refused():
    with pytest.raises(ValueError, match=r"needs images \(C, H, W\), got samples of shape \(20,\)"):
        build_model(ModelConfig(arch="cnn"), input_shape=(20,), mean=torch.zeros(()), std=torch.ones(()))
