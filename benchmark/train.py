"""The training engine: `fit` trains on the train split and selects the epoch on the validation split.

The test split never enters this module. Every epoch ends with a checkpoint (model, optimizer,
schedule, EMA, early-stopping state, history and the RNG state), and batches and augmentation are a
pure function of (seed, epoch), so a run killed mid-way and resumed ends bit-identical to one that
was never interrupted.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.optim import Muon
from zoo.recipe import EarlyStopping, Recipe


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, epoch: int):
        super().__init__(f"the training loss became NaN or infinite in epoch {epoch}")
        self.epoch = epoch


@dataclass
class FitResult:
    model: nn.Module  # with the selected (best-on-validation) weights loaded, eval mode
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    stop_reason: str
    train_seconds: float
    fast_path: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- pieces


def build_optimizer(model: nn.Module, recipe: Recipe) -> tuple[torch.optim.Optimizer, bool]:
    """The recipe's optimizer, fused where this torch supports it, else foreach (no per-tensor loop).

    A model may define `param_groups(recipe) -> list[dict]` (e.g. a larger learning rate for BatchNorm
    biases); groups carry their own "lr"/"weight_decay", which the schedule then scales alike. "muon"
    (benchmark.optim) needs such groups, with the filters to orthogonalise marked `orthogonal=True`.
    """
    params: Any = (model.param_groups(recipe) if hasattr(model, "param_groups")
                   else [p for p in model.parameters() if p.requires_grad])
    if recipe.optimizer == "muon":
        if not any(isinstance(g, dict) and g.get("orthogonal") for g in params):
            raise ValueError(f"optimizer 'muon' needs a model whose param_groups(recipe) marks the filters to "
                             f"orthogonalise (orthogonal=True); {type(model).__name__} marks none")
        return Muon(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay), False
    kinds = {
        "adam": (torch.optim.Adam, {}),
        "adamw": (torch.optim.AdamW, {}),
        "sgd": (torch.optim.SGD, {"momentum": recipe.momentum, "nesterov": True}),
    }
    cls, extra = kinds[recipe.optimizer]
    try:
        return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True, **extra), True
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=True, **extra), False


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    epoch = step // max(steps_per_epoch, 1)
    if recipe.scheduler == "none":
        return 1.0
    if recipe.scheduler == "exponential":  # torch's ExponentialLR stepped once per epoch (report 002)
        return recipe.gamma**epoch
    total = max(recipe.max_epochs * steps_per_epoch, 1)
    warm = int(recipe.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    if recipe.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return max(1.0 - progress, 0.0)  # "onecycle": linear up, linear down to zero


class EarlyStopper:
    """Applies an `EarlyStopping` rule to successive validation results."""

    def __init__(self, rule: EarlyStopping | None, min_epochs: int):
        self.rule, self.min_epochs = rule, min_epochs
        self.monitor = rule.monitor if rule else "val_acc"
        self.best: float | None = None
        self.bad_evals = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        delta = self.rule.min_delta if self.rule else 0.0
        return value < self.best - delta if self.monitor == "val_loss" else value > self.best + delta

    def update(self, epoch: int, row: dict[str, float]) -> tuple[bool, str]:
        """Record one evaluation; returns (improved, stop reason or "")."""
        value = row[self.monitor]
        improved = self._better(value)
        if improved:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        if self.rule is None or epoch < self.min_epochs:
            return improved, ""
        gap = self.rule.max_train_val_gap
        if gap is not None and row["train_acc"] - row["val_acc"] > gap:
            return improved, f"train accuracy exceeded validation accuracy by more than {gap:.0%}"
        if self.bad_evals >= self.rule.patience:
            return improved, f"{self.monitor} did not improve for {self.rule.patience} evaluations"
        return improved, ""

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals = state["best"], state["bad_evals"]


def autocast(device: torch.device, precision: str) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits averaged over test-time views: the image, its mirror, and (flip+translate) the mirror
    pair shifted one pixel each way with reflect padding, as the fast-training literature does."""
    if tta == "none":
        return model(x)
    logits = 0.5 * (model(x) + model(x.flip(-1)))
    if tta == "flip":
        return logits
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :-2, :-2], padded[..., 2:, 2:]
    shifted = 0.25 * sum(model(v) for v in (up_left, up_left.flip(-1), down_right, down_right.flip(-1)))
    return 0.5 * logits + 0.5 * shifted


