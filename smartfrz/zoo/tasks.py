"""The built-in tasks: from-scratch CNNs, MLPs and a transformer; fine-tuning MobileNetV2, MiniLM-L6 and zoo models.

Recipes (epochs, batch size, learning rates) were chosen on a busy 2-core CPU (one torch thread) so that
a run at `default_max_train` samples reaches a real accuracy in about 1-5 minutes; `smoke_max_train`
keeps a run to seconds. Learning rates are constant: with batch norm, validation accuracy swings by
several points between epochs, so compare runs on several seeds.
"""

from __future__ import annotations

import functools

from torch import nn

from smartfrz.zoo import data, models, pretrained, text, transfer
from smartfrz.zoo.registry import DataOptions, Task, TaskData, register_task

BBC_MAX_LEN = 128
MINILM_MAX_LEN = 64  # shorter sequences keep MiniLM fine-tuning affordable on CPU; title + lead identify the topic


def _fmnist_28(opts: DataOptions) -> TaskData:
    """Fashion-MNIST, 1x28x28."""
    return data.load_fashion_mnist(opts)


def _fmnist_64_rgb(opts: DataOptions) -> TaskData:
    """Fashion-MNIST resized to 3x64x64 for ImageNet models."""
    return data.load_fashion_mnist(opts, size=64, channels=3)


def _fmnist_32_rgb(opts: DataOptions) -> TaskData:
    """Fashion-MNIST resized to 3x32x32: ImageNet models at a quarter of the 64x64 input's cost per step."""
    return data.load_fashion_mnist(opts, size=32, channels=3)


def _text_transformer(num_classes: int) -> nn.Module:
    """The small transformer over the MiniLM vocabulary."""
    return models.text_transformer(text.vocab_size(), num_classes, max_len=BBC_MAX_LEN)


def _digits_images(opts: DataOptions) -> TaskData:
    """scikit-learn's digits as 1x8x8 images."""
    return data.load_digits(opts, image=True)


CORPUS_TASKS = (
    Task(
        name="fmnist_plaincnn",
        family="plaincnn",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.plain_cnn,
        load_data=_fmnist_28,
        epochs=4,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.01, 0.02, 0.04),
        weight_decay=5e-4,
        smoke_max_train=512,
        default_max_train=2000,
    ),
    Task(
        name="digits_plaincnn",
        family="plaincnn",
        scenario="scratch",
        dataset="digits_8x8",
        build_model=functools.partial(models.plain_cnn, widths=(16, 32)),
        load_data=_digits_images,
        epochs=15,
        batch_size=64,
        optimizer="adam",
        lrs=(5e-4, 1e-3, 2e-3),
        weight_decay=0.0,
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="fmnist_lenet",
        family="lenet",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.lenet,
        load_data=_fmnist_28,
        epochs=5,
        batch_size=64,
        optimizer="adam",
        lrs=(5e-4, 1e-3, 2e-3),
        weight_decay=0.0,
        smoke_max_train=512,
        default_max_train=2000,
    ),
    Task(
        name="fmnist_mixer",
        family="mixer",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.mlp_mixer,
        load_data=_fmnist_28,
        epochs=4,
        batch_size=64,
        optimizer="adamw",
        lrs=(1e-3, 2e-3, 4e-3),
        weight_decay=5e-2,
        smoke_max_train=512,
        default_max_train=2000,
    ),
    Task(
        name="fmnist_vit",
        family="vit",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.vit,
        load_data=_fmnist_28,
        epochs=4,
        batch_size=64,
        optimizer="adamw",
        lrs=(5e-4, 1e-3, 2e-3),
        weight_decay=5e-2,
        smoke_max_train=512,
        default_max_train=2000,
    ),
    Task(
        name="digits_vit",
        family="vit",
        scenario="scratch",
        dataset="digits_8x8",
        build_model=functools.partial(models.vit, image=8, patch=2, dim=48, depth=3),
        load_data=_digits_images,
        epochs=15,
        batch_size=64,
        optimizer="adamw",
        lrs=(1e-3, 2e-3, 4e-3),
        weight_decay=5e-2,
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="mnist1d_conv1d",
        family="conv1d",
        scenario="scratch",
        dataset="mnist1d",
        build_model=models.conv1d_net,
        load_data=data.load_mnist1d,
        epochs=15,
        batch_size=100,
        optimizer="sgd",
        lrs=(0.01, 0.03, 0.1),
        weight_decay=5e-4,
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="digits_mlp_adam",
        family="mlp",
        scenario="scratch",
        dataset="digits",
        build_model=functools.partial(models.mlp, 64, hidden=(128, 128)),
        load_data=data.load_digits,
        epochs=20,
        batch_size=64,
        optimizer="adam",
        lrs=(5e-4, 1e-3, 2e-3),
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="digits_resnet",
        family="resnet",
        scenario="scratch",
        dataset="digits_8x8",
        build_model=models.SmallResNet,
        load_data=_digits_images,
        epochs=15,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.02, 0.05, 0.1),
        weight_decay=5e-4,
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="digits_vgg",
        family="vgg",
        scenario="scratch",
        dataset="digits_8x8",
        build_model=functools.partial(models.vgg_cnn, widths=(16, 32), hidden=64),
        load_data=_digits_images,
        epochs=15,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.01, 0.02, 0.05),
        weight_decay=5e-4,
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="digits_mixer",
        family="mixer",
        scenario="scratch",
        dataset="digits_8x8",
        build_model=functools.partial(models.mlp_mixer, image=8, patch=2, dim=48, depth=3),
        load_data=_digits_images,
        epochs=15,
        batch_size=64,
        optimizer="adamw",
        lrs=(1e-3, 2e-3, 4e-3),
        weight_decay=5e-2,
        smoke_max_train=512,
        default_max_train=None,
    ),
)
"""Tasks added for a diverse trace corpus: more families (plain and LeNet CNNs, MLP-Mixer, ViT, 1-D CNN),
second datasets for the ResNet, VGG, Mixer and ViT families, and optimizers (Adam), each small enough to train
in about a minute on one CPU thread."""


