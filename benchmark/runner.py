"""One run, end to end: train (or fine-tune) -> evaluate -> weights -> ONNX + parity -> timing -> record.

`prepare` turns (entry, seed, profile, data) into a `Run` whose id is known before any work, so the
planner can skip finished runs; `execute` does the work and returns the record it wrote. Failures
become records too (status "failed", reason, traceback file), so a bench goes on.
"""

from __future__ import annotations

import datetime as dt
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
from benchmark.records import environment, record_path, run_id, write_record, write_text_atomic
from benchmark.schema import SCHEMA_VERSION
from zoo.entry import Entry
from zoo.recipe import Recipe

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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

    def __post_init__(self) -> None:
        if self.checkpoints is None:
            self.checkpoints = self.results / ".checkpoints"


def prepare(entry_name: str, seed: int, profile_name: str, data: Dataset, *,
            recipe_overrides: dict[str, Any] | None = None, arch_overrides: dict[str, Any] | None = None,
            sweep: dict[str, Any] | None = None) -> Run:
    entry = zoo.get_entry(entry_name)
    profile = get_profile(profile_name)
    recipe = profile.apply(entry.recipe.replace(**(recipe_overrides or {})))
    arch_kwargs = {**entry.arch_kwargs, **(arch_overrides or {})}
    rid = run_id(entry.name, recipe.to_dict(), arch_kwargs, seed, profile.name, data.fingerprint)
    return Run(entry, recipe, arch_kwargs, seed, profile, rid, sweep)


def is_done(run: Run, results: Path) -> bool:
    return record_path(results, run.run_id).exists()


def skip_reason(run: Run) -> str | None:
    """Why a run cannot start here (ImageNet weights unavailable offline), or None."""
    if not run.entry.pretrained:
        return None
    from zoo.pretrained import imagenet_weights_available

    if imagenet_weights_available(run.entry.architecture):
        return None
    return (f"ImageNet weights for {run.entry.architecture} ({run.entry.pretrained}) are not available offline; "
            "pass --imagenet-weights DIR or put them in the torch hub cache.")


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    """Do the run and write its record (ok, failed or skipped); returns the record."""
    started = _now()
    t0 = time.perf_counter()
    record = _base_record(run, ctx, started)
    reason = skip_reason(run)
    if reason:
        record.update(status="skipped", reason=reason)
    else:
        try:
            record.update(_train_evaluate_time(run, ctx, record))
            record["status"] = "ok"
        except KeyboardInterrupt:
            raise  # the checkpoint of the last finished epoch stays; no record is written
        except RunStopped as stop:
            record.update(status="skipped", reason=str(stop), history=stop.history)
        except Exception as err:  # isolation: a failing run becomes a failed record, the bench goes on
            tb_file = f"{run.run_id}.traceback.txt"
            write_text_atomic(ctx.results / tb_file, traceback.format_exc())
            record.update(status="failed", reason=_one_line(err), traceback_file=tb_file)
    record["finished_at"] = _now()
    record["durations"]["total_s"] = time.perf_counter() - t0
    write_record(ctx.results, record, force=ctx.force)
    return record


def _train_evaluate_time(run: Run, ctx: RunContext, record: dict[str, Any]) -> dict[str, Any]:
    from benchmark import metrics
    from benchmark.augment import get_policy
    from benchmark.evaluate import predict
    from benchmark.loader import DeviceLoader
    from benchmark.splits import channel_stats, stratified_split, stratified_subset
    from benchmark.train import fit, peek_checkpoint, resolve_fast_path
    from zoo.weights import save_weights

    data, recipe, profile, device = ctx.data, run.recipe, run.profile, torch.device(ctx.device)
    ckpt = ctx.checkpoints / f"{run.run_id}.ckpt"
    fast = resolve_fast_path(recipe, device, peek_checkpoint(ckpt))  # the probe's choice, or a checkpoint's
    recipe = recipe.replace(precision=fast.precision, channels_last=fast.channels_last)
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
            x, y, batch_size=batch, mean=mean, std=std, device=device, shuffle=train, drop_last=False,
            seed=run.seed, policy=get_policy(recipe.augment) if train else (), apply_prob=recipe.augment_prob,
            input_size=recipe.input_size, channels_last=recipe.channels_last)

    eval_batch = 500
    train_loader = loader(data.x_train[train_idx], data.y_train[train_idx], True, recipe.batch_size)
    val_loader = loader(data.x_train[val_idx], data.y_train[val_idx], False, eval_batch) if len(val_idx) else None
    test_loader = loader(data.x_test[test_idx], data.y_test[test_idx], False, eval_batch)
    record["data"].update(n_train=len(train_idx), n_val=len(val_idx), n_test=len(test_idx), mean=mean, std=std)

    model = zoo.create(run.entry.architecture, **run.arch_kwargs)
    if hasattr(model, "data_init"):  # data-dependent initialisation (e.g. a whitening first conv)
        model.data_init(train_loader.plain(5000).float())
    from benchmark.progress import Progress

    bar = Progress(recipe.max_epochs, f"  {run.run_id}", ctx.progress, position=1, leave=False)

    def on_epoch(row: dict[str, Any]) -> None:
        bar.update(1, loss=row["train_loss"], val_acc=row.get("val_acc", "-"))
        if ctx.on_epoch is not None:
            ctx.on_epoch(row)

    fitted = fit(model, recipe, train_loader, val_loader, device=device, checkpoint=ckpt, on_epoch=on_epoch,
                 fast_path=fast)
    bar.close()

    t_eval = time.perf_counter()
    # published test numbers in fp32 whatever the training precision: what users get from these weights
    logits, labels = predict(fitted.model, test_loader, device, "fp32", tta=recipe.tta)
    test = metrics.classification_report(logits, labels, len(data.classes))
    eval_s = time.perf_counter() - t_eval

    model_fp32 = fitted.model.float().to(memory_format=torch.contiguous_format).eval()
    selected = next((r for r in fitted.history if r["epoch"] == fitted.best_epoch), {})
    weights_path, sha = save_weights(model_fp32, run.entry.name, run.run_id, {
        "entry": run.entry.name, "recipe": recipe.to_dict(), "arch_kwargs": run.arch_kwargs, "seed": run.seed,
        "profile": profile.name, "data_source": data.source, "data_fingerprint": data.fingerprint,
        "data_lossy": data.lossy, "classes": data.classes, "mean": mean, "std": std, "input_size": recipe.input_size,
        "tta": recipe.tta, "sweep": run.sweep, "train_s": fitted.train_seconds,
        "metrics": {"val_accuracy": selected.get("val_acc"), "test_accuracy": test["accuracy"],
                    "test_loss": test["loss"]},
    })  # a file name of this attempt's own: the record names it
    ckpt.unlink(missing_ok=True)

    onnx_section, timing_section, model_section, export_s, timing_s = _export_and_time(
        run, ctx, model_fp32, test_loader)
    return {
        "durations": {**record["durations"], "train_s": fitted.train_seconds, "eval_s": eval_s,
                      "export_s": export_s, "timing_s": timing_s},
        "fast_path": fitted.fast_path,
        "history": fitted.history,
        "training": {"best_epoch": fitted.best_epoch, "epochs_run": fitted.epochs_run,
                     "stopped_early": fitted.stopped_early, "stop_reason": fitted.stop_reason},
        "model": model_section,
        "test": test,
        "onnx": onnx_section,
        "timing": timing_section,
        "weights": {"file": f"{run.entry.name}/{weights_path.name}", "sha256": sha},  # in the weights store
    }


