"""Export to ONNX, open it in ONNX Runtime, and check parity with PyTorch.

Exporter choice (torch 2.15): the dynamo exporter (`torch.onnx.export(..., dynamo=True)`, built on
`torch.export`) is tried first. It exported every zoo architecture we tried (CNNs, ResNets, GRU,
ViT, MLP-Mixer, torchvision's pretrained families) with logits equal to PyTorch's to ~1e-6, and it
is the maintained path; the TorchScript exporter is deprecated ("will be removed") but is 10-20x
faster to run, so it is kept as a fallback for a model that `torch.export` cannot trace. Recurrent
nets are the exception, exported by TorchScript first: both exporters write the same four ONNX `GRU`
nodes for the zoo's GRU, but `torch.export` spends 33 s on its symbolic batch dimension through the
unrolled recurrence where TorchScript takes 0.3 s (one thread, AVX2 host). The exporter used is stored
in `ExportResult.exporter` and in each record's `onnx.exporter`. `$CIFARZOO_ONNX_EXPORTER=torchscript` tries
TorchScript first for every net (the other exporter stays the fallback): a fresh process exports cnn3 in
1.5 s instead of 8.6 s (one thread, AVX2 host), most of it `torch.export`'s first trace and onnxscript's
import; the test suite sets it for all but the tests of the exporters themselves and the whole-zoo bench,
which keep the default. The batch axis is dynamic (input `images`,
output `logits`, both `[batch, ...]`); the example batch is 2 so the exporter cannot specialise it
to 1. Files are single-file ONNX (weights inline), written atomically.

Failures to export are results, not exceptions (`ok=False` and a one-line `reason`): a leaderboard
row says why an architecture has no ONNX numbers. An output path that cannot be written is a user
error (CifarzooError).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.modelstats import cpu_fp32_eval
from zoo.errors import CifarzooError, one_line
from zoo.files import new_file_mode

INPUT_NAME, OUTPUT_NAME = "images", "logits"
PARITY_MIN_AGREEMENT = 0.999  # top-1 agreement below this marks an export as failing parity
EXPORTERS = ("dynamo", "torchscript")
EXPORTER_ENV = "CIFARZOO_ONNX_EXPORTER"
SPINNING_MODES = ("off", "on", "run")
SPINNING = "off"  # decided by measurement, see tests/perf/perf_inference.py --spinning and the README


@dataclass
class ExportResult:
    """What an export produced: a checked file, or the reason there is none."""

    ok: bool
    path: Path | None
    reason: str | None
    opset: int
    bytes: int | None
    exporter: str | None = None  # "dynamo" or "torchscript" (the fallback); None when both failed


def export_onnx(model: nn.Module, path: Path, input_size: int = 32, opset: int = 18,
                metadata: dict[str, Any] | None = None) -> ExportResult:
    """Export `model` (fp32, eval, CPU) to `path` with a dynamic batch axis and check it with onnx.checker.

    `metadata` goes into the file's `metadata_props` (values as JSON text): by default the preprocessing a
    loaded zoo model carries (`model.cifarzoo`: entry, classes, mean, std, input size, weights sha256), so the
    file can be used without cifarzoo."""
    path = Path(path)
    check_output_path(path)
    net = cpu_fp32_eval(model)
    example = torch.randn(2, 3, input_size, input_size)
    failures = []
    for exporter in exporter_order(net):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=".onnx", dir=path.parent)
        os.close(fd)
        try:
            _export(net, example, Path(tmp), opset, exporter)
            _check(Path(tmp))
            _stamp(Path(tmp), metadata if metadata is not None else preprocessing_metadata(model))
            os.chmod(tmp, new_file_mode())  # mkstemp's file is private
            os.replace(tmp, path)
            return ExportResult(True, path, None, opset, path.stat().st_size, exporter)
        except Exception as err:  # noqa: BLE001 (any exporter failure is a recorded reason)
            failures.append(f"{exporter}: {one_line(err, root=True, limit=200)}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    return ExportResult(False, None, "ONNX export failed (" + "; ".join(failures) + ")", opset, None)


def exporter_order(net: nn.Module) -> tuple[str, ...]:
    """The exporters to try, in order: $CIFARZOO_ONNX_EXPORTER's first where it is set, else dynamo first and
    TorchScript first for a recurrent net (module docstring)."""
    first = exporter_override() or ("torchscript" if any(isinstance(m, nn.RNNBase) for m in net.modules())
                                     else "dynamo")
    return (first, *(e for e in EXPORTERS if e != first))


def exporter_override() -> str | None:
    """$CIFARZOO_ONNX_EXPORTER (dynamo or torchscript), None when unset; any other value is a user error."""
    value = os.environ.get(EXPORTER_ENV, "").strip().lower()
    if value and value not in EXPORTERS:
        raise CifarzooError(f"${EXPORTER_ENV} is '{value}'; set it to dynamo or torchscript, or unset it.")
    return value or None


def preprocessing_metadata(model: nn.Module) -> dict[str, Any]:
    """What a consumer of the ONNX file needs: input layout, and a zoo model's card where it has one."""
    card = getattr(model, "cifarzoo", None)
    meta: dict[str, Any] = {"producer": "cifarzoo", "input": "float32 NCHW images: (pixel / 255 - mean) / std"}
    if card is not None:
        meta.update(entry=card.entry, classes=list(card.classes), mean=list(card.mean), std=list(card.std),
                    input_size=card.input_size, weights_sha256=card.sha256, tta=card.tta)
    return meta