BUILTIN_TASKS = (
    Task(
        name="fmnist_resnet",
        family="resnet",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.SmallResNet,
        load_data=_fmnist_28,
        epochs=8,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.01, 0.02, 0.05),
        weight_decay=5e-4,
        smoke_max_train=512,
        default_max_train=5000,
    ),
    Task(
        name="fmnist_vgg",
        family="vgg",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.vgg_cnn,
        load_data=_fmnist_28,
        epochs=4,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.01, 0.02, 0.05),
        weight_decay=5e-4,
        smoke_max_train=512,
        default_max_train=5000,
    ),
    Task(
        name="fmnist_mobilenet",
        family="mobilenet",
        scenario="scratch",
        dataset="fashion_mnist",
        build_model=models.SmallMobileNetV2,
        load_data=_fmnist_28,
        epochs=4,
        batch_size=128,
        optimizer="adamw",
        lrs=(1e-3, 2e-3, 4e-3),
        weight_decay=1e-4,
        smoke_max_train=512,
        default_max_train=5000,
    ),
    Task(
        name="digits_mlp",
        family="mlp",
        scenario="scratch",
        dataset="digits",
        build_model=functools.partial(models.mlp, 64),
        load_data=data.load_digits,
        epochs=30,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.01, 0.03, 0.1),
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="mnist1d_mlp",
        family="mlp",
        scenario="scratch",
        dataset="mnist1d",
        build_model=functools.partial(models.mlp, 40),
        load_data=data.load_mnist1d,
        epochs=40,
        batch_size=100,
        optimizer="adamw",
        lrs=(1e-3, 2e-3, 5e-3),
        weight_decay=1e-4,
        smoke_max_train=512,
        default_max_train=None,
    ),
    Task(
        name="bbc_transformer",
        family="transformer",
        scenario="scratch",
        dataset="bbc_news",
        build_model=_text_transformer,
        load_data=functools.partial(text.load_bbc_news, max_len=BBC_MAX_LEN),
        epochs=8,
        batch_size=32,
        optimizer="adamw",
        lrs=(5e-4, 1e-3, 2e-3),
        weight_decay=1e-2,
        smoke_max_train=256,
        default_max_train=None,
    ),
    Task(
        name="fmnist_mobilenetv2_ft",
        family="mobilenet",
        scenario="finetune",
        dataset="fashion_mnist_64rgb",
        build_model=pretrained.mobilenet_v2_imagenet,
        load_data=_fmnist_64_rgb,
        epochs=2,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.005, 0.01, 0.02),
        weight_decay=4e-5,
        smoke_max_train=256,
        default_max_train=2000,
    ),
    Task(  # fine-tuning long enough to plateau (5 epochs), so the corpus sees where a pretrained net settles
        name="fmnist32_mobilenetv2_ft",
        family="mobilenet",
        scenario="finetune",
        dataset="fashion_mnist_32rgb",
        build_model=pretrained.mobilenet_v2_imagenet,
        load_data=_fmnist_32_rgb,
        epochs=5,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.005, 0.01, 0.02),
        weight_decay=4e-5,
        smoke_max_train=256,
        default_max_train=2000,
    ),
    Task(
        name="bbc_minilm_ft",
        family="bert",
        scenario="finetune",
        dataset="bbc_news",
        build_model=pretrained.MiniLMClassifier,
        load_data=functools.partial(text.load_bbc_news, max_len=MINILM_MAX_LEN),
        epochs=2,
        batch_size=16,
        optimizer="adamw",
        lrs=(5e-5, 1e-4, 2e-4),
        weight_decay=1e-2,
        smoke_max_train=64,
        default_max_train=600,
    ),
)


