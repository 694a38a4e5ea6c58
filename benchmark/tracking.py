"""Your tools: every finished run also goes to TensorBoard and/or MLflow, with their own writers.

- `TensorBoard(DIR)`: one event file per run under DIR/<run_id>/ (torch.utils.tensorboard's SummaryWriter):
  per-epoch train/val loss and accuracy, learning rate and images/s, then the test metrics.
- `MLflow(URI)`: one MLflow run per run (experiment "cifarzoo"): the recipe, entry and seed as params, the
  per-epoch curves as stepped metrics, the test metrics, and the record itself as the artifact record.json.
  By default the store is a local file (sqlite:///RESULTS/mlflow.db, artifacts in RESULTS/mlruns/). MLflow
  is an optional extra: `pip install cifarzoo[mlflow]`.

Both log from the finished record, so a run resumed across processes still shows its whole history once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from zoo.errors import CifarzooError

CURVES = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s")


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...


class TensorBoard:
    """Writes each finished run's curves and test metrics as TensorBoard scalars."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (needs the tensorboard package)
        except ImportError:
            raise CifarzooError("--tensorboard needs the tensorboard package: pip install 'cifarzoo[tensorboard]'.") \
                from None
        self.folder = Path(folder)

    def log(self, record: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if record["status"] != "ok":
            return
        with SummaryWriter(log_dir=str(self.folder / record["run_id"])) as writer:
            for row in record["history"]:
                for key in CURVES:
                    if row.get(key) is not None:
                        writer.add_scalar(f"epoch/{key}", row[key], global_step=row["epoch"])
            last = record["history"][-1]["epoch"] if record["history"] else 0
            for key in ("accuracy", "loss", "ece"):
                writer.add_scalar(f"test/{key}", record["test"][key], global_step=last)
            writer.add_text("run", f"{record['entry']['name']}, profile {record['profile']}, seed {record['seed']}: "
                                   f"`{record['command']}`", global_step=last)


class MLflow:
    """Logs each finished run to MLflow: params, stepped curves, test metrics, the record as an artifact."""

    EXPERIMENT = "cifarzoo"

    def __init__(self, uri: str | None, results: Path):
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise CifarzooError("--mlflow needs MLflow: pip install 'cifarzoo[mlflow]'.") from None
        self.uri = uri or f"sqlite:///{(Path(results) / 'mlflow.db').resolve()}"
        self.artifacts = (Path(results) / "mlruns").resolve().as_uri()

    def log(self, record: dict[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name(self.EXPERIMENT)
        exp_id = experiment.experiment_id if experiment else client.create_experiment(
            self.EXPERIMENT, artifact_location=self.artifacts)
        run = client.create_run(exp_id, run_name=record["run_id"],
                                tags={"entry": record["entry"]["name"], "profile": record["profile"],
                                      "status": record["status"], "data": record["data"]["source"]})
        params = {"entry": record["entry"]["name"], "seed": record["seed"], "profile": record["profile"],
                  **{f"recipe.{k}": v for k, v in _flat(record["recipe"]).items()},
                  **{f"arch.{k}": v for k, v in record["entry"]["arch_kwargs"].items()}}
        metrics = [Metric(key, float(row[key]), 0, row["epoch"]) for row in record["history"] for key in CURVES
                   if row.get(key) is not None]
        if record["status"] == "ok":
            metrics += [Metric(f"test_{k}", float(record["test"][k]), 0, 0) for k in ("accuracy", "loss", "ece")]
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param(k, str(v)[:500]) for k, v in params.items()])
        client.log_dict(run.info.run_id, record, "record.json")
        client.set_terminated(run.info.run_id, "FINISHED" if record["status"] == "ok" else "FAILED")


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