def _stamp(path: Path, metadata: dict[str, Any]) -> None:
    import json

    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(proto, str(path))


def _export(net: nn.Module, example: torch.Tensor, path: Path, opset: int, exporter: str) -> None:
    common: dict[str, Any] = dict(opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(net, (example,), str(path), dynamo=True, verbose=False, external_data=False,
                              dynamic_shapes=({0: batch},), **common)
        else:
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
            torch.onnx.export(net, (example,), str(path), dynamo=False, dynamic_axes=axes, **common)


@contextlib.contextmanager
def _quiet():
    """Silence both exporters: progress lines, deprecation and tracer warnings, and the TorchScript
    exporter's C++ dump of the graph on failure (written straight to file descriptor 2)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _check(path: Path) -> None:
    """onnx.checker on the file, and the batch axis really dynamic (a fixed 2 would break batch 1)."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path), load_external_data=False).graph
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        raise ValueError(f"batch axis was exported as the fixed size {dim.dim_value}")


def check_output_path(path: Path) -> None:
    """CifarzooError unless a file can be written at `path` (missing parent folders are created)."""
    path = Path(path)
    if path.is_dir():
        raise CifarzooError(f"output path '{path}' is a directory; give a file name such as '{path}/model.onnx'.")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise CifarzooError(f"cannot write '{path}': '{blocker}' is a file, not a folder; choose another path.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise CifarzooError(
            f"cannot write the ONNX file '{path}' ({err.strerror or err}); choose a writable location."
        ) from None


def ort_session(path: Path, threads: int, device: str = "cpu", spinning: str = SPINNING) -> Any:
    """An ONNX Runtime session: full graph optimisation, `threads` intra-op threads, one inter-op thread.

    `spinning`: "off" (idle workers block), "on" (ORT's default: workers spin-wait, also between runs), or
    "run" (spin inside a run, stop when it returns: `session.force_spinning_stop`). See SPINNING.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise CifarzooError(f"ONNX file '{path}' does not exist; export it first with `cifarzoo export`.")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if spinning not in SPINNING_MODES:
        raise ValueError(f"spinning must be one of {SPINNING_MODES}, got {spinning!r}")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spinning == "off" else "1")
    if spinning == "run":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # noqa: BLE001 (ORT raises its own exception types for bad files)
        raise CifarzooError(
            f"ONNX Runtime cannot load '{path}' ({one_line(err, root=True, limit=200)}); "
            "re-export it with `cifarzoo export`."
        ) from None


def parity(model: nn.Module, session: Any, images: torch.Tensor, batch_size: int = 32) -> dict[str, Any]:
    """Max |logit difference| and top-1 agreement of PyTorch (fp32) and ORT on normalised NCHW images.

    Batches of 32: ORT runs attention unfused, and at 256 vit002's (20 heads over 257 tokens, 1.35 GB a score
    matrix) took the process from 0.9 to 10.9 GB, most of the quick bench's 13.7 GB peak; at 32 it peaks at 2.3.
    """
    on_cuda = "CUDAExecutionProvider" in session.get_providers() and torch.cuda.is_available()
    net = cpu_fp32_eval(model)
    device = "cuda" if on_cuda else "cpu"
    if on_cuda:
        net = net.to(device)
    input_name = session.get_inputs()[0].name
    max_diff, agree, total = 0.0, 0, 0
    with torch.inference_mode(), _no_tf32():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].float()
            ours = net(batch.to(device)).float().cpu()
            theirs = torch.from_numpy(session.run(None, {input_name: batch.cpu().contiguous().numpy()})[0])
            max_diff = max(max_diff, (ours - theirs).abs().max().item())
            agree += (ours.argmax(1) == theirs.argmax(1)).sum().item()
            total += len(batch)
    agreement = agree / max(total, 1)
    return {"max_abs_diff": max_diff, "top1_agreement": agreement, "parity_ok": agreement >= PARITY_MIN_AGREEMENT,
            "n_images": total}


@contextlib.contextmanager
def _no_tf32():
    """fp32 really in fp32 on the GPU during parity (TF32 alone moves logits by ~1e-3)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
