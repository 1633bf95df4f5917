"""YOLOv8-class detector: CSP-Darknet backbone with C2f blocks, SPPF, PAN neck, decoupled
anchor-free head with Distribution Focal Loss (DFL) box regression.

Layer widths, depths, initialisation and BatchNorm settings follow YOLOv8 so that training
from scratch behaves like it (learning-rate schedule and loss gains are tuned to these).
"""

import math
import operator

import torch
from torch import nn

from artifactkit.detector.ops import dist2bbox, make_anchors
from artifactkit.errors import InvalidInput

# (depth multiple, width multiple, max channels) per scale, as YOLOv8 defines them.
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
}
STRIDES = (8.0, 16.0, 32.0)
# YOLOv8 trains with small-momentum BN (PyTorch momentum 0.03 ~ Keras 0.97) and a larger eps;
# the default 0.1 momentum makes running statistics noisy across mosaic batches.
BN_EPS, BN_MOMENTUM = 1e-3, 0.03


class Conv(nn.Module):
    """Conv2d (no bias, BN follows) -> BatchNorm -> SiLU, 'same' padding for odd kernels."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection (only when shapes allow)."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True):
        super().__init__()
        self.cv1 = Conv(c_in, c_out, 3)
        self.cv2 = Conv(c_out, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two convolutions: split the features in two halves, run a chain of
    bottlenecks on one half, and fuse every intermediate output. Keeping each bottleneck's output
    gives the fusion conv a rich, multi-depth gradient path at little cost."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False):
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = Conv(c_in, 2 * self.hidden, 1)
        self.cv2 = Conv((2 + n) * self.hidden, c_out, 1)
        self.m = nn.ModuleList(Bottleneck(self.hidden, self.hidden, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = list(self.cv1(x).chunk(2, dim=1))
        for block in self.m:
            outputs.append(block(outputs[-1]))
        return self.cv2(torch.cat(outputs, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools equal 5/9/13 pooling windows
    for a third of the cost, widening the receptive field of the deepest level."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5):
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(hidden * 4, c_out, 1)
        self.m = nn.MaxPool2d(kernel_size=kernel, stride=1, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.cv1(x)]
        for _ in range(3):
            pooled.append(self.m(pooled[-1]))
        return self.cv2(torch.cat(pooled, dim=1))


def _width(channels: int, width_multiple: float, max_channels: int) -> int:
    """Scaled channel count, rounded up to a multiple of 8 as YOLOv8 does (SIMD friendly)."""
    return int(math.ceil(min(channels, max_channels) * width_multiple / 8) * 8)


def _depth(repeats: int, depth_multiple: float) -> int:
    return max(round(repeats * depth_multiple), 1)


class Backbone(nn.Module):
    """Five stride-2 stages; returns the stride 8, 16 and 32 feature maps (P3, P4, P5)."""

    def __init__(self, widths: list[int], depth_multiple: float):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.stem = nn.Sequential(Conv(3, c1, 3, 2), Conv(c1, c2, 3, 2), C2f(c2, c2, _depth(3, depth_multiple), True))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3, _depth(6, depth_multiple), True))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4, _depth(6, depth_multiple), True))
        self.stage5 = nn.Sequential(Conv(c4, c5, 3, 2), C2f(c5, c5, _depth(3, depth_multiple), True), SPPF(c5, c5))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.stage3(self.stem(x))
        p4 = self.stage4(p3)
        return [p3, p4, self.stage5(p4)]


class PAN(nn.Module):
    """Path-aggregation neck: a top-down pass spreads semantics to the fine levels, then a
    bottom-up pass spreads localisation back to the coarse ones."""

    def __init__(self, widths: list[int], depth_multiple: float):
        super().__init__()
        _, _, c3, c4, c5 = widths
        n = _depth(3, depth_multiple)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4 = C2f(c5 + c4, c4, n)
        self.top_down3 = C2f(c4 + c3, c3, n)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bottom_up4 = C2f(c3 + c4, c4, n)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bottom_up5 = C2f(c4 + c5, c5, n)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        t4 = self.top_down4(torch.cat((self.up(p5), p4), dim=1))
        n3 = self.top_down3(torch.cat((self.up(t4), p3), dim=1))
        n4 = self.bottom_up4(torch.cat((self.down3(n3), t4), dim=1))
        n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), dim=1))
        return [n3, n4, n5]


class DetectHead(nn.Module):
    """Decoupled head: per level, one branch regresses 4 x reg_max DFL logits (a discrete
    distribution over distances from the anchor to each box side), the other class logits."""

    def __init__(self, nc: int, channels: list[int], reg_max: int = 16):
        super().__init__()
        box_hidden = max(16, channels[0] // 4, 4 * reg_max)
        cls_hidden = max(channels[0], min(nc, 100))
        self.box_branches = nn.ModuleList(
            nn.Sequential(
                Conv(c, box_hidden, 3), Conv(box_hidden, box_hidden, 3), nn.Conv2d(box_hidden, 4 * reg_max, 1)
            )
            for c in channels
        )
        self.cls_branches = nn.ModuleList(
            nn.Sequential(Conv(c, cls_hidden, 3), Conv(cls_hidden, cls_hidden, 3), nn.Conv2d(cls_hidden, nc, 1))
            for c in channels
        )

    def init_biases(self, nc: int, strides: tuple[float, ...]) -> None:
        """YOLOv8's prior: DFL logits start flat-ish (bias 1), and class logits start at the
        probability of ~5 objects per 640 px image spread over the level's cells, so the early
        BCE loss is not swamped by confident false positives on background."""
        for box_branch, cls_branch, stride in zip(self.box_branches, self.cls_branches, strides):
            nn.init.constant_(box_branch[-1].bias, 1.0)
            nn.init.constant_(cls_branch[-1].bias, math.log(5 / nc / (640 / stride) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((box(f), cls(f)), dim=1) for f, box, cls in zip(feats, self.box_branches, self.cls_branches)]


class YOLO(nn.Module):
    """YOLOv8 detector. forward gives raw per-level maps (B, 4 * reg_max + nc, H/s, W/s) for the
    loss; decode turns them into (B, A, 4 + nc) xyxy pixel boxes and class probabilities."""

    def __init__(self, nc: int, scale: str = "n"):
        super().__init__()
        if scale not in SCALES:
            raise InvalidInput(f"unknown model scale {scale!r}: expected one of {sorted(SCALES)}")
        try:
            count = operator.index(nc)  # accepts numpy integers too, refuses floats and strings
        except TypeError:
            count = 0
        if count < 1:
            raise InvalidInput(f"number of classes must be a positive integer, got {nc!r}")
        nc = count
        depth_multiple, width_multiple, max_channels = SCALES[scale]
        widths = [_width(c, width_multiple, max_channels) for c in (64, 128, 256, 512, 1024)]
        self.nc, self.scale, self.reg_max = nc, scale, 16
        self.backbone = Backbone(widths, depth_multiple)
        self.neck = PAN(widths, depth_multiple)
        self.head = DetectHead(nc, widths[2:], self.reg_max)
        self.head.init_biases(nc, STRIDES)
        self.register_buffer("stride", torch.tensor(STRIDES))
        # DFL expectation weights 0..reg_max-1: fixed, so a buffer rather than a frozen conv
        self.register_buffer("dfl_bins", torch.arange(self.reg_max, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[-1] % 32 or x.shape[-2] % 32:
            raise InvalidInput(f"model input must be (B, 3, H, W) with H, W multiples of 32, got {tuple(x.shape)}")
        # follow the weights' memory format: after model.to(memory_format=torch.channels_last)
        # oneDNN runs convolutions and BatchNorm without layout reorders (faster CPU training)
        first_weight = self.backbone.stem[0].conv.weight
        if first_weight.is_contiguous(memory_format=torch.channels_last) and not first_weight.is_contiguous():
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.neck(self.backbone(x)))

    def dfl_distances(self, box_logits: torch.Tensor) -> torch.Tensor:
        """(..., 4 * reg_max) DFL logits -> (..., 4) expected side distances in grid units."""
        probs = box_logits.unflatten(-1, (4, self.reg_max)).softmax(-1)
        return probs @ self.dfl_bins.to(probs.dtype)

    def flatten_outputs(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-level maps -> (B, A, 4 * reg_max) box logits and (B, A, nc) class logits."""
        batch = outputs[0].shape[0]
        flat = torch.cat([o.reshape(batch, o.shape[1], -1) for o in outputs], dim=2).transpose(1, 2)
        return flat.split((4 * self.reg_max, self.nc), dim=-1)

    def decode(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """Raw outputs -> (B, A, 4 + nc): xyxy boxes in input pixels, then sigmoid class scores."""
        box_logits, cls_logits = self.flatten_outputs(outputs)
        anchors, strides = make_anchors(outputs, self.stride)
        boxes = dist2bbox(self.dfl_distances(box_logits), anchors) * strides
        return torch.cat((boxes, cls_logits.sigmoid()), dim=-1)


class Decoded(nn.Module):
    """A YOLO whose forward returns decoded predictions (B, A, 4 + nc): the graph an ONNX export
    holds, so a runtime gets boxes and class probabilities without reimplementing DFL."""

    def __init__(self, model: YOLO):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model(images))
