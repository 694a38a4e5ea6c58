"""ONNX export, ONNX Runtime sessions, parity, and model statistics.

The zoo part exports the architectures the whole-zoo smoke bench does not (module-scoped fixture; export
is the slow step) with random weights made informative: zero-initialised layers (e.g. a classifier head) get
small random values and BatchNorm statistics are recomputed on random images, so logits spread out
and a top-1 comparison means something.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import zoo
from benchmark.modelstats import count_params, flops_per_image
from benchmark.onnx_export import EXPORTER_ENV, PARITY_MIN_AGREEMENT, export_onnx, exporter_order, ort_session, parity
from zoo.errors import CifarzooError


@pytest.fixture(scope="module", autouse=True)
def default_exporter():
    """The product's own exporter order, not the suite's TorchScript-first (tests/conftest.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(EXPORTER_ENV, "")
        yield


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One PyTorch thread: on a busy shared CPU, two OpenMP threads are many times slower, not faster."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> tuple[nn.Module, Path]:
    model = small_cnn()
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    result = export_onnx(model, path)
    assert result.ok, result.reason
    return model, path


def test_export_writes_a_checked_file_with_a_dynamic_batch(small_export):
    model, path = small_export
    assert path.stat().st_size > 1000
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.graph.input[0].name == "images"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed 2
    assert {op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")} == {18}
    session = ort_session(path, threads=1)
    for batch in (1, 5, 33):
        x = torch.randn(batch, 3, 32, 32)
        with torch.inference_mode():
            expected = model(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_export_result_fields(tmp_path):
    path = tmp_path / "sub" / "dir" / "m.onnx"  # missing folders are created
    result = export_onnx(small_cnn(), path, opset=17)
    assert (result.ok, result.path, result.reason, result.opset) == (True, path, None, 17)
    assert result.bytes == path.stat().st_size
    assert result.exporter == "dynamo"
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]  # no temporary files left behind


def test_the_environment_puts_an_exporter_first_and_keeps_the_other_as_fallback(monkeypatch):
    gru = zoo.create("gru", hidden=16, layers=1)
    assert exporter_order(small_cnn()) == ("dynamo", "torchscript") and exporter_order(gru) == ("torchscript", "dynamo")
    monkeypatch.setenv(EXPORTER_ENV, "TorchScript ")
    assert exporter_order(small_cnn()) == ("torchscript", "dynamo")
    monkeypatch.setenv(EXPORTER_ENV, "dynamo")
    assert exporter_order(gru) == ("dynamo", "torchscript")
    monkeypatch.setenv(EXPORTER_ENV, "tflite")
    with pytest.raises(CifarzooError, match="dynamo or torchscript"):
        exporter_order(small_cnn())


def test_a_recurrent_net_exports_by_torchscript_with_a_dynamic_batch_and_parity(tmp_path):
    model = zoo.create("gru", hidden=16, layers=2).eval()
    result = export_onnx(model, tmp_path / "gru.onnx")
    assert result.ok and result.exporter == "torchscript", result.reason
    assert [n.op_type for n in onnx.load(str(result.path)).graph.node].count("GRU") == 2  # the native op
    session = ort_session(result.path, threads=1)
    for batch in (1, 7):
        x = torch.randn(batch, 3, 32, 32)
        with torch.inference_mode():
            np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], model(x).numpy(), atol=1e-5)


