"""Profiles: what each budget does to a recipe (the recipe a record stores is the one that ran)."""

from __future__ import annotations

import pytest

import zoo
from benchmark.profiles import get_profile
from benchmark.train import lr_factor
from zoo.errors import CifarzooError
from zoo.recipe import Recipe


def test_full_profile_runs_the_recipe_unchanged():
    recipe = zoo.get_entry("airnet-fast").recipe
    assert get_profile("full").apply(recipe) == recipe


def test_capped_epochs_shrink_the_warmup_with_the_schedule():
    recipe = Recipe(max_epochs=11, scheduler="onecycle", warmup_epochs=2.5)
    quick = get_profile("quick").apply(recipe)
    assert quick.max_epochs == 2
    assert quick.warmup_epochs == pytest.approx(2.5 * 2 / 11)
    # the capped one-cycle schedule peaks and decays to zero within the 2 epochs it runs
    steps = 10
    factors = [lr_factor(quick, s, steps) for s in range(2 * steps)]
    assert max(factors) == 1.0
    assert factors[-1] == pytest.approx(1 / (2 * steps - int(quick.warmup_epochs * steps)))


def test_smoke_caps_epochs_batch_and_input_size():
    recipe = Recipe(max_epochs=50, min_epochs=10, batch_size=256, input_size=224, warmup_epochs=0.0)
    smoke = get_profile("smoke").apply(recipe)
    assert (smoke.max_epochs, smoke.min_epochs, smoke.batch_size, smoke.input_size) == (2, 2, 32, 64)
    assert smoke.warmup_epochs == 0.0 and smoke.eval_every == 1


def test_unknown_profile_is_one_clear_error():
    with pytest.raises(CifarzooError, match=r"unknown profile 'fast'; closest names: .*"):
        get_profile("fast")


def test_smoke_runs_the_two_heaviest_networks_smaller_and_the_run_says_so():
    from benchmark.data import load_dataset
    from benchmark.modelstats import flops_per_image
    from benchmark.runner import prepare

    data = load_dataset("synthetic")
    assert prepare("resnet12-aug", 0, "smoke", data).arch_kwargs == {"hidden": 32}
    assert prepare("vit002-norm", 0, "smoke", data).arch_kwargs == {"num_heads": 4}
    assert prepare("tinyvgg-aug", 0, "smoke", data).arch_kwargs == {}  # the rest run as the report built them
    assert prepare("resnet12-aug", 0, "quick", data).arch_kwargs == {}  # quick and full: the entry's own network
    # a sweep's choice is the run's
    assert prepare("resnet12-aug", 0, "smoke", data, arch_overrides={"hidden": 64}).arch_kwargs == {"hidden": 64}
    # the run id follows the network: a smoke run is never taken for one of the report's network
    assert (prepare("resnet12-aug", 0, "smoke", data).run_id
            != prepare("resnet12-aug", 0, "smoke", data, arch_overrides={"hidden": 128}).run_id)
    full = flops_per_image(zoo.create("resnet12"))
    assert flops_per_image(zoo.create("resnet12", hidden=32)) < full / 12  # 1/16 but for the head
    # the attention's projections shrink 5x; the MLPs stay (the counter sees SDPA only when it runs unfused)
    assert flops_per_image(zoo.create("vit002", num_heads=4)) < 0.75 * flops_per_image(zoo.create("vit002"))
