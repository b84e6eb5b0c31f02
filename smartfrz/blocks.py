"""Block discovery: split a model into an ordered chain of freezable stages whose composition is its forward.

A *block* is a stage of the forward path. Freezing always covers a prefix of blocks, and the last block
(the head) never freezes. Every block's module takes the previous block's output (the first takes the
model input) and `run_blocks(blocks, x)` reproduces `model(x)`, so a frozen prefix's output can be
cached and the remaining blocks run on it.

Activations between blocks are a Tensor or a tuple of Tensors, each with the batch dimension first.
BERT-style blocks pass `(hidden_states [B, T, H], attention_mask [B, T])`; the mask is the plain 2-D
padding mask (1 = attend; any dtype, nonzero means attend) so it caches like any per-sample row, and each
encoder-layer block builds the 4-D attention mask from it exactly as the model does.

Supported automatically: `nn.Sequential` (each child a block), torchvision-style ResNets (stem, each
residual block, head), torchvision-style `features`/`classifier` CNNs such as MobileNetV2 (each
`features[i]`, head), and the Hugging Face classifiers users usually fine-tune: BERT-style (BERT, MiniLM),
RoBERTa-style (RoBERTa, XLM-R), DistilBERT (embeddings, each encoder layer, head), ViT (patch embeddings,
each encoder layer, final norm + classifier) and GPT-2 (token and position embeddings, each decoder
layer, final norm + score on the last non-padding token). GPT-2 blocks pass `(hidden, mask, last)`
with `last` the index of the pooled token; ViT blocks pass the hidden states alone. A user model joins
in two ways:

* the protocol: define `smartfrz_blocks(self) -> list[Block]` on the model, returning blocks whose
  modules chain as described above (the last one is the head);
* explicitly: `discover_blocks(model, blocks=[...])` with module names (`"layer1"`), modules, or
  `Block`s, in forward order. Freezing works for any such list; caching also needs the chain property,
  which `check_split` verifies on a batch.

In every case the blocks must partition the model's parameters: each parameter in exactly one block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from smartfrz.layers import find_layers
from smartfrz.utils.modes import eval_mode

Activation = torch.Tensor | tuple[torch.Tensor, ...]

_HOW_TO = (
    "Pass the blocks explicitly, in forward order with the head last, e.g. "
    "discover_blocks(model, blocks=['stem', 'stage1', 'stage2', 'head']) (module names or modules), or define "
    "`smartfrz_blocks(self) -> list[smartfrz.blocks.Block]` on the model (see smartfrz.blocks' docstring)."
)


@dataclass(eq=False)
class Block:
    """One freezable stage: a name for logs and a module that maps the previous activation to the next."""

    name: str
    module: nn.Module

    def forward(self, act: Activation) -> Activation:
        """Run this block on the previous block's output (or on the model input for the first block)."""
        return self.module(act)


def run_blocks(blocks: Sequence[Block], act: Activation, start: int = 0, end: int | None = None) -> Activation:
    """Apply blocks[start:end] in order; over all blocks this equals the model's forward (its logits)."""
    for block in blocks[start:end]:
        act = block.forward(act)
    return act


def model_logits(output: object) -> torch.Tensor:
    """The logits tensor of a model output: the tensor itself, a Hugging Face `.logits`, or a tuple's first item."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def check_split(
    model: nn.Module, blocks: Sequence[Block], example: Activation, atol: float = 1e-5, rtol: float = 1e-4
) -> float:
    """Verify in eval mode that `run_blocks(blocks, example)` reproduces `model(example)`; returns the max abs error.

    The runtime calls this once before serving cached activations, so a split that does not compose to
    the model's forward fails loudly instead of training on wrong activations.
    """
    with eval_mode(model), torch.no_grad():
        if isinstance(example, tuple) and blocks and isinstance(blocks[0].module, BertEmbeddingsBlock):
            expected = model_logits(model(input_ids=example[0], attention_mask=example[1]))  # (ids, mask)
        else:
            expected = model_logits(model(example))
        got = run_blocks(blocks, example)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise ValueError(f"the blocks produce {shape}, the model {tuple(expected.shape)}; {_HOW_TO}")
    error = (got.float() - expected.float()).abs().max().item() if got.numel() else 0.0
    if not torch.allclose(got.float(), expected.float(), atol=atol, rtol=rtol):
        raise ValueError(
            f"running the blocks in order differs from the model's forward (max abs error {error:.3g}); {_HOW_TO}"
        )
    return error


class BertEmbeddingsBlock(nn.Module):
    """BERT embeddings as a block: token ids (or `(ids, mask)`) -> `(hidden_states, attention_mask)`."""

    def __init__(self, embeddings: nn.Module, pad_id: int | None) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.pad_id = pad_id

    def forward(self, x: Activation) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the ids; the mask is the given one, else `ids != pad_id`, else all ones (as HF's default)."""
        ids, mask = x if isinstance(x, tuple) else (x, None)
        if mask is None:
            mask = (ids != self.pad_id).long() if self.pad_id is not None else torch.ones_like(ids)
        return self.embeddings(input_ids=ids), mask


