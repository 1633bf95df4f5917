"""YOLOv8 model: output shapes, decode, scales, parameter counts, initialisation, param groups."""

import math

import pytest
import torch

from artifactkit.detector.model import YOLO
from artifactkit.detector.optim import parameter_groups
from artifactkit.errors import InvalidInput


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scale", ["n", "s", "m"])
def test_forward_and_decode_shapes(scale):
    torch.manual_seed(0)
    model = YOLO(nc=3, scale=scale).eval()
    batch = 2 if scale == "n" else 1  # the larger scales only need to show they wire up
    with torch.no_grad():
        outputs = model(torch.rand(batch, 3, 64, 96))
        decoded = model.decode(outputs)
    assert [tuple(o.shape) for o in outputs] == [(batch, 67, 8, 12), (batch, 67, 4, 6), (batch, 67, 2, 3)]
    assert decoded.shape == (batch, 8 * 12 + 4 * 6 + 2 * 3, 4 + 3)
    boxes, probs = decoded[..., :4], decoded[..., 4:]
    assert torch.all(boxes[..., 2:] >= boxes[..., :2])  # xyxy, non-negative side distances
    assert torch.all((probs > 0) & (probs < 1))


def test_decode_turns_dfl_logits_into_pixel_boxes_around_anchors():
    model = YOLO(nc=2)
    # flat DFL logits: expected distance is the mean bin, 7.5 grid cells on every side
    outputs = [torch.zeros(1, 4 * 16 + 2, 64 // s, 64 // s) for s in (8, 16, 32)]
    decoded = model.decode(outputs)
    assert decoded[0, 0].tolist() == pytest.approx([4 - 60, 4 - 60, 4 + 60, 4 + 60, 0.5, 0.5])
    # last anchor: stride-32 level, cell (1, 1), centre 48 px, 7.5 cells = 240 px each side
    assert decoded[0, -1, :4].tolist() == pytest.approx([48 - 240, 48 - 240, 48 + 240, 48 + 240])


def test_unknown_scale_and_bad_input_raise_invalid_input():
    with pytest.raises(InvalidInput, match="scale"):
        YOLO(nc=3, scale="x")
    with pytest.raises(InvalidInput):
        YOLO(nc=0)
    with pytest.raises(InvalidInput):
        YOLO(nc=3)(torch.rand(1, 3, 50, 64))


def test_parameter_counts_match_yolov8():
    # YOLOv8n/s with 80 classes: 3,157,200 and 11,166,560 parameters, of which 16 are the frozen
    # DFL conv that we keep as a buffer instead
    assert _num_params(YOLO(nc=80, scale="n")) == 3_157_200 - 16
    assert _num_params(YOLO(nc=80, scale="s")) == 11_166_560 - 16
    assert 2.9e6 < _num_params(YOLO(nc=12, scale="n")) < 3_157_184


def test_attributes_bias_init_and_batchnorm_settings():
    model = YOLO(nc=12)
    assert (model.nc, model.scale, model.reg_max) == (12, "n", 16)
    assert model.stride.tolist() == [8.0, 16.0, 32.0] and "stride" in model.state_dict()
    for box_branch, cls_branch, stride in zip(model.head.box_branches, model.head.cls_branches, (8, 16, 32)):
        assert torch.all(box_branch[-1].bias == 1.0)
        assert torch.allclose(cls_branch[-1].bias, torch.tensor(math.log(5 / 12 / (640 / stride) ** 2)))
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and all(bn.eps == 1e-3 and bn.momentum == 0.03 for bn in batchnorms)


def test_parameter_groups_cover_every_parameter_once():
    model = YOLO(nc=4)
    biases, weights, norm_weights = parameter_groups(model)
    grouped = [id(p) for p in biases + weights + norm_weights]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))
    assert all(p.ndim == 1 for p in biases + norm_weights)
    assert all(p.ndim == 4 for p in weights)
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norm_weights) == len(batchnorms)  # BN weights; BN biases go with the biases
    assert len(biases) == len(batchnorms) + 6  # + the head's six final convs


def test_channels_last_model_gives_the_same_predictions():
    torch.manual_seed(0)
    model = YOLO(nc=3).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.decode(model(images))
        model.to(memory_format=torch.channels_last)
        outputs = model(images)  # plain NCHW input is converted to match the weights
        assert outputs[0].is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(model.decode(outputs), expected, atol=1e-4)
