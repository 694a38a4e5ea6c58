"""The training engine: `fit` trains on the train split and selects the epoch on the validation split.

The test split never enters this module (test evaluation lives in `benchmark.evaluate`). `fit` is a short
loop over three pieces, `train_epoch`, `validate` and `save_checkpoint`, around one `TrainState`: its
`state_dict()` is exactly what a checkpoint holds (model, optimizer, schedule, EMA, lookahead, early-stopping
state, history, the fast-path choice and the RNG state), in plain types and tensors only, so checkpoints
load with `weights_only=True` and a crafted one cannot run code. Batches and augmentation are a pure function
of (seed, epoch), so a run killed mid-way and resumed ends bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.attention import fp32_attention
from benchmark.convgrad import unfold_conv_grads
from benchmark.cpumemory import keep_freed_memory
from benchmark.dropout import fast_dropout
from benchmark.fastpath import FastPath, autocast, choose
from benchmark.optim import Adam, AdamW, Muon
from zoo.recipe import EarlyStopping, Recipe

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, epoch: int):
        super().__init__(f"the training loss became NaN or infinite in epoch {epoch}")
        self.epoch = epoch


class RunPaused(Exception):
    """`fit` stopped at its deadline after a finished epoch; its checkpoint resumes it exactly."""

    def __init__(self, epoch: int):
        super().__init__(f"paused after epoch {epoch} at the time budget; run the bench again to resume it")
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
        "adam": (Adam, {}),
        "adamw": (AdamW, {}),
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


# ----------------------------------------------------------------------------- state and checkpoints


class TrainState:
    """Everything `fit` carries from epoch to epoch. `state_dict()` is what a checkpoint holds; its keys are
    written here once, for saving and loading alike."""

    def __init__(self, model: nn.Module, recipe: Recipe, steps_per_epoch: int, fast: FastPath):
        self.model, self.fast = model, fast
        self.optimizer, self.fused = build_optimizer(model, recipe)
        self.fast_dropout = False  # dropout masks drawn by benchmark.dropout (set by `fit`)
        self.memory_kept = False  # glibc keeps freed blocks for reuse (benchmark.cpumemory; set by `fit`)
        self.fp32_attention = False  # fused attention in fp32 under bf16 autocast (benchmark.attention)
        self.unfolded_convs = 0  # convolutions whose weight gradient went by unfold (benchmark.convgrad)
        self.matmul_convs = 0  # one-pixel convolutions computed as one matmul (benchmark.convgrad)
        self.winograd_convs = 0  # wide 3x3 convolutions computed by Winograd (benchmark.winograd)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(recipe, s, steps_per_epoch))
        self.stopper = EarlyStopper(recipe.early_stopping, recipe.min_epochs)
        self.ema = _Ema(model, recipe.ema_decay) if recipe.ema_decay else None
        self.lookahead = _Lookahead(recipe.max_epochs, steps_per_epoch) if recipe.lookahead else None
        self.epoch, self.best_epoch, self.stop_reason = 0, 0, ""
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and kept: the EMA copy when the recipe averages."""
        return self.ema.model if self.ema is not None else self.model

    def _parts(self) -> dict[str, Any]:  # objects with their own state_dict / load_state_dict
        return {"model": self.model, "optimizer": self.optimizer, "schedule": self.schedule,
                "stopper": self.stopper, "ema": self.ema.model if self.ema else None, "lookahead": self.lookahead}

    def state_dict(self) -> dict[str, Any]:
        return {**{k: (v.state_dict() if v is not None else None) for k, v in self._parts().items()},
                "epoch": self.epoch, "history": self.history, "best_state": self.best_state,
                "best_epoch": self.best_epoch, "stop_reason": self.stop_reason,
                "fast_path": {"precision": self.fast.precision, "channels_last": self.fast.channels_last},
                "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, part in self._parts().items():
            if part is not None:
                part.load_state_dict(state[key])
        self.epoch, self.history, self.best_state = state["epoch"], state["history"], state["best_state"]
        self.best_epoch, self.stop_reason = state["best_epoch"], state["stop_reason"]
        torch.set_rng_state(state["rng"])


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Write the state atomically (temporary file removed on any failure)."""
    from zoo.files import write_atomic

    write_atomic(path, lambda f: torch.save(state.state_dict(), f), fsync=False)


def read_checkpoint(path: Path | None, device: torch.device) -> dict[str, Any] | None:
    """A checkpoint's state, loaded with weights_only=True; None if there is none. One that cannot be loaded
    (corrupt, from another version, or holding objects other than tensors and plain data) is reported and
    removed, so the run starts over instead of executing it."""
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or not {"epoch", "model", "fast_path", "rng"} <= state.keys():
            raise ValueError("it is not a cifarzoo training checkpoint")
        return state
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, AttributeError) as err:
        log.warning("checkpoint %s cannot be loaded safely (%s); it was discarded and the run starts over",
                    path, str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
        path.unlink(missing_ok=True)
        return None


def peek_checkpoint(path: Path | None) -> dict[str, Any] | None:
    """The fast-path choice stored in a checkpoint (memory-mapped: the weights are not read), or None."""
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return {"fast_path": state["fast_path"]} if isinstance(state, dict) and "fast_path" in state else None
    except Exception:  # read_checkpoint reports and discards a bad checkpoint when fit opens it
        return None


def resolve_fast_path(recipe: Recipe, device: torch.device | str, saved: dict[str, Any] | None = None) -> FastPath:
    """The precision and layout a run computes in: a resumed run keeps its checkpoint's choice (bit-identical
    resume), a new one asks the probe (`benchmark.fastpath.choose`)."""
    device = torch.device(device)
    chosen = choose(recipe.precision, recipe.channels_last, device.type)
    if saved is not None:
        kept = saved["fast_path"]
        if (kept["precision"], kept["channels_last"]) != (chosen.precision, chosen.channels_last):
            return FastPath(kept["precision"], kept["channels_last"], "checkpoint", chosen.probe)
    return chosen


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
    fast_path: FastPath | None = None,
    deadline: float | None = None,
) -> FitResult:
    """Train `model` by `recipe` on the `train` loader, selecting the best epoch on `val`.

    `val` may be None (a recipe with val_fraction 0 trains on the whole train split): no validation
    passes, no early stopping, and the last epoch's weights are kept. Loaders are
    `benchmark.loader.DeviceLoader`s (train shuffled). `checkpoint`: resume from it if it exists, and
    rewrite it after every epoch, before `on_epoch` sees the epoch's row (so a hook that raises, e.g. to
    stop a pruned trial or in a test of resuming, leaves that epoch resumable). `fast_path`: the
    precision and layout already chosen (`resolve_fast_path`); by default chosen here. `deadline` (a
    `time.monotonic()` value): after an epoch, if another one would end past it, stop with `RunPaused`
    (the checkpoint is written first, so the run resumes where it paused).
    """
    if val is None and recipe.early_stopping is not None:
        raise ValueError("early stopping needs a validation split (val is None)")
    device = torch.device(device)
    saved = read_checkpoint(checkpoint, device)
    fast = fast_path or resolve_fast_path(recipe, device, saved)
    recipe = recipe.replace(precision=fast.precision, channels_last=fast.channels_last)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    state = TrainState(model, recipe, len(train), fast)
    if saved is not None:
        state = _resume(state, saved, recipe, len(train), checkpoint)
    state.memory_kept = device.type == "cpu" and keep_freed_memory()  # process-wide, once: benchmark.cpumemory
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    step_model = torch.compile(model) if recipe.compile else model
    if recipe.compile and state.epoch < recipe.max_epochs and not state.stop_reason:
        _compile_warmup(step_model, model, train, criterion, device, recipe.precision)

    # a compiled graph draws its own fused masks; on a GPU torch's dropout kernel is already fast, and cuDNN
    # searches its own convolution algorithms
    eager_cpu = device.type == "cpu" and not recipe.compile
    with contextlib.ExitStack() as swaps:
        state.fast_dropout = eager_cpu and swaps.enter_context(fast_dropout(model)) > 0
        convs = swaps.enter_context(unfold_conv_grads(model)) if eager_cpu else None
        # after fast_dropout, which turns the fused path off where attention has dropout
        bf16_cpu = eager_cpu and fast.precision == "bf16"
        state.fp32_attention = bf16_cpu and swaps.enter_context(fp32_attention(model)) > 0
        while state.epoch < recipe.max_epochs and not state.stop_reason:
            state.epoch += 1
            row = train_epoch(state, step_model, train, criterion, recipe, device)
            if val is not None and (state.epoch % recipe.eval_every == 0 or state.epoch == recipe.max_epochs):
                validate(state, row, val, recipe, device)
            state.history.append(row)
            if checkpoint is not None:
                save_checkpoint(state, checkpoint)
            if on_epoch is not None:
                on_epoch(row)
            more = state.epoch < recipe.max_epochs and not state.stop_reason
            if deadline is not None and more and time.monotonic() + row["seconds"] > deadline and checkpoint:
                raise RunPaused(state.epoch)
        state.unfolded_convs = len(convs.unfolded) if convs else 0
        state.matmul_convs = len(convs.as_matmul) if convs else 0
        state.winograd_convs = len(convs.winograd) if convs else 0
    return _result(state, recipe, selected_on_val=val is not None)


def train_epoch(state: TrainState, step_model: nn.Module, train: Any, criterion: nn.Module, recipe: Recipe,
                device: torch.device) -> dict[str, Any]:
    """One pass over the training loader; returns the epoch's history row (loss, accuracy, lr, speed)."""
    model, optimizer, schedule = state.model, state.optimizer, state.schedule
    if hasattr(model, "start_epoch"):  # a model's own per-epoch schedule (e.g. freezing a layer after n epochs)
        model.start_epoch(state.epoch)
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in train.epoch(state.epoch):
        with autocast(device, recipe.precision):
            out = step_model(x)
            loss = criterion(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if state.lookahead is not None:
            state.lookahead.step(model, schedule.last_epoch)  # LambdaLR counts steps in `last_epoch`
        if state.ema is not None:
            state.ema.update(model)
        # accumulate on the device: no host sync inside the step
        loss_sum += loss.detach().float() * len(y)
        correct += (out.detach().argmax(1) == y).sum()
        seen += len(y)
    if state.lookahead is not None:
        state.lookahead.end_epoch(model)
    train_loss = loss_sum.item() / seen
    seconds = time.perf_counter() - t0
    if not math.isfinite(train_loss):
        raise TrainingDiverged(state.epoch)
    return {"epoch": state.epoch, "train_loss": train_loss, "train_acc": correct.item() / seen,
            "lr": optimizer.param_groups[0]["lr"], "seconds": seconds, "images_per_s": seen / seconds}


def validate(state: TrainState, row: dict[str, Any], val: Any, recipe: Recipe, device: torch.device) -> None:
    """Score the epoch on the validation split (in the run's precision), apply the early-stopping rule and
    keep the weights when they are the best so far."""
    from benchmark.evaluate import predict

    logits, labels = predict(state.eval_model, val, device, recipe.precision)
    row["val_loss"] = nn.functional.cross_entropy(logits, labels).item()
    row["val_acc"] = (logits.argmax(1) == labels).float().mean().item()
    improved, state.stop_reason = state.stopper.update(state.epoch, row)
    if improved:
        state.best_epoch = state.epoch
        state.best_state = {k: v.detach().clone() for k, v in state.eval_model.state_dict().items()}


def _resume(state: TrainState, saved: dict[str, Any], recipe: Recipe, steps: int, path: Path | None) -> TrainState:
    """Load a checkpoint's state; one that does not fit this run (another model or recipe) is discarded and
    the run starts over from the untouched initial weights."""
    initial = copy.deepcopy(state.model.state_dict())
    try:
        state.load_state_dict(saved)
        return state
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
        log.warning("checkpoint %s does not fit this run (%s: %s); it was discarded and the run starts over",
                    path, type(err).__name__, str(err).strip().splitlines()[0] if str(err).strip() else "")
        if path is not None:
            path.unlink(missing_ok=True)
        state.model.load_state_dict(initial)
        return TrainState(state.model, recipe, steps, state.fast)


def _result(state: TrainState, recipe: Recipe, selected_on_val: bool) -> FitResult:
    if not selected_on_val:  # no validation: the last epoch is the result
        state.best_epoch = state.history[-1]["epoch"] if state.history else 0
    final = state.eval_model
    if state.best_state is not None:
        final.load_state_dict(state.best_state)
    final.eval()
    fast = state.fast
    return FitResult(
        model=final, history=state.history, best_epoch=state.best_epoch, epochs_run=len(state.history),
        stopped_early=bool(state.stop_reason), stop_reason=state.stop_reason or "reached max_epochs",
        train_seconds=sum(r["seconds"] for r in state.history),
        fast_path={"device_resident": True, "precision": fast.precision, "bf16": fast.precision == "bf16",
                   "channels_last": fast.channels_last, "compile": recipe.compile, "fused_optimizer": state.fused,
                   "fast_dropout": state.fast_dropout, "freed_memory_kept": state.memory_kept,
                   "unfolded_conv_grads": state.unfolded_convs, "matmul_convs": state.matmul_convs,
                   "winograd_convs": state.winograd_convs,
                   "fp32_attention": state.fp32_attention,
                   "chosen_by": fast.source, "probe": fast.probe},
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