@torch.inference_mode()
def predict(model: nn.Module, loader: Any, device: torch.device, precision: str = "fp32",
            tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels for every image of a non-shuffled loader."""
    model.eval()
    outs, labels = [], []
    for x, y in loader.epoch(0):
        with autocast(device, precision):
            logits = tta_logits(model, x, tta)
        outs.append(logits.float())
        labels.append(y)
    return torch.cat(outs).cpu(), torch.cat(labels).cpu()


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class _Ema:
    """Exponential moving average of parameters (buffers copied), updated with foreach ops."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


class _Lookahead:
    """Lookahead as airbench94 uses it (Zhang et al. 2019; hlb-CIFAR10): from 30% of training on, every
    `every` steps the slow copy of the weights and BatchNorm statistics moves toward the fast one by 1 - rho
    and the fast one restarts from it; rho = 0.95**every * (progress)**3 grows from 0 to 0.77, so training
    moves freely at first and averages strongly at the end. Each epoch ends with fast = slow."""

    def __init__(self, max_epochs: int, steps_per_epoch: int, every: int = 5, base: float = 0.95,
                 power: float = 3.0, start: float = 0.3):
        self.total = max(max_epochs * steps_per_epoch, 1)
        self.start_step = int(start * max_epochs) * steps_per_epoch
        self.every, self.base, self.power = every, base, power
        self.slow: list[torch.Tensor] | None = None

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [t for t in model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def step(self, model: nn.Module, step: int) -> None:
        """After optimizer step number `step` (1-based, counted over the whole run)."""
        if step < self.start_step or step % self.every:
            return
        fast = self._tensors(model)
        if self.slow is None:
            self.slow = [t.clone() for t in fast]
            return
        rho = self.base**self.every * (step / self.total) ** self.power
        torch._foreach_lerp_(self.slow, fast, 1.0 - rho)
        torch._foreach_copy_(fast, self.slow)

    @torch.no_grad()
    def end_epoch(self, model: nn.Module) -> None:
        if self.slow is not None:
            torch._foreach_copy_(self._tensors(model), self.slow)

    def state_dict(self) -> list[torch.Tensor] | None:
        return self.slow

    def load_state_dict(self, slow: list[torch.Tensor] | None) -> None:
        self.slow = slow


# ----------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    recipe: Recipe,
    train: Any,
    val: Any,
    *,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    stop_after_epoch: int | None = None,
) -> FitResult:
    """Train `model` by `recipe` on the `train` loader, selecting the best epoch on `val`.

    `val` may be None (a recipe with val_fraction 0 trains on the whole train split): no validation
    passes, no early stopping, and the last epoch's weights are kept.

    Loaders are `benchmark.loader.DeviceLoader`s (train shuffled). `checkpoint`: resume from it if it
    exists, and rewrite it after every epoch. `stop_after_epoch` ends the call after that epoch as if
    the process had been killed there (used by the resume tests).
    """
    if val is None and recipe.early_stopping is not None:
        raise ValueError("early stopping needs a validation split (val is None)")
    device = torch.device(device)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer, fused = build_optimizer(model, recipe)
    steps = len(train)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(recipe, s, steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    stopper = EarlyStopper(recipe.early_stopping, recipe.min_epochs)
    ema = _Ema(model, recipe.ema_decay) if recipe.ema_decay else None
    lookahead = _Lookahead(recipe.max_epochs, steps) if recipe.lookahead else None
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, start_epoch, stop_reason = 0, 0, ""

    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        stopper.load_state_dict(state["stopper"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"])
        if lookahead is not None:
            lookahead.load_state_dict(state["lookahead"])
        history, best_state, best_epoch = state["history"], state["best_state"], state["best_epoch"]
        stop_reason, start_epoch = state["stop_reason"], state["epoch"]
        torch.set_rng_state(state["rng"])

    step_model = torch.compile(model) if recipe.compile else model
    if recipe.compile and start_epoch < recipe.max_epochs and not stop_reason:
        _compile_warmup(step_model, model, train, criterion, device, recipe.precision)

    for epoch in range(start_epoch + 1, recipe.max_epochs + 1):
        if stop_reason:
            break
        if hasattr(model, "start_epoch"):  # a model's own per-epoch schedule (e.g. freezing a layer after n epochs)
            model.start_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for x, y in train.epoch(epoch):
            with autocast(device, recipe.precision):
                out = step_model(x)
                loss = criterion(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if lookahead is not None:
                lookahead.step(model, schedule.last_epoch)  # LambdaLR counts steps in `last_epoch`
            if ema is not None:
                ema.update(model)
            # accumulate on the device: no host sync inside the step
            loss_sum += loss.detach().float() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(y)
        if lookahead is not None:
            lookahead.end_epoch(model)
        train_loss = loss_sum.item() / seen
        train_s = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise TrainingDiverged(epoch)

        row: dict[str, Any] = {
            "epoch": epoch, "train_loss": train_loss, "train_acc": correct.item() / seen,
            "lr": optimizer.param_groups[0]["lr"], "seconds": train_s, "images_per_s": seen / train_s,
        }
        if val is not None and (epoch % recipe.eval_every == 0 or epoch == recipe.max_epochs):
            eval_model = ema.model if ema is not None else model
            logits, labels = predict(eval_model, val, device, recipe.precision)
            row["val_loss"] = nn.functional.cross_entropy(logits, labels).item()
            row["val_acc"] = (logits.argmax(1) == labels).float().mean().item()
            improved, stop_reason = stopper.update(epoch, row)
            if improved:
                best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if checkpoint is not None:
            _save_atomic({
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "stopper": stopper.state_dict(),
                "ema": ema.model.state_dict() if ema is not None else None,
                "lookahead": lookahead.state_dict() if lookahead is not None else None, "history": history,
                "best_state": best_state, "best_epoch": best_epoch, "stop_reason": stop_reason,
                "rng": torch.get_rng_state(),
            }, checkpoint)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch} on request")

    if val is None:
        best_epoch = history[-1]["epoch"] if history else 0  # no validation: the last epoch is the result
    final = ema.model if ema is not None else model
    if best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    return FitResult(
        model=final, history=history, best_epoch=best_epoch, epochs_run=len(history),
        stopped_early=bool(stop_reason), stop_reason=stop_reason or "reached max_epochs",
        train_seconds=sum(r["seconds"] for r in history),
        fast_path={"device_resident": True, "bf16": recipe.precision == "bf16",
                   "channels_last": recipe.channels_last, "compile": recipe.compile, "fused_optimizer": fused},
    )


def _compile_warmup(step_model: nn.Module, model: nn.Module, train: Any, criterion: nn.Module,
                    device: torch.device, precision: str) -> None:
    """Trigger compilation outside the timed epochs, leaving weights, buffers and RNG untouched."""
    saved, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
    model.train()
    x, y = next(iter(train.epoch(0)))
    with autocast(device, precision):
        criterion(step_model(x), y).backward()
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    torch.set_rng_state(rng)
