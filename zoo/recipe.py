"""How an entry is trained: the recipe, as data (nanoGPT-style config dataclass).

Every field carries its unit. Reports 000, 001, 002 and 004 each use a different early-stopping
rule, so the rule is data too (`EarlyStopping`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd", "muon")
SCHEDULERS = ("none", "exponential", "cosine", "onecycle")
NORMALIZATIONS = ("dataset", "imagenet", "half", "none")
PRECISIONS = ("auto", "fp32", "bf16")
TTA_MODES = ("none", "flip", "flip+translate")


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when `monitor` has not improved by `min_delta` for `patience` evaluations."""

    monitor: str = "val_loss"  # "val_loss" (lower is better) or "val_acc" (higher is better)
    patience: int = 5  # evaluations without improvement before stopping
    min_delta: float = 0.0  # smallest change that counts as an improvement, in the monitor's unit
    max_train_val_gap: float | None = None  # stop if train acc - val acc exceeds this (fraction, report 004)


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Defaults are a plain Adam run; entries override what their report states."""

    optimizer: str = "adam"  # "adam", "adamw", "sgd" (always Nesterov) or "muon" (orthogonalised filters + SGD)
    lr: float = 1e-3  # peak learning rate, per step
    momentum: float = 0.9  # SGD momentum (ignored by Adam/AdamW, whose betas stay at defaults)
    weight_decay: float = 0.0  # L2 (Adam, SGD) or decoupled (AdamW) decay, per step
    batch_size: int = 128  # images per optimizer step
    max_epochs: int = 100  # passes over the training split, at most
    min_epochs: int = 0  # early stopping may not stop before this many epochs
    early_stopping: EarlyStopping | None = None  # None: always train max_epochs
    eval_every: int = 1  # epochs between validation passes (report 002 validated every 5)
    scheduler: str = "none"  # "none", "exponential", "cosine" or "onecycle"
    gamma: float = 0.9  # exponential decay factor per epoch (scheduler="exponential")
    warmup_epochs: float = 0.0  # linear warm-up length, in epochs (cosine / onecycle)
    label_smoothing: float = 0.0  # cross-entropy label smoothing, fraction
    augment: str = "norm"  # augmentation policy name (benchmark.augment.POLICIES)
    augment_prob: float = 1.0  # probability that the policy is applied to an image (report 002)
    normalize: str = "dataset"  # "dataset" (train-split mean/std), "imagenet", "half" (0.5/0.5), "none"
    input_size: int = 32  # side of the square image the network sees, in pixels (fine-tunes upsample)
    precision: str = "auto"  # "auto" (the machine's probe decides: benchmark.fastpath), "bf16" autocast or "fp32"
    channels_last: bool | None = None  # NHWC memory layout for convolutions; None: the probe decides
    compile: bool = False  # torch.compile the model (warm-up excluded from timings)
    ema_decay: float | None = None  # exponential moving average of weights, per step; None: off
    lookahead: bool = False  # airbench-style lookahead: slow weights every 5 steps, averaging more as training ends
    tta: str = "none"  # test-time augmentation at evaluation: "none", "flip" or "flip+translate"
    val_fraction: float = 0.2  # share of the train split held out to select the epoch; 0: train on all, keep the last

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {self.tta!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.val_fraction == 0.0 and self.early_stopping is not None:
            raise ValueError("early stopping needs a validation split: val_fraction must be > 0")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (`early_stopping` may be given as a dict)."""
        if isinstance(changes.get("early_stopping"), dict):
            changes["early_stopping"] = EarlyStopping(**changes["early_stopping"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sha256(self) -> str:
        """Hash of the recipe's fields: how a record names the entry's own recipe without copying it."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if isinstance(data.get("early_stopping"), dict):
            data["early_stopping"] = EarlyStopping(**data["early_stopping"])
        return cls(**data)


RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))
