"""The training engine: early-stopping rules, schedules, selection on validation, exact resume."""

import pytest
import torch
from helpers import stop_after
from torch import nn

from benchmark.loader import DeviceLoader
from benchmark.train import EarlyStopper, TrainingDiverged, fit, lr_factor
from zoo.recipe import EarlyStopping, Recipe


def rows(val_loss=None, val_acc=None, train_acc=None):
    n = len(val_loss or val_acc)
    return [{"val_loss": (val_loss or [0] * n)[i], "val_acc": (val_acc or [0] * n)[i],
             "train_acc": (train_acc or [0] * n)[i]} for i in range(n)]


def stop_epoch(rule, min_epochs, curve):
    stopper = EarlyStopper(rule, min_epochs)
    for epoch, row in enumerate(curve, start=1):
        _, reason = stopper.update(epoch, row)
        if reason:
            return epoch, reason
    return None, ""


def test_report000_rule_val_loss_patience_5():
    # best loss at epoch 3, then 5 epochs without improvement -> stops after epoch 8
    curve = rows(val_loss=[1.0, 0.8, 0.7, 0.75, 0.71, 0.9, 0.72, 0.8, 0.6])
    epoch, reason = stop_epoch(EarlyStopping("val_loss", patience=5), 0, curve)
    assert epoch == 8 and "val_loss" in reason


def test_report001_rule_min_epochs_then_patience_4_on_accuracy():
    # accuracy plateaus from epoch 2 on; the rule may not fire before epoch 30
    curve = rows(val_acc=[0.5, 0.6] + [0.6] * 40)
    epoch, _ = stop_epoch(EarlyStopping("val_acc", patience=4), 30, curve)
    assert epoch == 30
    epoch, _ = stop_epoch(EarlyStopping("val_acc", patience=4), 0, curve)
    assert epoch == 6  # epochs 3,4,5,6 without improvement


def test_report004_rule_train_val_gap():
    curve = rows(val_acc=[0.5, 0.6, 0.65, 0.66], train_acc=[0.5, 0.65, 0.74, 0.80])
    epoch, reason = stop_epoch(EarlyStopping("val_acc", patience=10, max_train_val_gap=0.10), 0, curve)
    assert epoch == 4 and "exceeded" in reason  # gap 0.14 > 0.10 at epoch 4 (0.09 at epoch 3)


def test_min_delta_counts_small_gains_as_no_improvement():
    curve = rows(val_acc=[0.5, 0.5005, 0.501, 0.5015])
    epoch, _ = stop_epoch(EarlyStopping("val_acc", patience=3, min_delta=0.01), 0, curve)
    assert epoch == 4


def test_schedules():
    r = Recipe(scheduler="exponential", gamma=0.9, max_epochs=10)
    assert lr_factor(r, 0, 10) == 1.0 and lr_factor(r, 25, 10) == pytest.approx(0.81)
    c = Recipe(scheduler="cosine", max_epochs=10)
    assert lr_factor(c, 0, 10) == 1.0 and lr_factor(c, 50, 10) == pytest.approx(0.5) and lr_factor(c, 100, 10) < 1e-9
    o = Recipe(scheduler="onecycle", warmup_epochs=1, max_epochs=5)
    assert lr_factor(o, 4, 10) == pytest.approx(0.5) and lr_factor(o, 9, 10) == 1.0 and lr_factor(o, 49, 10) < 0.03


def toy_data(n=240, seed=0):
    """A learnable toy problem: the class is the brightest colour channel of a blob."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randint(0, 80, (n, 32, 32, 3), generator=g, dtype=torch.uint8)
    x[torch.arange(n), 8:24, 8:24, y] = 220
    return x, y


def make_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 3))


def loaders(policy=()):
    x, y = toy_data()
    kw = dict(mean=[0.3] * 3, std=[0.3] * 3, seed=0)
    from benchmark.augment import get_policy

    aug = get_policy("aug") if policy else ()
    train = DeviceLoader(x[:180], y[:180], batch_size=32, shuffle=True, policy=aug, **kw)
    val = DeviceLoader(x[180:], y[180:], batch_size=64, **kw)
    return train, val


RECIPE = Recipe(lr=3e-3, batch_size=32, max_epochs=4, precision="fp32", scheduler="cosine", ema_decay=None)


def test_fit_learns_selects_on_validation_and_records_history():
    train, val = loaders()
    result = fit(make_net(), RECIPE, train, val)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"} <= set(result.history[0])
    best = max(result.history, key=lambda r: r["val_acc"])
    assert result.best_epoch == best["epoch"]
    assert best["val_acc"] > 0.9  # three colours: far above chance (1/3)


@pytest.mark.parametrize("recipe", [RECIPE, RECIPE.replace(ema_decay=0.9, precision="bf16", augment="aug")])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, recipe):
    policy = recipe.augment != "norm"
    full = fit(make_net(), recipe, *loaders(policy), checkpoint=tmp_path / "a.ckpt")
    ckpt = tmp_path / "b.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(make_net(), recipe, *loaders(policy), checkpoint=ckpt, on_epoch=stop_after(2))
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    torch.manual_seed(123)  # a resumed process starts with other RNG state; the checkpoint restores it
    resumed = fit(make_net(), recipe, *loaders(policy), checkpoint=ckpt)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in full.history]
    assert [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in resumed.history] == strip
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


class DivergesInEpoch2(nn.Module):
    """Scripted divergence: NaN outputs from the 7th training step on (6 steps per epoch here)."""

    def __init__(self):
        super().__init__()
        self.net, self.steps = make_net(), 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.steps += 1
            if self.steps > 6:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_epoch_and_keeps_last_good_checkpoint(tmp_path):
    train, val = loaders()
    assert len(train) == 6
    ckpt = tmp_path / "c.ckpt"
    with pytest.raises(TrainingDiverged) as err:
        fit(DivergesInEpoch2(), RECIPE, train, val, checkpoint=ckpt)
    assert err.value.epoch == 2 and "epoch 2" in str(err.value)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
