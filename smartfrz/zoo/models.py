"""Small from-scratch models for the zoo, shaped so `smartfrz.blocks.discover_blocks` splits them exactly."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SmallResNet(nn.Module):
    """A narrow torchvision-style ResNet for 28x28 images: conv1/bn1/relu/maxpool stem, layer1..N, avgpool, fc."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64),
        depths: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()  # no stem downsampling on 28x28 inputs
        inplanes = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True), start=1):
            stride = 1 if stage == 1 else 2
            downsample = None
            if stride != 1 or inplanes != width:
                downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride, bias=False), nn.BatchNorm2d(width))
            blocks = [BasicBlock(inplanes, width, stride, downsample)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            inplanes = width
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's ResNet forward."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 conv, batch norm, ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def vgg_cnn(
    num_classes: int, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64), hidden: int = 128
) -> nn.Sequential:
    """A VGG-style CNN as an nn.Sequential: one block per stage (two convs + max-pool), an FC block, the head."""
    stages: list[nn.Module] = []
    c_in = in_channels
    for width in widths:
        stages.append(nn.Sequential(*_conv_bn_relu(c_in, width), *_conv_bn_relu(width, width), nn.MaxPool2d(2)))
        c_in = width
    fc = nn.Sequential(nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(1), nn.Linear(c_in * 4, hidden), nn.ReLU(inplace=True))
    return nn.Sequential(*stages, fc, nn.Linear(hidden, num_classes))


class SmallMobileNetV2(nn.Module):
    """A MobileNetV2 for 28x28 grey images from torchvision's inverted-residual blocks: `features` + `classifier`."""

    # (expansion t, channels c, repeats n, first stride s), as in torchvision; total stride 4 for 28x28 inputs.
    SETTING = ((1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 3, 2), (6, 32, 2, 1))

    def __init__(self, num_classes: int, in_channels: int = 1, stem: int = 16, last_channel: int = 128) -> None:
        super().__init__()
        from torchvision.models.mobilenetv2 import InvertedResidual
        from torchvision.ops.misc import Conv2dNormActivation

        layers: list[nn.Module] = [Conv2dNormActivation(in_channels, stem, stride=1, activation_layer=nn.ReLU6)]
        c_in = stem
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, expand_ratio=t))
                c_in = c
        layers.append(Conv2dNormActivation(c_in, last_channel, kernel_size=1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's MobileNetV2 forward."""
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mlp(in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256, 256)) -> nn.Sequential:
    """An MLP as an nn.Sequential: one block per hidden layer (Linear + ReLU), then the linear head."""
    blocks: list[nn.Module] = []
    width = in_features
    for h in hidden:
        blocks.append(nn.Sequential(nn.Linear(width, h), nn.ReLU(inplace=True)))
        width = h
    return nn.Sequential(*blocks, nn.Linear(width, num_classes))


class TokenEmbedding(nn.Module):
    """Token ids [B, T] (0 = padding) -> `(hidden [B, T, D], mask [B, T])`, with learned positions."""

    def __init__(self, vocab_size: int, dim: int, max_len: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = nn.Embedding(max_len, dim)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed tokens plus positions; the mask marks real (non-padding) tokens."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.tokens(ids) + self.positions(positions), ids != 0


class EncoderLayer(nn.Module):
    """A pre-norm transformer encoder layer on `(hidden, mask)`; padding keys are masked out."""

    def __init__(self, dim: int, heads: int, ff_mult: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, act: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention then feed-forward, each with a residual connection."""
        h, mask = act
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=(mask != 0)[:, None, None, :])
        h = h + self.dropout(self.proj(attn.transpose(1, 2).reshape(b, t, d)))
        h = h + self.dropout(self.ff(self.norm2(h)))
        return h, mask


class MeanPoolHead(nn.Module):
    """Mean over the real tokens, layer norm, linear classifier: `(hidden, mask)` -> logits."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, act: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Masked mean pooling, then classify."""
        h, mask = act
        weights = (mask != 0).to(h.dtype).unsqueeze(-1)
        pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.fc(self.norm(pooled))


def text_transformer(
    vocab_size: int, num_classes: int, dim: int = 64, depth: int = 3, heads: int = 4, max_len: int = 128
) -> nn.Sequential:
    """A small transformer encoder classifier as an nn.Sequential: embedding, `depth` layers, mean-pool head."""
    layers = [EncoderLayer(dim, heads) for _ in range(depth)]
    return nn.Sequential(TokenEmbedding(vocab_size, dim, max_len), *layers, MeanPoolHead(dim, num_classes))
