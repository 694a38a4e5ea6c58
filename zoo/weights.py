"""The local weights store: one safetensors file per training attempt, with a JSON sidecar.

    $CIFARZOO_HOME/weights/<entry>/<run_id>.<attempt>.safetensors   the state dict (no pickle: safe to load)
    $CIFARZOO_HOME/weights/<entry>/<run_id>.<attempt>.json          entry, run id, recipe, seed, profile, data
                                                                     (source, fingerprint, lossy), metrics,
                                                                     mean/std, input size, TTA, classes,
                                                                     sha256 of the .safetensors, created_at

Every attempt gets a file name of its own, so a run recorded by one process never has its weights replaced
by another (its record names the file and its sha256). Files are written atomically. The entry name is
also in the safetensors header, so a file that lost its sidecar still cannot be loaded into another entry.

Local selection (`find_best`) never reads the test split: `full` runs on real data first, then `quick`, each
ranked by the validation accuracy of the selected epoch. Smoke runs, runs on synthetic data and sweep trials
are never chosen for you; load them by file.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError
from zoo.files import home, sha256_bytes, sha256_file, write_atomic

__all__ = ["find_best", "home", "list_runs", "read_sidecar", "read_weights", "save_weights", "sha256_file",
           "sidecar_path", "store_dir"]

PROFILE_RANK = {"full": 2, "quick": 1}  # profiles local selection may pick, best first; others never


def store_dir() -> Path:
    """Where trained weights live: $CIFARZOO_HOME/weights."""
    return home() / "weights"


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_weights(model: Any, entry: str, run_id: str, meta: dict[str, Any], *,
                 dtype: Any = None) -> tuple[Path, str]:
    """Write <store>/<entry>/<run_id>.<attempt>.safetensors and its .json sidecar; returns (path, sha256).
    `dtype` (e.g. torch.float16) stores floating-point tensors in that type."""
    from safetensors.torch import save

    if not run_id or "/" in run_id or run_id.startswith("."):
        raise CifarzooError(f"run id '{run_id}' cannot name a weights file; use letters, digits, '-' and '_'.")
    folder = store_dir() / entry
    path = folder / f"{run_id}.{secrets.token_hex(3)}.safetensors"
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its original's keys
    tensors = {k: _stored(v, dtype) for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"entry": entry, "run_id": run_id, "format": "cifarzoo-weights-1"})
    sha = sha256_bytes(blob)
    sidecar = {**meta, "entry": entry, "run_id": run_id, "file": path.name, "sha256": sha, "bytes": len(blob),
               "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    write_atomic(path, blob, overwrite=False)
    write_atomic(sidecar_path(path), json.dumps(sidecar, indent=1, sort_keys=True, default=str) + "\n")
    return path, sha


def _stored(tensor: Any, dtype: Any) -> Any:
    tensor = tensor.detach().cpu().contiguous().clone()
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of a weights file, None if it has none; CifarzooError if it is not a valid sidecar."""
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        raise CifarzooError(f"sidecar {side} is not valid JSON ({err.__class__.__name__}); "
                            "restore it or train the entry again.") from err
    problems = _sidecar_problems(data)
    if problems:
        raise CifarzooError(f"sidecar {side} is not a valid weights sidecar ({problems}); "
                            "restore it or train the entry again.")
    return data


def _sidecar_problems(data: Any) -> str:
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("sha256"), str) or len(data["sha256"]) != 64:
        return "no sha256 of the weights"
    for key in ("mean", "std"):
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and len(value) == 3
                                      and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            return f"'{key}' is not three numbers"
    metrics = data.get("metrics")
    if metrics is not None and (not isinstance(metrics, dict) or any(
            v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)) for v in metrics.values())):
        return "'metrics' holds values that are not numbers"
    for key in ("input_size", "seed"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"'{key}' is not a non-negative integer"
    return ""


def list_runs(entry: str) -> list[tuple[Path, dict[str, Any]]]:
    """Stored runs of `entry` as (weights path, sidecar), oldest first. A corrupt sidecar is an error naming
    it (it would otherwise let another run stand in silently); a sidecar without its file is left out."""
    folder = store_dir() / entry
    runs = []
    for side in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        path = side.with_suffix(".safetensors")
        meta = read_sidecar(path)
        if meta is not None and path.is_file():
            runs.append((path, meta))
    orphans = [p for p in sorted(folder.glob("*.safetensors")) if folder.is_dir()
               and not p.name.startswith("pinned-") and not sidecar_path(p).exists()]
    if orphans:  # its run might be the best one: choosing among the others would be silent and wrong
        raise CifarzooError(f"weights file {orphans[0]} has no sidecar ({sidecar_path(orphans[0]).name}); restore "
                            "it, or remove the file to choose among the other runs.")
    return sorted(runs, key=lambda run: str(run[1].get("created_at", "")))


def selectable(meta: dict[str, Any]) -> bool:
    """May local selection pick this run? Only full/quick runs on real data, never a sweep trial."""
    return (meta.get("profile") in PROFILE_RANK and not meta.get("sweep")
            and meta.get("data_source") not in (None, "synthetic"))


def find_best(entry: str) -> Path | None:
    """The stored run of `entry` chosen without the test split: the best profile (full, then quick), then the
    highest validation accuracy of the selected epoch, then the newest."""

    def rank(run: tuple[Path, dict[str, Any]]) -> tuple[int, float, str]:
        meta = run[1]
        val = (meta.get("metrics") or {}).get("val_accuracy")
        return (PROFILE_RANK[meta["profile"]], float(val) if isinstance(val, (int, float)) else float("-inf"),
                str(meta.get("created_at", "")))

    runs = [run for run in list_runs(entry) if selectable(run[1])]
    return max(runs, key=rank)[0] if runs else None


def read_weights(path: Path, entry: str | None = None, sha256: str | None = None) -> tuple[dict[str, Any], dict]:
    """(state dict in float32, sidecar) of a weights file, checked against `sha256` (a published record's) or
    its sidecar's, and against `entry`. A file with neither to check it against is refused."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CifarzooError(f"weights file {path} does not exist; check the path or run `cifarzoo list`.")
    meta = read_sidecar(path) or {}
    expected = sha256 or meta.get("sha256")
    if expected is None:
        raise CifarzooError(f"weights file {path} has no sidecar ({sidecar_path(path).name}) holding its sha256, so "
                            "its integrity cannot be checked; restore the sidecar or train the entry again.")
    if sha256_file(path) != expected:
        raise CifarzooError(f"weights file {path} does not match the sha256 in its "
                            f"{'published record' if sha256 else 'sidecar'} (corrupt, truncated or modified); "
                            "train the entry again or restore the file.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {k: _as_float32(f.get_tensor(k)) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for bad headers and short files
        raise CifarzooError(f"weights file {path} is not a readable safetensors file (corrupt or truncated); "
                            "train the entry again or restore the file.") from err
    owner = meta.get("entry") or header.get("entry")
    if entry is not None and owner is not None and owner != entry:
        raise CifarzooError(f"weights file {path} belongs to entry '{owner}', not '{entry}'; "
                            f"pass a file of '{entry}' or load '{owner}'.")
    return state, meta


def _as_float32(tensor: Any) -> Any:
    import torch

    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
