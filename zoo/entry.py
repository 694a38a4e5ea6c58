"""An entry: an architecture, its arguments and a recipe, with the report it comes from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from zoo.cifar10 import CLASSES
from zoo.recipe import Recipe


@dataclass(frozen=True)
class Reported:
    """The reference report's own test numbers for this configuration (None where not reported)."""

    accuracy: float | None = None  # test accuracy, fraction 0..1
    loss: float | None = None  # test cross-entropy
    where: str = ""  # e.g. "report 000, table 2"
    note: str = ""  # caveats, e.g. "Kaggle test set of 300,000 images"
    per_class_accuracy: dict[str, float] = field(default_factory=dict)  # class name -> fraction, if reported


@dataclass(frozen=True)
class Entry:
    """A registered zoo entry, named `<architecture>-<recipe>`."""

    name: str
    architecture: str
    recipe: Recipe
    report: str  # "000".."004", or "cifarzoo" for entries of our own
    report_model: str  # the configuration's name in the report, e.g. "ResNet-12 (augmented)"
    family: str  # "cnn", "resnet", "rnn", "transformer", "mlp-mixer", "mlp", "pretrained"
    kind: str  # recipe kind shown on the site: "norm", "aug" or "ft" (fine-tune)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    reported: Reported = field(default_factory=Reported)
    pretrained: str | None = None  # torchvision weights enum, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    description: str = ""
    num_params: int | None = None  # parameter count (metadata; the tests recompute it from the builder)
    weights_url: str | None = None  # pinned trained weights (.safetensors) to fetch when none are stored
    weights_sha256: str | None = None  # sha256 of the file at weights_url; required with it
    classes: tuple[str, ...] = CLASSES  # what the network's outputs mean, in order

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        return data
