"""One run, end to end: train (or fine-tune) -> evaluate -> weights -> ONNX + parity -> timing -> record.

`prepare` turns (entry, seed, profile, data) into a `Run` whose id is known before any work, so the
planner can skip finished runs; `execute` does the work and returns the record it wrote. Failures
become records too (status "failed", reason, traceback file), so a bench goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import zoo
from benchmark.data import Dataset
from benchmark.profiles import Profile, get_profile
from benchmark.records import environment, record_path, run_id, write_record
from benchmark.schema import (
    SCHEMA_VERSION,
    DataSection,
    Durations,
    EntrySection,
    ModelSection,
    OnnxSection,
    Record,
    TestSection,
    TimingSection,
    Training,
    WeightsSection,
)
from benchmark.train import RunPaused  # noqa: E402  (torch is imported above anyway)
from zoo.cifar10 import NORMALIZATION
from zoo.entry import Entry
from zoo.errors import CifarzooError, one_line
from zoo.files import write_atomic
from zoo.recipe import Recipe


class RunStopped(Exception):
    """Raised by a `RunContext.on_epoch` hook to end a run early (a pruned sweep trial): the run's record
    is written with status "skipped", this exception's message as the reason, and `history` so far."""

    def __init__(self, reason: str, history: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.history = list(history or [])


@dataclass(frozen=True)
class Run:
    """Everything that defines one run; `run_id` names its record."""

    entry: Entry
    recipe: Recipe  # the entry's recipe with the profile (and any sweep overrides) applied
    arch_kwargs: dict[str, Any]
    seed: int
    profile: Profile
    run_id: str
    sweep: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass
class RunContext:
    """Where and how runs execute (shared by every run of a bench)."""

    results: Path
    data: Dataset
    device: str = "cpu"
    command: str = ""
    progress: str = "auto"
    force: bool = False
    checkpoints: Path | None = None  # default: <results>/.checkpoints
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # sees each history row; may raise RunStopped
    deadline: float | None = None  # time.monotonic() by which runs pause (resumable) and no new one starts
    imagenet_weights: Path | None = None  # a folder of torchvision's ImageNet files, for the fine-tunes
    trackers: tuple[Any, ...] = ()  # benchmark.tracking: each finished record also goes to TensorBoard / MLflow

    def __post_init__(self) -> None:
        if self.checkpoints is None:
            self.checkpoints = self.results / ".checkpoints"


def prepare(entry_name: str, seed: int, profile_name: str, data: Dataset, *,
            recipe_overrides: dict[str, Any] | None = None, arch_overrides: dict[str, Any] | None = None,
            sweep: dict[str, Any] | None = None) -> Run:
    entry = zoo.get_entry(entry_name)
    check_classes(entry, data)  # refused before any run starts
    profile = get_profile(profile_name)
    recipe = profile.apply(entry.recipe.replace(**(recipe_overrides or {})))
    arch_kwargs = {**entry.arch_kwargs, **profile.small.get(entry.architecture, {}), **(arch_overrides or {})}
    rid = run_id(entry.name, recipe.to_dict(), arch_kwargs, seed, profile.name, data.fingerprint)
    return Run(entry, recipe, arch_kwargs, seed, profile, rid, sweep)


def is_done(run: Run, results: Path) -> bool:
    return record_path(results, run.run_id).exists()


def skip_reason(run: Run, imagenet_weights: Path | None = None) -> str | None:
    """Why a run cannot start here (ImageNet weights unavailable offline), or None."""
    if not run.entry.pretrained:
        return None
    from zoo.pretrained import find_local

    if find_local(run.entry.architecture, imagenet_weights) is not None:
        return None
    return (f"ImageNet weights for {run.entry.architecture} ({run.entry.pretrained}) are not available offline; "
            "pass --imagenet-weights DIR or put them in the torch hub cache.")


def execute(run: Run, ctx: RunContext) -> Record:
    """Do the run and write its record (ok, failed or skipped); returns the record."""
    t0 = time.perf_counter()
    record = base_record(run, ctx)
    reason = skip_reason(run, ctx.imagenet_weights)
    if reason:
        record.update(status="skipped", reason=reason)
    else:
        try:
            _steps(run, ctx, record)
            record["status"] = "ok"
        except (KeyboardInterrupt, RunPaused):
            raise  # the checkpoint of the last finished epoch stays; no record is written
        except RunStopped as stop:
            (ctx.checkpoints / f"{run.run_id}.ckpt").unlink(missing_ok=True)  # a stopped run is never resumed
            record.update(status="skipped", reason=str(stop), history=stop.history)
        except Exception as err:  # isolation: a failing run becomes a failed record, the bench goes on
            tb_file = f"{run.run_id}.traceback.txt"
            write_atomic(ctx.results / tb_file, traceback.format_exc())
            record.update(status="failed", reason=one_line(err), traceback_file=tb_file)
    record["finished_at"] = _now()
    record["durations"]["total_s"] = time.perf_counter() - t0
    write_record(ctx.results, record, force=ctx.force)
    for tracker in ctx.trackers:
        try:
            tracker.log(record)
        except Exception as err:  # a tracking server's trouble must not lose the run: its record is written
            logging.getLogger(__name__).warning("could not log %s to %s: %s", run.run_id, type(tracker).__name__,
                                                one_line(err))
    return record


def _steps(run: Run, ctx: RunContext, record: Record) -> None:
    """The steps of an ok run, each filling its section: data -> training -> test -> weights -> ONNX -> timing."""
    from benchmark.train import peek_checkpoint, resolve_fast_path

    durations = record["durations"]
    ckpt = ctx.checkpoints / f"{run.run_id}.ckpt"
    fast = resolve_fast_path(run.recipe, ctx.device, peek_checkpoint(ckpt))  # the probe's choice, or a checkpoint's
    recipe = run.recipe.replace(precision=fast.precision, channels_last=fast.channels_last)
    splits = load_splits(run, recipe, ctx)
    record["data"].update(splits.section)
    fitted = train(run, recipe, splits, ctx, fast)
    durations["train_s"] = fitted.train_seconds
    record.update(history=fitted.history, fast_path=fitted.fast_path, training=Training(
        best_epoch=fitted.best_epoch, epochs_run=fitted.epochs_run, stopped_early=fitted.stopped_early,
        stop_reason=fitted.stop_reason))
    model = fitted.model.float().to(memory_format=torch.contiguous_format).eval()
    (record["test"], durations["eval_s"]) = _timed(evaluate_test, model, splits, recipe, ctx)
    record["weights"] = save_run_weights(model, run, recipe, splits, fitted, record["test"], ctx)
    ckpt.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        meta = {"producer": "cifarzoo", "entry": run.entry.name, "classes": list(ctx.data.classes),
                "mean": splits.section["mean"], "std": splits.section["std"], "input_size": recipe.input_size,
                "tta": recipe.tta, "weights_sha256": record["weights"]["sha256"], "run_id": run.run_id}
        (onnx_path, record["onnx"], record["model"]), durations["export_s"] = _timed(
            export_and_check, model, run, splits, ctx, Path(tmp), meta)
        record["timing"], durations["timing_s"] = _timed(time_inference, model, onnx_path, run, ctx)


def _timed(step: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return step(*args), time.perf_counter() - t0


@dataclass
class Splits:
    """The run's data on the device: train (shuffled, augmented), validation (or None), test; and its stats."""

    train: Any
    val: Any
    test: Any
    section: dict[str, Any]  # n_train, n_val, n_test, mean, std for the record's `data`


def load_splits(run: Run, recipe: Recipe, ctx: RunContext, eval_batch: int = 500) -> Splits:
    """Stratified, seeded train/validation split of the train split (the profile's subsets), the test split,
    normalisation from the training images only, as device-resident loaders."""
    from benchmark.augment import get_policy
    from benchmark.loader import DeviceLoader
    from benchmark.splits import channel_stats, stratified_split, stratified_subset

    data, profile = ctx.data, run.profile
    torch.manual_seed(run.seed)
    if recipe.val_fraction > 0:
        train_idx, val_idx = stratified_split(data.y_train, recipe.val_fraction, seed=run.seed)
    else:  # the recipe trains on the whole train split and keeps its last epoch (no validation)
        train_idx, val_idx = torch.arange(len(data.y_train)), torch.arange(0)
    train_idx = _subset(train_idx, data.y_train, profile.train_images, run.seed, stratified_subset)
    val_idx = _subset(val_idx, data.y_train, profile.val_images, run.seed, stratified_subset)
    test_idx = _subset(torch.arange(len(data.y_test)), data.y_test, profile.test_images, run.seed, stratified_subset)
    mean, std = _normalisation(recipe, data.x_train[train_idx], channel_stats)

    def loader(x: torch.Tensor, y: torch.Tensor, train: bool, batch: int) -> DeviceLoader:
        return DeviceLoader(
            x, y, batch_size=batch, mean=mean, std=std, device=ctx.device, shuffle=train, drop_last=False,
            seed=run.seed, policy=get_policy(recipe.augment) if train else (), apply_prob=recipe.augment_prob,
            input_size=recipe.input_size, channels_last=recipe.channels_last)

    return Splits(
        train=loader(data.x_train[train_idx], data.y_train[train_idx], True, recipe.batch_size),
        val=loader(data.x_train[val_idx], data.y_train[val_idx], False, eval_batch) if len(val_idx) else None,
        test=loader(data.x_test[test_idx], data.y_test[test_idx], False, eval_batch),
        section={"n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_idx), "mean": mean, "std": std})


def check_classes(entry: Entry, data: Any) -> None:
    """The data's classes must be the entry's (a 9- or 11-class folder would crash later, in the metrics)."""
    expected = list(entry.classes)
    if list(data.classes) != expected:
        raise CifarzooError(f"the data has classes {list(data.classes)}, but {entry.name} classifies "
                            f"{expected}; use a dataset with exactly these class folders.")


def train(run: Run, recipe: Recipe, splits: Splits, ctx: RunContext, fast: Any) -> Any:
    """Build the entry's network (data-dependent init where it has one) and `fit` it, resuming a checkpoint."""
    from benchmark.progress import Progress
    from benchmark.train import fit
    from zoo.user import is_spec, resolve_architecture

    if is_spec(run.entry.architecture):  # a user's model: a process that did not read its entry file resolves it
        resolve_architecture(run.entry.architecture)
    kwargs = dict(run.arch_kwargs)
    if run.entry.pretrained and ctx.imagenet_weights is not None:  # where the ImageNet file is (not in the run id)
        kwargs["weights_file"] = str(ctx.imagenet_weights)
    model = zoo.create(run.entry.architecture, **kwargs)
    if hasattr(model, "data_init"):  # data-dependent initialisation (e.g. a whitening first conv)
        model.data_init(splits.train.plain(5000).float())
    bar = Progress(recipe.max_epochs, f"  {run.run_id}", ctx.progress, position=1, leave=False)

    def on_epoch(row: dict[str, Any]) -> None:
        bar.update(1, loss=row["train_loss"], val_acc=row.get("val_acc", "-"))
        if ctx.on_epoch is not None:
            ctx.on_epoch(row)

    try:
        return fit(model, recipe, splits.train, splits.val, device=ctx.device,
                   checkpoint=ctx.checkpoints / f"{run.run_id}.ckpt", on_epoch=on_epoch, fast_path=fast,
                   deadline=ctx.deadline)
    finally:
        bar.close()


def evaluate_test(model: torch.nn.Module, splits: Splits, recipe: Recipe, ctx: RunContext) -> TestSection:
    """The test split, read once: fp32 metrics whatever the training precision (what users get)."""
    from benchmark import metrics
    from benchmark.evaluate import predict

    logits, labels = predict(model, splits.test, ctx.device, "fp32", tta=recipe.tta)
    return metrics.classification_report(logits, labels, len(ctx.data.classes))


def save_run_weights(model: torch.nn.Module, run: Run, recipe: Recipe, splits: Splits, fitted: Any,
                     test: TestSection, ctx: RunContext) -> WeightsSection:
    """Weights and sidecar in the store, under a file name of this attempt's own (the record names it)."""
    from zoo.weights import save_weights

    data = ctx.data
    from benchmark.summary import selected_val_accuracy

    path, sha = save_weights(model, run.entry.name, run.run_id, {
        "entry": run.entry.name, "recipe": recipe.to_dict(), "arch_kwargs": run.arch_kwargs, "seed": run.seed,
        "profile": run.profile.name, "data_source": data.source, "data_fingerprint": data.fingerprint,
        "data_lossy": data.lossy, "classes": data.classes, "mean": splits.section["mean"],
        "std": splits.section["std"], "input_size": recipe.input_size, "tta": recipe.tta, "sweep": run.sweep,
        "train_s": fitted.train_seconds,
        "metrics": {"val_accuracy": selected_val_accuracy(fitted.history, fitted.best_epoch),
                    "test_accuracy": test["accuracy"],
                    "test_loss": test["loss"]},
    })
    return WeightsSection(file=f"{run.entry.name}/{path.name}", sha256=sha)  # relative to the weights store


def export_and_check(model: torch.nn.Module, run: Run, splits: Splits, ctx: RunContext, folder: Path,
                     metadata: dict[str, Any] | None = None) -> tuple[Path | None, OnnxSection, ModelSection]:
    """ONNX export and its parity with PyTorch on the test images (the profile's share of them)."""
    from benchmark.modelstats import count_params, flops_per_image
    from benchmark.onnx_export import export_onnx, ort_session, parity
    from benchmark.splits import stratified_subset

    size = run.recipe.input_size
    section = ModelSection(params=count_params(model), flops_per_image=flops_per_image(model, size), onnx_bytes=None)
    exported = export_onnx(model, folder / f"{run.entry.name}.onnx", input_size=size, metadata=metadata)
    onnx = OnnxSection(exported=exported.ok, reason=exported.reason, opset=exported.opset, max_abs_diff=None,
                       top1_agreement=None, parity_ok=None, exporter=exported.exporter)
    if not exported.ok:
        return None, onnx, section
    section["onnx_bytes"] = exported.bytes
    session = ort_session(exported.path, torch.get_num_threads(), ctx.device)
    images, labels = map(torch.cat, zip(*((x.float().contiguous(), y) for x, y in splits.test.epoch(0))))
    if run.profile.parity_images is not None and run.profile.parity_images < len(labels):
        images = images[stratified_subset(labels, run.profile.parity_images, seed=0)]  # fixed, balanced
    onnx.update(parity(model, session, images))
    return exported.path, onnx, section


def time_inference(model: torch.nn.Module, onnx_path: Path | None, run: Run, ctx: RunContext) -> TimingSection:
    """PyTorch vs ONNX Runtime by the written protocol (benchmark.timing), in a phase of its own."""
    from benchmark.timing import BUDGETS, time_both

    return time_both(model, onnx_path, run.recipe.input_size, torch.get_num_threads(), BUDGETS[run.profile.timing],
                     ctx.device)


def _subset(idx: torch.Tensor, labels: torch.Tensor, n: int | None, seed: int, stratified_subset) -> torch.Tensor:
    if n is None or n >= len(idx):
        return idx
    return idx[stratified_subset(labels[idx], n, seed=seed)]


def _normalisation(recipe: Recipe, train_images: torch.Tensor, channel_stats) -> tuple[list[float], list[float]]:
    if recipe.normalize == "dataset":  # statistics of the training split only, as the reports do
        return channel_stats(train_images)
    mean, std = NORMALIZATION[recipe.normalize]  # "imagenet", "half" (0.5/0.5), "none" (pixels in [0, 1])
    return list(mean), list(std)


def base_record(run: Run, ctx: RunContext) -> Record:
    """The record as it stands before any work: every section a run may not reach is null."""
    data = ctx.data
    return Record(
        schema_version=SCHEMA_VERSION, run_id=run.run_id, status="skipped", reason=None, traceback_file=None,
        entry=_entry_section(run), recipe=run.recipe.to_dict(), seed=run.seed, profile=run.profile.name,
        data=DataSection(source=data.source, description=data.description, fingerprint=data.fingerprint,
                         lossy=data.lossy, n_train=None, n_val=None, n_test=None, classes=data.classes, mean=None,
                         std=None, subset=run.profile.description),
        environment=environment(ctx.device), command=ctx.command, started_at=_now(), finished_at=None,
        durations=Durations(train_s=None, eval_s=None, export_s=None, timing_s=None, total_s=None),
        fast_path=None, history=[], training=None, model=None, test=None, onnx=None, timing=None, weights=None,
        sweep=run.sweep)


def _entry_section(run: Run) -> EntrySection:
    """The entry as registered, its own recipe named by hash (the record's `recipe` is the one that ran)."""
    entry = run.entry.to_dict()
    for key in ("recipe", "classes"):  # the recipe by hash; the classes are the data section's
        del entry[key]
    entry["arch_kwargs"] = run.arch_kwargs  # with any sweep overrides
    return EntrySection(**entry, recipe_sha256=run.entry.recipe.sha256())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")