def _export_and_time(run: Run, ctx: RunContext, model: torch.nn.Module, test_loader: Any):
    from benchmark.modelstats import count_params, flops_per_image
    from benchmark.onnx_export import export_onnx, ort_session, parity
    from benchmark.timing import BUDGETS, time_both

    size = run.recipe.input_size
    model_section: dict[str, Any] = {"params": count_params(model), "flops_per_image": flops_per_image(model, size),
                                     "onnx_bytes": None}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{run.entry.name}.onnx"
        exported = export_onnx(model, onnx_path, input_size=size)
        onnx_section: dict[str, Any] = {"exported": exported.ok, "reason": exported.reason, "opset": exported.opset,
                                        "max_abs_diff": None, "top1_agreement": None, "parity_ok": None}
        threads = torch.get_num_threads()
        if exported.ok:
            model_section["onnx_bytes"] = exported.bytes
            session = ort_session(onnx_path, threads, ctx.device)
            images, labels = map(torch.cat, zip(*((x.float().contiguous(), y) for x, y in test_loader.epoch(0))))
            if run.profile.parity_images is not None and run.profile.parity_images < len(labels):
                from benchmark.splits import stratified_subset  # a fixed, balanced part of the test split

                images = images[stratified_subset(labels, run.profile.parity_images, seed=0)]
            onnx_section.update(parity(model, session, images))
        export_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        timing = time_both(model, onnx_path if exported.ok else None, size, threads,
                           BUDGETS[run.profile.timing], ctx.device)
        timing_s = time.perf_counter() - t1
    return onnx_section, timing, model_section, export_s, timing_s


def _subset(idx: torch.Tensor, labels: torch.Tensor, n: int | None, seed: int, stratified_subset) -> torch.Tensor:
    if n is None or n >= len(idx):
        return idx
    return idx[stratified_subset(labels[idx], n, seed=seed)]


def _normalisation(recipe: Recipe, train_images: torch.Tensor, channel_stats) -> tuple[list[float], list[float]]:
    if recipe.normalize == "dataset":  # statistics of the training split only, as the reports do
        return channel_stats(train_images)
    if recipe.normalize == "imagenet":
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if recipe.normalize == "half":
        return [0.5] * 3, [0.5] * 3
    return [0.0] * 3, [1.0] * 3  # "none": pixels scaled to [0, 1]


def _base_record(run: Run, ctx: RunContext, started: str) -> dict[str, Any]:
    data = ctx.data
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run.run_id, "status": "skipped", "reason": None,
        "traceback_file": None, "entry": _entry_section(run),
        "recipe": run.recipe.to_dict(), "seed": run.seed, "profile": run.profile.name,
        "data": {"source": data.source, "description": data.description, "fingerprint": data.fingerprint,
                 "lossy": data.lossy, "n_train": None, "n_val": None, "n_test": None, "classes": data.classes,
                 "mean": None, "std": None, "subset": run.profile.description},
        "environment": environment(ctx.device), "command": ctx.command, "started_at": started, "finished_at": None,
        "durations": {"train_s": None, "eval_s": None, "export_s": None, "timing_s": None, "total_s": None},
        "fast_path": None, "history": [], "training": None, "model": None, "test": None, "onnx": None,
        "timing": None, "weights": None, "sweep": run.sweep,
    }


def _entry_section(run: Run) -> dict[str, Any]:
    """The entry as registered, its own recipe named by hash (the record's `recipe` is the one that ran)."""
    entry = run.entry.to_dict()
    del entry["recipe"]
    return {**entry, "arch_kwargs": run.arch_kwargs, "recipe_sha256": run.entry.recipe.sha256()}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
