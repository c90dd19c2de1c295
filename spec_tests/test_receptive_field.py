"""Conformance tests of the receptive-field calculator (RF), ``ferrops.layers``."""

from __future__ import annotations

import pytest

import ferrops
from ferrops import receptive_field

spec = pytest.mark.spec

# VGG16's features: (kernel, stride, padding) of conv1_1 ... pool5.
VGG16 = [(3, 1, 1)] * 2 + [(2, 2, 0)] + [(3, 1, 1)] * 2 + [(2, 2, 0)] + ([(3, 1, 1)] * 3 + [(2, 2, 0)]) * 3


@spec("RF")
def test_receptive_field_by_hand():
    got = receptive_field([(3, 1, 1), (3, 2, 0, 1), (3, 1, 1, 2)])
    # rf: 1 + 2*1 = 3; 3 + 2*1 = 5; k' = 5: 5 + 4*2 = 13. jump: 1, 2, 2.
    # start: 0.5 + 0; 0.5 + (1 - 0)*1 = 1.5; 1.5 + (2 - 1)*2 = 3.5.
    assert [(r.rf, r.jump, r.start) for r in got] == [(3, 1, 0.5), (5, 2, 1.5), (13, 2, 3.5)]
    assert got[2].dilation == 2 and got[1].padding == 0
    assert receptive_field([(2, 2)])[0][5:] == (2, 2, 1.0)  # padding 0, dilation 1 by default
    assert receptive_field([]) == []


@spec("RF")
def test_vgg16_receptive_field():
    got = receptive_field(VGG16)
    # From the RF formula: conv5_3 sees 196 pixels, pool5 212 (the figure usually
    # quoted for VGG16), with a jump of 32 and the first field centred at 16.
    assert got[-2].rf == 196 and got[-2].jump == 16
    assert (got[-1].rf, got[-1].jump, got[-1].start) == (212, 32, 16.0)
    assert [r.rf for r in got[:6]] == [3, 5, 6, 10, 14, 16]


@spec("RF")
def test_receptive_field_of_a_torch_module():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        features = torchvision.models.vgg16().features
    got = receptive_field(features)
    assert [(r.rf, r.jump, r.start) for r in got] == [(r.rf, r.jump, r.start) for r in receptive_field(VGG16)]
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 1, (3, 5), padding=(1, 2)), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, dilation=2)
    )
    layers = receptive_field(net)
    assert [r.name for r in layers] == ["0", "2", "3"]
    assert layers[0].rf == (3, 5) and layers[-1].rf == (3 + 1 + 4 * 2, 5 + 1 + 4 * 2) and layers[-1].jump == (2, 2)
    # padding="same" pads d (k - 1) in total, the smaller half on the left/top.
    same = receptive_field(nn.Conv2d(1, 1, 4, padding="same"))[0]
    assert (same.padding, same.rf, same.start) == (1, 4, 0.5 + (3 / 2 - 1))
    with pytest.raises(ValueError, match="fixed kernel, stride and padding .* got ConvTranspose2d"):
        receptive_field(nn.ConvTranspose2d(1, 1, 3))
    with pytest.raises(ValueError, match="got AdaptiveAvgPool2d"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(7)))


@spec("RF")
def test_receptive_field_bad_layers():
    with pytest.raises(
        ValueError, match=r"expected \(kernel, stride\[, padding\[, dilation\]\]\) tuples, got layers\[1\] = \(3,\)"
    ):
        receptive_field([(3, 1), (3,)])
    with pytest.raises(ValueError, match=r"expected stride >= 1"):
        receptive_field([(3, 0)])
    with pytest.raises(TypeError, match=r"expected ints"):
        receptive_field([(3.5, 1)])
    with pytest.raises(TypeError, match=r"argument 'layers'"):
        receptive_field(3)


def test_the_segmentation_module_keeps_the_name():
    assert ferrops.segmentation.receptive_field is ferrops.layers.receptive_field is receptive_field
    assert ferrops.segmentation.LayerReceptiveField is ferrops.LayerReceptiveField