class BertLayerBlock(nn.Module):
    """One BERT encoder layer as a block: `(hidden_states, mask)` -> `(hidden_states, mask)`."""

    def __init__(self, layer: nn.Module, config: object) -> None:
        super().__init__()
        self.layer = layer
        self.config = config

    def forward(self, act: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Build the 4-D attention mask the way the model does, then run the layer."""
        from transformers.masking_utils import create_bidirectional_mask

        hidden, mask = act
        full_mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=mask != 0)
        out = self.layer(hidden, attention_mask=full_mask)
        return (out[0] if isinstance(out, tuple) else out), mask


class BertHeadBlock(nn.Module):
    """Pooler, dropout and classifier as the head block: `(hidden_states, mask)` -> logits."""

    def __init__(self, pooler: nn.Module, dropout: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.pooler = pooler
        self.dropout = dropout
        self.classifier = classifier

    def forward(self, act: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Pool the first token, then classify."""
        return self.classifier(self.dropout(self.pooler(act[0])))


class RobertaHeadBlock(nn.Module):
    """A classifier over the whole sequence (RoBERTa's: dense + tanh + out_proj on the first token) as the head."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, act: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Classify from the hidden states."""
        return self.classifier(act[0])


class DistilBertHeadBlock(nn.Module):
    """DistilBERT's head: first token, pre_classifier, ReLU, dropout, classifier."""

    def __init__(self, pre_classifier: nn.Module, dropout: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.pre_classifier = pre_classifier
        self.dropout = dropout
        self.classifier = classifier

    def forward(self, act: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Pool the first token, then classify."""
        return self.classifier(self.dropout(torch.relu(self.pre_classifier(act[0][:, 0]))))


class ViTEmbeddingsBlock(nn.Module):
    """ViT patch embeddings (with the class token and positions) as a block: pixels -> hidden states."""

    def __init__(self, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed the pixels at the weights' dtype, as ViTModel does."""
        return self.embeddings(pixels.to(self.embeddings.patch_embeddings.projection.weight.dtype))


class ViTLayerBlock(nn.Module):
    """One ViT encoder layer as a block: hidden states -> hidden states (no padding, full attention)."""

    def __init__(self, layer: nn.Module, config: object) -> None:
        super().__init__()
        self.layer = layer
        self.config = config

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Build the (empty) attention mask the way the model does, then run the layer."""
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=None)
        out = self.layer(hidden, mask)
        return out[0] if isinstance(out, tuple) else out


class ViTHeadBlock(nn.Module):
    """ViT's final layer norm and the classifier on the class token as the head."""

    def __init__(self, layernorm: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.layernorm = layernorm
        self.classifier = classifier

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Normalise, then classify the class token."""
        return self.classifier(self.layernorm(hidden)[:, 0, :])


class GPT2EmbeddingsBlock(nn.Module):
    """GPT-2 token + position embeddings as a block: ids (or `(ids, mask)`) -> `(hidden, mask, last)`.

    `last` (`[B, 1]`, so it caches like any per-sample row) is the index of the token the classifier
    reads: the rightmost one that is not `pad_id` (the last one without a pad id), exactly as
    GPT2ForSequenceClassification chooses it.
    """

    def __init__(self, wte: nn.Module, wpe: nn.Module, drop: nn.Module, pad_id: int | None) -> None:
        super().__init__()
        self.wte, self.wpe, self.drop = wte, wpe, drop
        self.pad_id = pad_id

    def forward(self, x: Activation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed tokens and positions; the mask is the given one or all ones (as the model's default)."""
        ids, mask = x if isinstance(x, tuple) else (x, torch.ones_like(x))
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        hidden = self.drop(self.wte(ids) + self.wpe(positions))
        if self.pad_id is None:
            last = torch.full((ids.shape[0], 1), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
        else:
            steps = torch.arange(ids.shape[1], device=ids.device)
            last = (steps * (ids != self.pad_id).long()).argmax(-1, keepdim=True)
        return hidden, mask, last


class GPT2LayerBlock(nn.Module):
    """One GPT-2 decoder layer as a block: `(hidden, mask, last)` -> `(hidden, mask, last)` under the causal mask."""

    def __init__(self, layer: nn.Module, config: object) -> None:
        super().__init__()
        self.layer = layer
        self.config = config

    def forward(self, act: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Build the causal mask the way the model does, then run the layer."""
        from transformers.masking_utils import create_causal_mask

        hidden, mask, last = act
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        causal = create_causal_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=mask != 0, cache=None, position_ids=positions
        )
        out = self.layer(hidden, None, causal, position_ids=positions)
        return (out[0] if isinstance(out, tuple) else out), mask, last


class GPT2HeadBlock(nn.Module):
    """GPT-2's final layer norm and the score layer on the pooled (last non-padding) token as the head."""

    def __init__(self, ln_f: nn.Module, score: nn.Module) -> None:
        super().__init__()
        self.ln_f = ln_f
        self.score = score

    def forward(self, act: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Normalise, score every token, keep the pooled one."""
        hidden, _, last = act
        logits = self.score(self.ln_f(hidden))
        return logits[torch.arange(logits.shape[0], device=logits.device), last[:, 0].long()]


def _is_bert_classifier(model: nn.Module) -> bool:
    """True for a Hugging Face BERT-style classifier: base with embeddings, encoder.layer, pooler; Linear head."""
    base = getattr(model, "base_model", None)
    config = getattr(model, "config", None)
    return (
        base is not None
        and base is not model
        and isinstance(getattr(base, "embeddings", None), nn.Module)
        and isinstance(getattr(getattr(base, "encoder", None), "layer", None), nn.ModuleList)
        and isinstance(getattr(base, "pooler", None), nn.Module)
        and isinstance(getattr(model, "classifier", None), nn.Linear)
        and isinstance(getattr(model, "dropout", None), nn.Module)
        and not getattr(config, "is_decoder", False)
    )


def bert_blocks(model: nn.Module, pad_id: int | None = None, prefix: str = "") -> list[Block]:
    """Blocks of a HF BERT-style sequence classifier: embeddings, each encoder layer, pooler+classifier head.

    `pad_id` set: the first block derives the attention mask as `ids != pad_id` (for wrappers whose forward
    does so); unset: the mask is all ones unless the input is an `(ids, mask)` tuple, like `model(ids)`.
    """
    if not _is_bert_classifier(model):
        raise ValueError(f"{type(model).__name__} is not a BERT-style sequence classifier; {_HOW_TO}")
    base = model.base_model
    base_name = model.base_model_prefix
    blocks = [Block(f"{prefix}{base_name}.embeddings", BertEmbeddingsBlock(base.embeddings, pad_id))]
    for i, layer in enumerate(base.encoder.layer):
        blocks.append(Block(f"{prefix}{base_name}.encoder.layer.{i}", BertLayerBlock(layer, model.config)))
    blocks.append(Block("head", BertHeadBlock(base.pooler, model.dropout, model.classifier)))
    return blocks


def _is_module(owner: object, *path: str) -> bool:
    """True when ``owner.a.b...`` (along ``path``) exists and is an nn.Module."""
    for name in path:
        owner = getattr(owner, name, None)
    return isinstance(owner, nn.Module)


def _hf_base(model: nn.Module) -> tuple[nn.Module, object, str] | None:
    """The base model, config and block-name prefix of a Hugging Face encoder classifier (None otherwise)."""
    base, config = getattr(model, "base_model", None), getattr(model, "config", None)
    if base is None or base is model or config is None or getattr(config, "is_decoder", False):
        return None
    return base, config, model.base_model_prefix


def _roberta_blocks(model: nn.Module) -> list[Block] | None:
    """RoBERTa-style classifier (RoBERTa, XLM-R, CamemBERT): no pooler, a dense + out_proj head on the sequence."""
    found = _hf_base(model)
    if found is None:
        return None
    base, config, name = found
    classifier = getattr(model, "classifier", None)
    if not (
        _is_module(base, "embeddings")
        and isinstance(getattr(getattr(base, "encoder", None), "layer", None), nn.ModuleList)
        and getattr(base, "pooler", None) is None
        and _is_module(classifier, "dense")
        and _is_module(classifier, "out_proj")
    ):
        return None
    layers = [BertLayerBlock(layer, config) for layer in base.encoder.layer]
    first = BertEmbeddingsBlock(base.embeddings, None)
    return _chain(name, first, "encoder.layer", layers, RobertaHeadBlock(classifier))


def _distilbert_blocks(model: nn.Module) -> list[Block] | None:
    """DistilBERT classifier: embeddings, each `transformer.layer`, pre_classifier + classifier head."""
    found = _hf_base(model)
    if found is None:
        return None
    base, config, name = found
    if not (
        _is_module(base, "embeddings")
        and isinstance(getattr(getattr(base, "transformer", None), "layer", None), nn.ModuleList)
        and all(_is_module(model, n) for n in ("pre_classifier", "dropout", "classifier"))
    ):
        return None
    layers = [BertLayerBlock(layer, config) for layer in base.transformer.layer]
    head = DistilBertHeadBlock(model.pre_classifier, model.dropout, model.classifier)
    return _chain(name, BertEmbeddingsBlock(base.embeddings, None), "transformer.layer", layers, head)


def _vit_blocks(model: nn.Module) -> list[Block] | None:
    """ViT image classifier: patch embeddings, each encoder layer, final norm + classifier on the class token."""
    found = _hf_base(model)
    if found is None:
        return None
    base, config, name = found
    if not (
        _is_module(base, "embeddings", "patch_embeddings")
        and _is_module(base, "layernorm")
        and _is_module(model, "classifier")
        and getattr(base, "pooler", None) is None
    ):
        return None
    where = "layers" if isinstance(getattr(base, "layers", None), nn.ModuleList) else "encoder.layer"
    layers = [ViTLayerBlock(layer, config) for layer in base.get_submodule(where)]
    head = ViTHeadBlock(base.layernorm, model.classifier)
    return _chain(name, ViTEmbeddingsBlock(base.embeddings), where, layers, head)


def _gpt2_blocks(model: nn.Module) -> list[Block] | None:
    """GPT-2 sequence classifier: embeddings, each decoder layer `h.i`, final norm + score on the pooled token."""
    base, config = getattr(model, "base_model", None), getattr(model, "config", None)
    if base is None or base is model or config is None:
        return None
    if not (
        all(_is_module(base, n) for n in ("wte", "wpe", "drop", "ln_f"))
        and isinstance(getattr(base, "h", None), nn.ModuleList)
        and isinstance(getattr(model, "score", None), nn.Linear)
    ):
        return None
    first = GPT2EmbeddingsBlock(base.wte, base.wpe, base.drop, getattr(config, "pad_token_id", None))
    layers = [GPT2LayerBlock(layer, config) for layer in base.h]
    return _chain(model.base_model_prefix, first, "h", layers, GPT2HeadBlock(base.ln_f, model.score))


def _chain(base: str, first: nn.Module, where: str, layers: list[nn.Module], head: nn.Module) -> list[Block]:
    """Embeddings block, one block per layer (named as in the model), then the head."""
    blocks = [Block(f"{base}.embeddings", first)]
    blocks += [Block(f"{base}.{where}.{i}", layer) for i, layer in enumerate(layers)]
    blocks.append(Block("head", head))
    return blocks


def _resnet_blocks(model: nn.Module) -> list[Block] | None:
    """torchvision-style ResNet: stem (conv1, bn1, relu, maxpool), each residual block, head (avgpool, fc)."""
    needed = ("conv1", "bn1", "relu", "maxpool", "layer1", "avgpool", "fc")
    if not all(isinstance(getattr(model, name, None), nn.Module) for name in needed):
        return None
    blocks = [Block("stem", nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool))]
    stage = 1
    while isinstance(getattr(model, f"layer{stage}", None), nn.Sequential):
        for i, residual in enumerate(getattr(model, f"layer{stage}")):
            blocks.append(Block(f"layer{stage}.{i}", residual))
        stage += 1
    known = {*needed, *(f"layer{i}" for i in range(1, stage))}
    if any(name not in known for name, _ in model.named_children()):
        return None  # a module the torchvision forward does not use: the split would not be the model
    blocks.append(Block("head", nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)))
    return blocks


def _features_classifier_blocks(model: nn.Module) -> list[Block] | None:
    """torchvision-style `features` + `classifier` CNN (MobileNetV2/V3, VGG): each feature stage, then the head."""
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Module):
        return None
    extra = {name for name, _ in model.named_children()} - {"features", "avgpool", "classifier"}
    if extra:
        return None
    # torchvision's MobileNetV2 pools functionally with adaptive_avg_pool2d(x, (1, 1)); the others own `avgpool`.
    pool = getattr(model, "avgpool", None)
    pool = nn.AdaptiveAvgPool2d((1, 1)) if pool is None else pool
    blocks = [Block(f"features.{name}", child) for name, child in features.named_children()]
    blocks.append(Block("head", nn.Sequential(pool, nn.Flatten(1), classifier)))
    return blocks


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DistributedDataParallel, DataParallel or torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _explicit_blocks(model: nn.Module, spec: Sequence[str | nn.Module | Block]) -> list[Block]:
    """Blocks from user-given module names, modules or Blocks, in the given order."""
    names = {id(module): name for name, module in model.named_modules()}
    blocks = []
    for i, item in enumerate(spec):
        if isinstance(item, Block):
            blocks.append(item)
        elif isinstance(item, str):
            try:
                blocks.append(Block(item, model.get_submodule(item)))
            except AttributeError:
                raise ValueError(f"blocks[{i}] = {item!r} names no submodule of {type(model).__name__}") from None
        elif isinstance(item, nn.Module):
            blocks.append(Block(names.get(id(item), f"block{i}"), item))
        else:
            raise ValueError(f"blocks[{i}] must be a module name, an nn.Module or a Block, got {type(item).__name__}")
    return blocks


def _auto_blocks(model: nn.Module) -> list[Block]:
    """Blocks by protocol or by recognised architecture, or a ValueError saying how to pass them."""
    custom = getattr(model, "smartfrz_blocks", None)
    if callable(custom):
        return list(custom())
    if isinstance(model, nn.Sequential):
        return [Block(name, child) for name, child in model.named_children()]
    if _is_bert_classifier(model):
        return bert_blocks(model)
    for finder in (
        _roberta_blocks,
        _distilbert_blocks,
        _vit_blocks,
        _gpt2_blocks,
        _resnet_blocks,
        _features_classifier_blocks,
    ):
        blocks = finder(model)
        if blocks is not None:
            return blocks
    raise ValueError(f"cannot split {type(model).__name__} into blocks automatically. {_HOW_TO}")


def _check_partition(model: nn.Module, blocks: Sequence[Block]) -> None:
    """Raise unless there are at least two blocks and each model parameter lies in exactly one of them."""
    if len(blocks) < 2:
        raise ValueError(f"need at least two blocks (freezable ones and the head), got {len(blocks)}. {_HOW_TO}")
    owner: dict[int, str] = {}
    for block in blocks:
        for param in block.module.parameters():
            if id(param) in owner and owner[id(param)] != block.name:
                raise ValueError(
                    f"a parameter is in both block {owner[id(param)]!r} and {block.name!r}; blocks must not overlap"
                )
            owner[id(param)] = block.name
    model_params = {id(p): name for name, p in model.named_parameters()}
    foreign = set(owner) - set(model_params)
    if foreign:
        raise ValueError(f"{len(foreign)} parameter(s) of the blocks do not belong to the model")
    missing = [name for pid, name in model_params.items() if pid not in owner]
    if missing:
        raise ValueError(f"parameters in no block: {missing[:5]}{' ...' if len(missing) > 5 else ''}. {_HOW_TO}")


def discover_blocks(model: nn.Module, blocks: Sequence[str | nn.Module | Block] | None = None) -> list[Block]:
    """The model's blocks in forward order, the head last: explicit `blocks` if given, else discovered."""
    model = _unwrap(model)
    found = _explicit_blocks(model, blocks) if blocks is not None else _auto_blocks(model)
    _check_partition(model, found)
    return found


def layer_block_index(model: nn.Module, blocks: Sequence[Block]) -> dict[str, int]:
    """Map each layer name of `find_layers(model)` to the index of the block that contains it."""
    where: dict[int, int] = {}
    for index, block in enumerate(blocks):
        for module in block.module.modules():
            where.setdefault(id(module), index)
    mapping = {}
    for name, layer in find_layers(model):
        if id(layer) not in where:
            raise ValueError(f"layer {name!r} is in no block; every layer must belong to one. {_HOW_TO}")
        mapping[name] = where[id(layer)]
    return mapping
