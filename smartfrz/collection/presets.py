"""Named grids: ``smoke`` (tests, README), ``default`` (the shipped predictor's data, CPU) and ``full`` (GPU)."""

from __future__ import annotations

from smartfrz.collection.grid import Preset

_SCRATCH_CNNS = ("fmnist_resnet", "fmnist_vgg", "fmnist_mobilenet")
_MLPS = ("digits_mlp", "mnist1d_mlp")

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
