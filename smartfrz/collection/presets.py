"""Named grids: ``smoke`` (tests, README), ``default`` (the shipped predictor's data, CPU) and ``full`` (GPU)."""

from __future__ import annotations

from smartfrz.collection.grid import Preset

_SCRATCH_CNNS = ("fmnist_resnet", "fmnist_vgg", "fmnist_mobilenet")
_MLPS = ("digits_mlp", "mnist1d_mlp")
_CORPUS_NEW = (
    "fmnist_plaincnn",
    "digits_plaincnn",
    "fmnist_lenet",
    "fmnist_mixer",
    "fmnist_vit",
    "digits_vit",
    "mnist1d_conv1d",
    "digits_mlp_adam",
    "digits_resnet",
    "digits_vgg",
    "digits_mixer",
)
_IMAGENET_FINETUNES = ("fmnist_mobilenetv2_ft", "fmnist32_mobilenetv2_ft")
"""Fine-tuning of torchvision's ImageNet MobileNetV2 on Fashion-MNIST: 26 steps at 64x64, 157 at 32x32."""
_ZOO_FINETUNES = tuple(f"digits28_{f}_ft" for f in ("resnet", "vgg", "plaincnn", "lenet", "mixer", "vit"))
"""Fine-tuning of models the zoo pretrains on Fashion-MNIST (smartfrz.zoo.transfer), on digits at 28x28."""
RECIPES = (("constant", 0.0), ("cosine", 0.05), ("linear", 0.0), ("step", 0.0), ("cosine", 0.0))
"""Learning-rate recipes of the corpus: (schedule, warm-up fraction)."""

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        description="2 tiny from-scratch runs (MLP on sklearn digits, VGG-style CNN on Fashion-MNIST), 1-2 min",
        tasks=("digits_mlp", "fmnist_vgg"),
        data_size="smoke",
        seeds=(0,),
        lr_indices=(2,),
        max_val=512,
        epochs=None,
        snapshots=12,
        probe_size=64,
        val_snapshot_size=128,
    ),
    # Sized from per-step and per-snapshot costs measured on the shared 2-core machine (1 thread per run):
    # about 70 minutes there. MiniLM fine-tuning costs ~12 s per step and ~70 s per 128-sample probe on
    # that machine, so it is left to the `full` preset (GPU).
    "default": Preset(
        name="default",
        description=(
            "7 tasks (ResNet/VGG/MobileNet CNNs, 2 MLPs, a text transformer from scratch; MobileNetV2 fine-tuning) "
            "x 3 learning rates, ~40 snapshots per run; about 70 min on 2 CPU cores"
        ),
        tasks=(*_SCRATCH_CNNS, *_MLPS, "bbc_transformer", "fmnist_mobilenetv2_ft"),
        data_size="default",
        seeds=(0,),
        lr_indices=(0, 1, 2),
        max_val=1000,
        epochs=None,
        snapshots=40,
        probe_size=128,
        val_snapshot_size=128,
        overrides={
            "fmnist_resnet": {"max_train": 3000},
            "fmnist_vgg": {"max_train": 3000},
            "fmnist_mobilenet": {"max_train": 2000},
            "mnist1d_mlp": {"max_train": 2000},
            "bbc_transformer": {"max_train": 600, "epochs": 6, "probe_size": 64, "val_snapshot_size": 64},
            "fmnist_mobilenetv2_ft": {"max_train": 1200, "probe_size": 64, "val_snapshot_size": 64},
        },
    ),
    # A diverse corpus for the predictor: 10 families, 3 optimizers, 5 learning-rate recipes, one lr per
    # recipe (cycled through the task's three). Sized to about a minute per run on one CPU thread.
    "corpus": Preset(
        name="corpus",
        description=(
            "25 tasks over 10 families (plain/LeNet/ResNet/VGG/MobileNet CNNs, MLPs, MLP-Mixer, ViT, 1-D CNN, "
            "text transformer; fine-tuning of ImageNet MobileNetV2 (a short and a 5-epoch task) and of six zoo "
            "models pretrained on Fashion-MNIST, on digits) x 5 lr recipes (constant, cosine with/without "
            "warm-up, linear, step) x 2 seeds: 250 runs, ~1 min each (MobileNetV2 ~3 min; each pretraining "
            "5-40 s, cached)"
        ),
        tasks=(*_SCRATCH_CNNS, *_MLPS, "bbc_transformer", *_CORPUS_NEW, *_IMAGENET_FINETUNES, *_ZOO_FINETUNES),
        data_size="default",
        seeds=(100, 101),  # seeds no other preset uses, so run ids stay unique across trace files
        lr_indices=(0, 1, 2),
        max_val=1000,
        epochs=None,
        snapshots=40,
        probe_size=128,
        val_snapshot_size=128,
        recipes=RECIPES,
        cycle_lrs=True,
        overrides={
            "fmnist_resnet": {"max_train": 3000, "epochs": 6},
            "fmnist_vgg": {"max_train": 3000, "epochs": 6},
            "fmnist_mobilenet": {"max_train": 3000, "epochs": 6},
            "fmnist_plaincnn": {"max_train": 3000, "epochs": 6},
            "fmnist_lenet": {"max_train": 3000, "epochs": 8},
            "fmnist_mixer": {"max_train": 3000, "epochs": 8},
            "fmnist_vit": {"max_train": 3000, "epochs": 8},
            "bbc_transformer": {"max_train": 600, "epochs": 6, "probe_size": 64, "val_snapshot_size": 64},
            "fmnist_mobilenetv2_ft": {"max_train": 800, "probe_size": 64, "val_snapshot_size": 64},
            "fmnist32_mobilenetv2_ft": {"probe_size": 64, "val_snapshot_size": 64},
        },
    ),
    "full": Preset(
        name="full",
        description=(
            "all 8 tasks incl. MiniLM fine-tuning at the zoo's default sizes x 3 learning rates x 2 seeds, "
            "60 snapshots per run; for --device cuda"
        ),
        tasks=(*_SCRATCH_CNNS, *_MLPS, "bbc_transformer", "fmnist_mobilenetv2_ft", "bbc_minilm_ft"),
        data_size="default",
        seeds=(0, 1),
        lr_indices=(0, 1, 2),
        max_val=2000,
        epochs=None,
        snapshots=60,
        probe_size=128,
        val_snapshot_size=256,
    ),
}