def _digits_28(opts: DataOptions) -> TaskData:
    """scikit-learn's digits as 1x28x28 images normalised like Fashion-MNIST (for models pretrained on it)."""
    return data.load_digits(opts, image=True, size=28)


def _fine_tune(source: str, family: str, optimizer: str, lrs: tuple[float, ...], weight_decay: float) -> Task:
    """Fine-tuning on digits of ``source``'s model pretrained on Fashion-MNIST by the zoo (smartfrz.zoo.transfer)."""
    return Task(
        name=f"digits28_{family}_ft",
        family=family,
        scenario="finetune",
        dataset="digits_28",
        build_model=functools.partial(transfer.pretrained_on, source),
        load_data=_digits_28,
        epochs=8,
        batch_size=64,
        optimizer=optimizer,
        lrs=lrs,
        weight_decay=weight_decay,
        smoke_max_train=256,
        default_max_train=None,
        prepare=functools.partial(transfer.prepare_source, source),
    )


FINETUNE_TASKS = (
    _fine_tune("fmnist_resnet", "resnet", "sgd", (0.005, 0.01, 0.02), 5e-4),
    _fine_tune("fmnist_vgg", "vgg", "sgd", (0.005, 0.01, 0.02), 5e-4),
    _fine_tune("fmnist_plaincnn", "plaincnn", "sgd", (0.005, 0.01, 0.02), 5e-4),
    _fine_tune("fmnist_lenet", "lenet", "adam", (2.5e-4, 5e-4, 1e-3), 0.0),
    _fine_tune("fmnist_mixer", "mixer", "adamw", (5e-4, 1e-3, 2e-3), 5e-2),
    _fine_tune("fmnist_vit", "vit", "adamw", (5e-4, 1e-3, 2e-3), 5e-2),
)
"""Fine-tuning in six more families: each model pretrained on Fashion-MNIST (the zoo trains and caches it, 5-40 s
each on one thread), its classifier replaced, then trained on digits upsampled to 28x28. At the middle learning
rate, 8 epochs at a constant rate reach 95.5-98.9% (ResNet 92.8% at 0.005 and 96.7% at 0.02). The corpus had
fine-tuning only in the MobileNet family (ImageNet MobileNetV2)."""


def register_builtin_tasks() -> None:
    """Register the built-in tasks (once; called on import of smartfrz.zoo)."""
    for task in (*BUILTIN_TASKS, *CORPUS_TASKS, *FINETUNE_TASKS):
        register_task(task)
