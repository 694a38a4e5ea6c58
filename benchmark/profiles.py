"""Profiles name the compute budget of a run; the profile is part of every record and table.

- smoke: seconds per entry; for tests and CI. Numbers are meaningless beyond "it learns". The two networks
  far heavier than the rest run as smaller instances of the same architecture (`Profile.small`).
- quick: a CPU budget: the whole zoo on the real data in under an hour on a 2-core CPU. A balanced
  subset of the train split, two epochs, the full 10,000-image test split. Sized from measured
  bf16 training speed on a 2-core AMD EPYC: ~190 GFLOP/s per core for the CNNs, so ResNet-12 at the
  report's widths (2.9 GFLOP per image) manages ~40 images/s and vit002's 20-head attention ~20.
- full: the entry's own recipe (the report's), all data, three seeds as report 001 did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.errors import unknown_name
from zoo.recipe import Recipe


@dataclass(frozen=True)
class Profile:
    name: str
    train_images: int | None  # balanced subset of the train split; None = the whole split
    val_images: int | None  # balanced subset of the validation split; None = all of it
    test_images: int | None  # balanced subset of the test split; None = all of it
    max_epochs: int | None  # cap on the recipe's max_epochs; None = the recipe's own
    max_batch_size: int | None  # cap, so tiny subsets still give several steps
    max_input_size: int | None  # cap on the input side (fine-tunes upsample to 224/384 px)
    parity_images: int | None  # test images compared between PyTorch and ONNX Runtime; None = all
    timing: str  # benchmark.timing budget preset: "smoke", "quick" or "full"
    seeds: tuple[int, ...]  # default seeds for `bench`
    description: str
    # architecture -> keyword arguments of a smaller instance this profile runs instead of the entry's own
    # (the record's arch_kwargs say so; publishing and local selection never take such a run)
    small: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, recipe: Recipe) -> Recipe:
        """The recipe this profile actually runs (stored in the record)."""
        changes: dict = {}
        if self.max_epochs is not None and recipe.max_epochs > self.max_epochs:
            # the schedule shrinks with the budget: warm-up keeps its share of the epochs, so a capped
            # one-cycle recipe still decays (airnet-fast's 2.5 warm-up epochs would outlast a 2-epoch cap)
            changes.update(max_epochs=self.max_epochs, eval_every=1,
                           min_epochs=min(recipe.min_epochs, self.max_epochs),
                           warmup_epochs=recipe.warmup_epochs * self.max_epochs / recipe.max_epochs)
        if self.max_batch_size is not None and recipe.batch_size > self.max_batch_size:
            changes["batch_size"] = self.max_batch_size
        if self.max_input_size is not None and recipe.input_size > self.max_input_size:
            changes["input_size"] = self.max_input_size
        return recipe.replace(**changes) if changes else recipe


PROFILES: dict[str, Profile] = {
    # smoke is sized for CI: two steps an epoch of small batches, since a smoke record only shows that an entry
    # runs end to end; the report-width ResNet-12 (2.9 GFLOP per image) was half of the whole-zoo smoke bench's
    # training at 128 images (57 s of 101, one thread, AVX2 host). Even so the ResNet-12 pair was 186 s of the
    # whole-zoo smoke bench's 462 on a Zen 1 VM, 40 %: smoke runs it at hidden 32 (1/16 of the FLOPs), and
    # vit002 with 4 of its 20 heads (its attention over 257 tokens was the next largest item)
    "smoke": Profile("smoke", 64, 32, 100, 2, 32, 64, 50, "smoke", (0,),
                     "64 training images, 2 epochs, batches of at most 32, inputs at most 64 px, 100 test images "
                     "(ONNX parity on 50 of them), ResNet-12 at hidden 32 and vit002 with 4 heads: seconds.",
                     small={"resnet12": {"hidden": 32}, "vit002": {"num_heads": 4}}),
    "quick": Profile("quick", 5_000, 1_000, None, 2, None, 64, 1_000, "quick", (0,),
                     "5,000 training images (balanced), 1,000 validation, 2 epochs at most, inputs at most "
                     "64 px, full test split (ONNX parity on a balanced 1,000 of it): about a minute per entry "
                     "on a 2-core CPU (ResNet-12: ~7)."),
    "full": Profile("full", None, None, None, None, None, None, None, "full", (0, 1, 2),
                    "the entry's own recipe on the whole train split (80/20 train/validation), seeds 0, 1, 2."),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise unknown_name("profile", name, PROFILES) from None
