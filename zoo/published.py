"""Weights the package publishes, as data (torchvision's `Weights` habit): one record per file.

The files live inside the package, in `zoo/published_weights/`, beside `weights.json`, a list of records:
entry, file, sha256, storage dtype, profile, data (file name, description, fingerprint, lossy), the seeds
trained and the one whose weights these are, metrics (test accuracy mean and sd over the seeds, the chosen
seed's validation accuracy, the shipped file's own test accuracy), the recipe as run, training time and
machine, parameter count, and what a user needs to feed the network (classes, mean/std, input size, TTA).

`get_weights(entry)` lists an entry's records with a `DEFAULT` (the one marked default, else the first);
`zoo.load(entry)` loads the DEFAULT offline, checked against its sha256. `cifarzoo publish` writes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError

FOLDER = Path(__file__).with_name("published_weights")
MANIFEST = "weights.json"
FORMAT = 1


@dataclass(frozen=True)
class Weights:
    """One published set of weights and everything known about how it was made."""

    entry: str
    file: str  # name inside zoo/published_weights/
    sha256: str
    dtype: str  # storage type of the floating-point tensors ("float16" or "float32"); loaded as float32
    profile: str
    run_id: str
    seed: int  # the seed whose weights these are (the best on validation among `seeds`)
    seeds: tuple[int, ...]  # the seeds whose records the metrics summarise
    data: dict[str, Any]  # source (file name), description, fingerprint, lossy
    metrics: dict[str, Any]  # test_accuracy_mean, test_accuracy_sd, val_accuracy, test_accuracy (this file), ...
    recipe: dict[str, Any]  # as run
    num_params: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    tta: str
    train_seconds: float | None = None
    machine: str = ""
    default: bool = False
    published_at: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return FOLDER / self.file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Weights:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("seeds", "classes", "mean", "std"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


class EntryWeights(tuple):
    """The published weights of one entry (a tuple of `Weights`), with `DEFAULT` as torchvision has it."""

    @property
    def DEFAULT(self) -> Weights | None:  # noqa: N802 (torchvision's spelling)
        marked = [w for w in self if w.default]
        return marked[0] if marked else (self[0] if self else None)


def read_manifest(folder: Path | None = None) -> list[Weights]:
    """Every published record; a damaged manifest is a packaging error, said in one sentence."""
    path = (folder or FOLDER) / MANIFEST
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        return [Weights.from_dict(item) for item in data["weights"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CifarzooError(f"the published weights manifest {path} is damaged ({type(err).__name__}); "
                            "reinstall cifarzoo.") from err


def get_weights(entry: str) -> EntryWeights:
    """The published weights of `entry` (possibly none), DEFAULT first in preference."""
    return EntryWeights(w for w in read_manifest() if w.entry == entry)


def write_manifest(records: list[Weights], folder: Path | None = None) -> Path:
    """Write the manifest (sorted by entry, then file) atomically."""
    from zoo.files import write_atomic

    items = [w.to_dict() for w in sorted(records, key=lambda w: (w.entry, w.file))]
    text = json.dumps({"format": FORMAT, "weights": items}, indent=1) + "\n"
    return write_atomic((folder or FOLDER) / MANIFEST, text)
