"""The measuring helpers of tests/perf: the FLOP count behind perf_train_speed's GEMM ceiling, and the timing of a
network's convolutions alone behind its second ceiling; and how perf_train_speed combines an entry's processes."""

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent / "perf"))
import perfkit  # noqa: E402
from perfkit import conv_step_ms, peak_gflops, train_flops_per_image  # noqa: E402


def test_train_flops_count_forward_and_weight_gradient_per_image():
    # a linear layer on the image: forward 2 * 3072 * 10 per image; backward only the weight gradient (the
    # input needs none), the same again; the bias is element-wise and not counted
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert train_flops_per_image(model) == 2 * (2 * 3072 * 10)


def test_train_flops_of_a_hidden_conv_count_its_input_gradient_too():
    # conv(3->8) then conv(8->8), 3x3 at 32x32: the first has forward + weight gradient, the second forward,
    # weight and input gradients (3x its forward)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, padding=1, bias=False))
    first, second = 2 * 32 * 32 * 8 * 3 * 9, 2 * 32 * 32 * 8 * 8 * 9
    assert train_flops_per_image(model) == 2 * first + 3 * second


def test_train_flops_leave_the_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 3, 32, 32))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_flops_per_image(model)
    assert not model.training and model[0].weight.grad is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_peak_is_a_positive_rate():
    assert peak_gflops("fp32", n=256, repeats=2) > 0.1


def test_conv_step_times_every_convolution_at_its_shape_as_a_training_step(monkeypatch):
    seen = []

    def one_call(fn, repeats=3):  # records what would be timed, runs it once
        conv, x, precision = fn.args
        fn()
        seen.append((conv.weight.shape, tuple(x.shape), x.requires_grad, x.is_contiguous(
            memory_format=torch.channels_last), conv.weight.grad is not None, "forward" in conv.__dict__, precision))
        return 1.5

    monkeypatch.setattr(perfkit, "best_ms", one_call)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1),
                          nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 3, 32, 32))
    assert conv_step_ms(model, 5, 32, "fp32", True) == 3.0  # two convolutions, the linear layer not timed
    # the first reads the image (no input gradient), the second a hidden map of the stride-2 output's shape;
    # each in the layout asked for, its weight gradient computed
    assert seen == [((8, 3, 3, 3), (5, 3, 32, 32), False, True, True, False, "fp32"),
                    ((4, 8, 3, 3), (5, 8, 16, 16), True, True, True, False, "fp32")]
    seen.clear()
    conv_step_ms(model, 2, 32, "fp32", False, engine=True)  # as fit runs them: benchmark.convgrad's wrapper
    assert [(s[3], s[5]) for s in seen] == [(False, True), (False, True)]
    assert all(m.weight.grad is None and not m._forward_hooks and "forward" not in m.__dict__
               for m in model if isinstance(m, nn.Conv2d))  # the model itself untouched


def test_conv_step_takes_only_the_gradients_a_fine_tunes_step_needs(monkeypatch):
    seen = []

    def one_call(fn, repeats=3):
        conv, x, _ = fn.args
        fn()
        seen.append((x.requires_grad, conv.weight.grad is not None))
        return 1.0

    monkeypatch.setattr(perfkit, "best_ms", one_call)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))
    model[0].requires_grad_(False)  # a frozen stem: nothing below the second layer needs a gradient
    model[2].requires_grad_(False)  # a frozen layer after a trained one still passes its input gradient back
    conv_step_ms(model, 2, 16, "fp32", False)
    assert seen == [(False, False), (False, True), (True, False)]


def test_a_rule_survey_times_each_shape_once_and_sums_the_network_three_ways(capsys):
    survey, timed = perfkit.RuleSurvey("direct", "Winograd"), []

    def times(first, second):
        def time_both():
            timed.append((first, second))
            return first, second
        return time_both

    survey.layer(("a",), "layer a", times(10.0, 4.0), True)  # the rule takes the faster second way
    survey.layer(("b",), "layer b", times(3.0, 5.0), True)  # ... and the slower one here: a miss of 2 ms
    survey.layer(("a",), "layer a again", times(99.0, 99.0), False)  # same shape: the first timing, not retimed
    survey.network("net", "its 3x3 layers")
    out = capsys.readouterr().out.splitlines()
    assert timed == [(10.0, 4.0), (3.0, 5.0)] and len(out) == 3
    assert out[0].endswith("rule: Winograd ok") and out[1].endswith("rule: Winograd MISS (2.0 ms)")
    # direct alone 10 + 3 + 10; the rule 4 + 5 + 4 (the cached verdict); the best 4 + 3 + 4
    assert out[2] == ("net: its 3x3 layers per step 23.0 ms by direct alone, 13.0 ms by the rule, "
                      "11.0 ms by the best of both")
    survey.network("next", "its 3x3 layers")  # the sums start again
    assert "0.0 ms by direct alone" in capsys.readouterr().out


def test_best_of_processes_takes_each_sides_fastest_epoch_and_keeps_every_epoch():
    from perf_train_speed import best_of

    rows = [{"entry": "mixer-aug", "reports_images_per_s": 470.0, "fast_images_per_s": 700.0,
             "reports_epochs_images_per_s": [460.0, 470.0], "fast_epochs_images_per_s": [690.0, 700.0],
             "conv_ms_reports": 9.0, "conv_ms_fast": 5.0},
            {"entry": "mixer-aug", "reports_images_per_s": 456.0, "fast_images_per_s": 990.0,
             "reports_epochs_images_per_s": [456.0, 450.0], "fast_epochs_images_per_s": [980.0, 990.0],
             "conv_ms_reports": 8.0, "conv_ms_fast": 6.0}]
    best = best_of(rows)
    assert (best["reports_images_per_s"], best["fast_images_per_s"], best["processes"]) == (470.0, 990.0, 2)
    assert best["fast_epochs_images_per_s"] == [690.0, 700.0, 980.0, 990.0]
    assert best["reports_epochs_images_per_s"] == [460.0, 470.0, 456.0, 450.0]
    assert (best["conv_ms_reports"], best["conv_ms_fast"]) == (8.0, 5.0)
    assert best_of(rows[:1]) is rows[0]  # one process: its row as measured, no "processes" key
