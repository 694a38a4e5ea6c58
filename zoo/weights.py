"""The local weights store: one safetensors file per run, with a JSON sidecar.

    $CIFARZOO_HOME/weights/<entry>/<run_id>.safetensors   the state dict (no pickle: safe to load)
    $CIFARZOO_HOME/weights/<entry>/<run_id>.json          entry, recipe, seed, data fingerprint,
                                                           metrics, mean/std, input size, classes,
                                                           sha256 of the .safetensors, created_at

Files are written atomically (temporary file in the same directory, then rename) and never
overwritten unless asked. The entry name is also written into the safetensors header, so a file
that lost its sidecar still cannot be loaded into another entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError

DEFAULT_HOME = Path("~/.cache/cifarzoo")


def home() -> Path:
    """$CIFARZOO_HOME, or ~/.cache/cifarzoo."""
    return Path(os.environ.get("CIFARZOO_HOME") or DEFAULT_HOME).expanduser()


def store_dir() -> Path:
    """Where trained weights live: $CIFARZOO_HOME/weights."""
    return home() / "weights"


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: Any, entry: str, run_id: str, meta: dict[str, Any],
                 overwrite: bool = False) -> tuple[Path, str]:
    """Write <store>/<entry>/<run_id>.safetensors and its .json sidecar; returns (path, sha256)."""
    from safetensors.torch import save

    if not run_id or "/" in run_id or run_id.startswith("."):
        raise CifarzooError(f"run id '{run_id}' cannot name a weights file; use letters, digits, '-' and '_'.")
    folder = store_dir() / entry
    path = folder / f"{run_id}.safetensors"
    side = sidecar_path(path)
    if not overwrite and (path.exists() or side.exists()):
        raise CifarzooError(f"weights {path} already exist; pass --force to replace them.")
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its original's keys
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"entry": entry, "run_id": run_id, "format": "cifarzoo-weights-1"})
    sha = hashlib.sha256(blob).hexdigest()
    sidecar = {**meta, "entry": entry, "run_id": run_id, "file": path.name, "sha256": sha, "bytes": len(blob),
               "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, blob, overwrite)
    _write_atomic(side, (json.dumps(sidecar, indent=1, sort_keys=True, default=str) + "\n").encode(), True)
    return path, sha


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of a weights file, None if it has none; CifarzooError if it is not valid JSON."""
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        raise CifarzooError(f"sidecar {side} is not valid JSON ({err.__class__.__name__}); "
                            "restore it or train the entry again.") from err
    if not isinstance(data, dict):
        raise CifarzooError(f"sidecar {side} does not hold a JSON object; restore it or train the entry again.")
    return data


def list_runs(entry: str) -> list[tuple[Path, dict[str, Any]]]:
    """Stored runs of `entry` as (weights path, sidecar); runs with a missing or unreadable part are left out."""
    folder = store_dir() / entry
    runs = []
    for side in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        path = side.with_suffix(".safetensors")
        try:
            meta = read_sidecar(path)
        except CifarzooError:
            continue
        if meta is not None and path.is_file():
            runs.append((path, meta))
    return runs


def find_best(entry: str) -> Path | None:
    """The stored run of `entry` with the highest test accuracy (then validation accuracy, then newest).

    Sweep trials (sidecar `sweep` set) are left out: each is another configuration of the entry (other
    architecture arguments or recipe), and picking among them by test accuracy would select on the test split.
    """

    def score(run: tuple[Path, dict[str, Any]]) -> tuple[float, float, str]:
        metrics = run[1].get("metrics") or {}
        return (_number(metrics.get("test_accuracy")), _number(metrics.get("val_accuracy")),
                str(run[1].get("created_at", "")))

    runs = [run for run in list_runs(entry) if not run[1].get("sweep")]
    return max(runs, key=score)[0] if runs else None


def read_weights(path: Path, entry: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, sidecar) of a weights file, checked against its sidecar's sha256 and `entry`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CifarzooError(f"weights file {path} does not exist; check the path or run `cifarzoo list`.")
    meta = read_sidecar(path) or {}
    if meta.get("sha256") and sha256_file(path) != meta["sha256"]:
        raise CifarzooError(f"weights file {path} does not match the sha256 in its sidecar (corrupt, truncated "
                            "or modified); train the entry again or restore the file.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for bad headers and short files
        raise CifarzooError(f"weights file {path} is not a readable safetensors file (corrupt or truncated); "
                            "train the entry again or restore the file.") from err
    owner = meta.get("entry") or header.get("entry")
    if entry is not None and owner is not None and owner != entry:
        raise CifarzooError(f"weights file {path} belongs to entry '{owner}', not '{entry}'; "
                            f"pass a file of '{entry}' or load '{owner}'.")
    return state, meta


def _write_atomic(path: Path, data: bytes, overwrite: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if `path` appeared meanwhile: never clobber a stored file
            except FileExistsError:
                raise CifarzooError(f"weights {path} already exist; pass --force to replace them.") from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise CifarzooError(f"weights {path} already exist; pass --force to replace them.") from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("-inf")