def test_export_leaves_the_callers_model_alone(tmp_path):
    model = small_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert export_onnx(model, tmp_path / "m.onnx").ok
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@torch.library.custom_op("cifarzoo_test::no_onnx_op", mutates_args=())
def no_onnx_op(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@no_onnx_op.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Unexportable(nn.Module):
    """Uses an operator neither exporter can translate."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(no_onnx_op(x).flatten(1))


def test_a_failed_export_is_a_reason_not_a_crash(tmp_path, capfd):
    result = export_onnx(Unexportable(), tmp_path / "u.onnx", input_size=8)
    assert not result.ok and result.path is None and result.bytes is None and result.exporter is None
    assert "\n" not in result.reason and len(result.reason) < 600
    assert "dynamo" in result.reason and "torchscript" in result.reason and "no_onnx_op" in result.reason
    assert list(tmp_path.iterdir()) == []
    out, err = capfd.readouterr()
    assert "graph" not in out + err  # the exporters' dumps are silenced


def test_unwritable_paths_are_user_errors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CifarzooError, match="is a file, not a folder"):
        export_onnx(small_cnn(), blocker / "m.onnx")
    with pytest.raises(CifarzooError, match="is a directory"):
        export_onnx(small_cnn(), tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(CifarzooError, match="cannot write"):
            export_onnx(small_cnn(), locked / "m.onnx")


def test_sessions_refuse_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CifarzooError, match="does not exist"):
        ort_session(tmp_path / "nothing.onnx", threads=1)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf at all")
    with pytest.raises(CifarzooError, match="corrupt.onnx"):
        ort_session(corrupt, threads=1)


def test_session_options_follow_the_protocol(small_export):
    import onnxruntime as ort

    session = ort_session(small_export[1], threads=2)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_parity_of_a_faithful_export(small_export):
    model, path = small_export
    result = parity(model, ort_session(path, threads=1), torch.randn(300, 3, 32, 32), batch_size=128)
    assert result["n_images"] == 300
    assert result["max_abs_diff"] < 1e-5
    assert result["top1_agreement"] == 1.0 and result["parity_ok"] is True


def test_parity_catches_a_wrong_model(small_export):
    _, path = small_export
    other = small_cnn(seed=1)  # same architecture, different weights: the file no longer matches
    result = parity(other, ort_session(path, threads=1), torch.randn(200, 3, 32, 32))
    assert result["max_abs_diff"] > 1e-3
    assert result["top1_agreement"] < PARITY_MIN_AGREEMENT and result["parity_ok"] is False


def test_count_params_and_flops_by_hand():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert count_params(linear) == 3 * 32 * 32 * 10 + 10
    assert flops_per_image(linear) == 2 * 3 * 32 * 32 * 10  # one multiply-add = 2 FLOPs
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_params(conv) == 8 * 3 * 9
    assert flops_per_image(conv, input_size=16) == 2 * 8 * 16 * 16 * 3 * 9
    head = 2 * 16 * 10  # the classifier after global pooling does not grow with the image
    assert flops_per_image(small_cnn(), 64) - head == 4 * (flops_per_image(small_cnn(), 32) - head)


# ---- every zoo architecture -------------------------------------------------------------------------------


def _architectures() -> list[str]:
    """The architectures the whole-zoo smoke bench cannot export (tests/test_bench.py exports and checks
    every other one, trained): those only fine-tune entries use, which it skips without ImageNet weights."""
    import zoo

    benched = {zoo.get_entry(name).architecture for name in zoo.list_models() if not zoo.get_entry(name).pretrained}
    return sorted(set(zoo.list_architectures()) - benched)


def informative_random(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights whose logits differ between classes (see the module docstring)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and p.abs().max() == 0:
                nn.init.normal_(p, std=0.02)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    if norms:
        model.train()
        with torch.no_grad():
            model(torch.randn(32, 3, 32, 32))
    return model.eval()


@pytest.fixture(scope="module", params=_architectures())
def zoo_export(request, tmp_path_factory):
    import zoo

    name = request.param
    model = informative_random(zoo.create(name))
    result = export_onnx(model, tmp_path_factory.mktemp("zoo") / f"{name}.onnx")
    return name, model, result


def test_every_architecture_exports_with_parity(zoo_export):
    name, model, result = zoo_export
    assert result.ok, f"{name}: {result.reason}"
    images = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        logits = model(images)
    assert logits.std() > 1e-3, f"{name}: random logits too flat for a meaningful top-1 check"
    check = parity(model, ort_session(result.path, threads=1), images)
    assert check["max_abs_diff"] < 1e-4 * max(1.0, logits.abs().max().item()), name
    assert check["top1_agreement"] == 1.0 and check["parity_ok"], name


def test_every_architecture_is_exported_by_a_test():
    import zoo

    assert len(zoo.list_architectures()) >= 15
    assert set(_architectures()) == {"efficientnetv2-s", "mobilenetv3-small"}  # the rest: the whole-zoo bench


# ---- the CLI: `cifarzoo export` ----------------------------------------------------------------------------


def test_export_command_writes_the_file_and_reports_parity(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cifarzoo.cli import cli

    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path / "home"))  # no trained weights
    out = tmp_path / "cnn3.onnx"
    result = CliRunner().invoke(cli, ["export", "cnn3-basic", "--out", str(out), "--parity-images", "16"])
    assert result.exit_code == 0, result.output
    assert "no trained weights" in result.output and "exporting random weights" in result.output
    assert out.stat().st_size > 1000
    assert "top-1 agreement 100.00%: ok" in result.output


def test_export_command_refuses_an_unwritable_path(tmp_path):
    from click.testing import CliRunner

    from cifarzoo.cli import cli

    (tmp_path / "plain-file").write_text("x")
    result = CliRunner().invoke(cli, ["export", "cnn3-basic", "--out", str(tmp_path / "plain-file" / "m.onnx")])
    assert isinstance(result.exception, CifarzooError)  # main() prints it as one sentence, exit code 2
    assert "is a file, not a folder" in str(result.exception)
