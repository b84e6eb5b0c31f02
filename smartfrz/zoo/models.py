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


def plain_cnn(num_classes: int, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64)) -> nn.Sequential:
    """A CNN without normalisation as an nn.Sequential: (conv, ReLU, conv, ReLU, max-pool) per stage, pooled head."""
    stages: list[nn.Module] = []
    c_in = in_channels
    for width in widths:
        stages.append(
            nn.Sequential(
                nn.Conv2d(c_in, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            )
        )
        c_in = width
    head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1), nn.Linear(c_in, num_classes))
    net = nn.Sequential(*stages, head)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):  # He init: without normalisation the default init barely trains
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return net


def lenet(num_classes: int, in_channels: int = 1, image: int = 28) -> nn.Sequential:
    """LeNet-5 style: tanh convolutions with average pooling, two tanh FC layers, the head."""
    side = (image // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"LeNet needs images of at least 12x12, got {image}")
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2)),
        nn.Sequential(nn.Flatten(1), nn.Linear(16 * side * side, 120), nn.Tanh()),
        nn.Sequential(nn.Linear(120, 84), nn.Tanh()),
        nn.Linear(84, num_classes),
    )


class PatchEmbed(nn.Module):
    """Image [B, C, H, W] -> patch tokens [B, N, D] plus learned positions (a strided conv)."""

    def __init__(self, in_channels: int, dim: int, patch: int, image: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.positions = nn.Parameter(0.02 * torch.randn(1, (image // patch) ** 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patchify, flatten, add positions."""
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return tokens + self.positions


class MixerBlock(nn.Module):
    """MLP-Mixer block: token-mixing MLP across patches, then channel-mixing MLP, both pre-norm residual."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens, then channels."""
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class TokenPoolHead(nn.Module):
    """Layer norm, mean over tokens, linear classifier: [B, N, D] -> logits."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool and classify."""
        return self.fc(self.norm(x).mean(dim=1))


def mlp_mixer(
    num_classes: int, in_channels: int = 1, image: int = 28, patch: int = 4, dim: int = 64, depth: int = 4
) -> nn.Sequential:
    """A small MLP-Mixer as an nn.Sequential: patch embedding, ``depth`` mixer blocks, pooled head."""
    tokens = (image // patch) ** 2
    blocks = [MixerBlock(tokens, dim, 2 * tokens, 2 * dim) for _ in range(depth)]
    return nn.Sequential(PatchEmbed(in_channels, dim, patch, image), *blocks, TokenPoolHead(dim, num_classes))


class ViTBlock(nn.Module):
    """Pre-norm transformer encoder block on patch tokens [B, N, D] (no padding)."""

    def __init__(self, dim: int, heads: int, ff_mult: int = 2) -> None:
        super().__init__()
        self.inner = EncoderLayer(dim, heads, ff_mult=ff_mult, dropout=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention and feed-forward over all patches."""
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.inner((x, mask))[0]


def vit(
    num_classes: int,
    in_channels: int = 1,
    image: int = 28,
    patch: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
) -> nn.Sequential:
    """A small ViT as an nn.Sequential: patch embedding, ``depth`` encoder blocks, mean-pooled head."""
    blocks = [ViTBlock(dim, heads) for _ in range(depth)]
    return nn.Sequential(PatchEmbed(in_channels, dim, patch, image), *blocks, TokenPoolHead(dim, num_classes))


def conv1d_net(num_classes: int, length: int = 40, widths: Sequence[int] = (32, 64, 64)) -> nn.Sequential:
    """A 1-D CNN for signals [B, L] as an nn.Sequential: (conv, BN, ReLU) stages with pooling, pooled head."""
    stages: list[nn.Module] = [nn.Sequential(nn.Unflatten(1, (1, length)), nn.Conv1d(1, widths[0], 5, padding=2))]
    c_in = widths[0]
    for width in widths:
        stages.append(
            nn.Sequential(
                nn.Conv1d(c_in, width, 3, padding=1, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2),
            )
        )
        c_in = width
    head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(1), nn.Linear(c_in, num_classes))
    return nn.Sequential(*stages, head)
