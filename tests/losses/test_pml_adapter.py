import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from metricbench.losses import build_loss


def data(n=32, d=8, c=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.arange(n) % c


def test_same_number_as_pml_itself():
    x, y = data()
    ours = build_loss("pml:TripletMarginLoss", num_classes=4, embedding_dim=8, margin=0.3,
                      miner="TripletMarginMiner", miner_options={"margin": 0.5, "type_of_triplets": "semihard"})
    miner = pml_miners.TripletMarginMiner(margin=0.5, type_of_triplets="semihard")
    theirs = pml_losses.TripletMarginLoss(margin=0.3)(x, y, miner(x, y))
    out = ours(x, y)
    torch.testing.assert_close(out.loss, theirs)
    assert out.parts["mined"].item() == miner(x, y)[0].numel()


@pytest.mark.parametrize("name, pml_cls, options", [
    ("arcface", pml_losses.ArcFaceLoss, {}),
    ("cosface", pml_losses.CosFaceLoss, {"margin": 0.2, "scale": 30.0}),
    ("normsoftmax", pml_losses.NormalizedSoftmaxLoss, {"temperature": 0.1}),
])
def test_softmax_family_delegates_to_pml(name, pml_cls, options):
    x, y = data()
    torch.manual_seed(3)
    ours = build_loss(name, num_classes=4, embedding_dim=8, **options)
    torch.manual_seed(3)
    theirs = pml_cls(num_classes=4, embedding_size=8, **options)
    torch.testing.assert_close(ours(x, y).loss, theirs(x, y))


def test_classification_losses_get_the_data_facts():
    loss_fn = build_loss("pml:CosFaceLoss", num_classes=7, embedding_dim=5)
    assert loss_fn.pml_loss.W.shape == (5, 7)
    assert loss_fn.indexes_classes and not loss_fn.needs_positive_pairs


def test_errors_list_what_is_valid():
    with pytest.raises(ValueError, match=r"unknown pytorch-metric-learning loss 'TripletLoss'; available: .*TripletMarginLoss"):
        build_loss("pml:TripletLoss", num_classes=2, embedding_dim=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'marign' for loss 'TripletMarginLoss'; valid options: .*margin"):
        build_loss("pml:TripletMarginLoss", num_classes=2, embedding_dim=3, marign=1)
    with pytest.raises(ValueError, match=r"unknown pytorch-metric-learning miner 'Nope'"):
        build_loss("pml:TripletMarginLoss", num_classes=2, embedding_dim=3, miner="Nope")
