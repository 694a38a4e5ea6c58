"""`cifarzoo export ENTRY --out PATH` and `cifarzoo time ENTRY`: ONNX export, parity and inference timing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from cifarzoo.commands._common import resolve_device

weights_option = click.option(
    "--weights", type=click.Path(dir_okay=False, path_type=Path),
    help="A .safetensors file (default: the entry's best stored run; random weights if it has none).")
input_size_option = click.option(
    "--input-size", type=click.IntRange(8, 1024), help="Image side in pixels (default: the entry's recipe).")


@click.command()
@click.argument("entry")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="The .onnx file to write.")
@weights_option
@input_size_option
@click.option("--opset", type=click.IntRange(13, 23), default=18, show_default=True, help="ONNX opset version.")
@click.option("--parity-images", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Random normalised images on which ONNX Runtime is compared with PyTorch.")
def export(entry: str, out: Path, weights: Path | None, input_size: int | None, opset: int,
           parity_images: int) -> None:
    """Export ENTRY to ONNX (dynamic batch axis), check it, and compare it with PyTorch."""
    import torch

    from benchmark.modelstats import count_params, flops_per_image
    from benchmark.onnx_export import check_output_path, export_onnx, ort_session, parity

    check_output_path(out)  # before the (slow) model build
    model, note, size = _model(entry, weights, input_size)
    click.echo(note)
    result = export_onnx(model, out, input_size=size, opset=opset)
    if not result.ok:
        click.echo(f"error: {entry} could not be exported: {result.reason}", err=True)
        raise SystemExit(1)
    click.echo(f"wrote {result.path} ({_mb(result.bytes)}, opset {result.opset}, {result.exporter} exporter, "
               f"input 'images' [batch, 3, {size}, {size}] -> 'logits' [batch, 10])")
    click.echo(f"model: {count_params(model):,} parameters, {flops_per_image(model, size) / 1e6:,.1f} MFLOPs per image")
    images = torch.randn(parity_images, 3, size, size, generator=torch.Generator().manual_seed(0))
    check = parity(model, ort_session(out, torch.get_num_threads()), images)
    verdict = "ok" if check["parity_ok"] else "FAILED (top-1 agreement below 99.9%)"
    click.echo(f"parity with PyTorch on {check['n_images']} random normalised images: max |logit difference| "
               f"{check['max_abs_diff']:.2e}, top-1 agreement {100 * check['top1_agreement']:.2f}%: {verdict}")
    if not check["parity_ok"]:
        raise SystemExit(1)


@click.command("time")
@click.argument("entry", required=False)
@click.option("--results", "results", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Time the stored weights of this folder's records again (ENTRY: a name or glob to pick) and "
              "write timing records under RESULTS/timings/, which the site prefers when uncontended.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (model, onnx, timing).")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads for both runtimes (default: torch's count).")
@click.option("--budget", type=click.Choice(["smoke", "quick", "full"]), default="quick", show_default=True,
              help="Iterations and time cap (benchmark.timing presets).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where both runtimes run (ONNX Runtime uses its CUDA provider when installed).")
@click.option("--onnx", "onnx_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Time this ONNX file instead of a fresh export of ENTRY.")
@weights_option
@input_size_option
def time_cmd(entry: str | None, results: Path | None, as_json: bool, threads: int | None, budget: str, device: str,
             onnx_file: Path | None, weights: Path | None, input_size: int | None) -> None:
    """Time ENTRY in PyTorch and ONNX Runtime: batch-1 latency percentiles and batch throughput."""
    import torch

    from zoo.errors import CifarzooError

    if results is not None:
        if onnx_file or weights or input_size:
            raise CifarzooError("--results times the records' own weights; leave out --onnx, --weights and "
                                "--input-size.")
        _retime(results, entry, threads, budget, resolve_device(device))
        return
    if entry is None:
        raise CifarzooError("name the ENTRY to time, or pass --results DIR to time a results folder's weights.")

    from benchmark.modelstats import count_params, flops_per_image
    from benchmark.onnx_export import export_onnx, ort_session
    from benchmark.timing import BUDGETS, time_both

    device = resolve_device(device)
    threads = threads or torch.get_num_threads()
    spec_size = input_size or _entry_input_size(entry)
    if onnx_file is not None:  # a file that does not load or does not fit is a clear error before any timing
        _check_onnx_input(ort_session(onnx_file, threads), onnx_file, spec_size)
    model, note, size = _model(entry, weights, input_size, for_timing=True)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(model, Path(tmp) / "model.onnx", input_size=size) if onnx_file is None else None
        path = onnx_file if onnx_file is not None else (exported.path if exported.ok else None)
        timing = time_both(model, path, size, threads, BUDGETS[budget], device)
        onnx_bytes = path.stat().st_size if path is not None else None
    report: dict[str, Any] = {
        "entry": entry, "weights": note, "input_size": size, "budget": budget,
        "model": {"params": count_params(model), "flops_per_image": flops_per_image(model, size),
                  "onnx_bytes": onnx_bytes},
        "onnx": {"file": str(onnx_file) if onnx_file else None,
                 "exported": exported.ok if exported else None, "reason": exported.reason if exported else None,
                 "exporter": exported.exporter if exported else None},
        "timing": timing,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_timing(report)


def _retime(results: Path, pattern: str | None, threads: int | None, budget: str, device: str) -> None:
    import fnmatch

    from benchmark.timings import retime
    from cifarzoo.commands._common import command_line
    from leaderboard.records import gather
    from zoo.errors import CifarzooError

    records = [r for r in gather(results).records.values()
               if pattern is None or fnmatch.fnmatchcase(r["entry"]["name"], pattern)]
    if not records:
        raise CifarzooError(f"no record in {results} matches '{pattern}'; `cifarzoo leaderboard build` lists them.")
    for path in retime(results, sorted(records, key=lambda r: r["run_id"]), budget=budget, device=device,
                       threads=threads, command=command_line()):
        data = json.loads(path.read_text())
        t = data["timing"]
        ort = t["onnxruntime"]["batch1_ms"]["p50"] if t["onnxruntime"] else None
        state = "CONTENDED (load above the core count): not quoted" if t["contended"] else "ok"
        click.echo(f"{data['entry']}: PyTorch {t['torch']['batch1_ms']['p50']:.3f} ms, ONNX Runtime "
                   f"{'-' if ort is None else f'{ort:.3f} ms'} at batch 1 ({state}) -> {path}")


def _model(entry: str, weights: Path | None, input_size: int | None, for_timing: bool = False) -> tuple[Any, str, int]:
    """(network in eval mode, one sentence on which weights it has, input size)."""
    import zoo
    from zoo.hub import build
    from zoo.weights import find_best

    spec = zoo.get_entry(entry)
    size = input_size or spec.recipe.input_size
    if weights is not None or find_best(spec.name) is not None or spec.weights_url:
        model = zoo.load(entry, str(weights) if weights else None)
        return model, f"{entry}: trained weights from {model.cifarzoo.weights}", size
    why = "timing does not need trained weights" if for_timing else "exporting random weights"
    note = f"{entry}: no trained weights (train with `cifarzoo train {entry}` or pass --weights): {why}"
    return build(spec).eval(), note, size


def _entry_input_size(entry: str) -> int:
    import zoo

    return zoo.get_entry(entry).recipe.input_size


def _check_onnx_input(session: Any, path: Path, size: int) -> None:
    """CifarzooError unless the file takes [batch, 3, size, size] images."""
    from zoo.errors import CifarzooError

    shape = list(session.get_inputs()[0].shape)
    fits = len(shape) == 4 and all(not isinstance(d, int) or d == want for d, want in zip(shape[1:], (3, size, size)))
    if not fits:
        raise CifarzooError(f"ONNX file '{path}' takes input of shape {shape}, not [batch, 3, {size}, {size}]; "
                            "pass the matching --input-size or export this entry again.")


def _print_timing(report: dict[str, Any]) -> None:
    timing, model = report["timing"], report["model"]
    size = report["input_size"]
    click.echo(report["weights"])
    onnx_text = _mb(model["onnx_bytes"]) if model["onnx_bytes"] else f"not exported: {report['onnx']['reason']}"
    click.echo(f"input 3x{size}x{size}, {timing['device']}, {timing['threads']} threads, budget {report['budget']}; "
               f"{model['params']:,} parameters, {model['flops_per_image'] / 1e6:,.1f} MFLOPs/image, ONNX {onnx_text}")
    batch = timing["torch"]["batch_size"]
    header = f"batch-{batch} images/s"
    click.echo(f"{'runtime':<12} {'batch-1 p50':>11} {'p90':>8} {'p99':>8} (ms) {header:>19} {'timed calls':>12}")
    for runtime in ("torch", "onnxruntime"):
        row = timing[runtime]
        if row is None:
            continue
        ms = row["batch1_ms"]
        click.echo(f"{runtime:<12} {ms['p50']:>11.3f} {ms['p90']:>8.3f} {ms['p99']:>8.3f}      "
                   f"{row['batch_images_per_s']:>19,.0f} {row['iterations']:>5} + {row['batch_iterations']}")
    if max(timing["cpu_load"]) > timing["cpu_count"]:
        click.echo(f"note: the CPU was busy (load average {max(timing['cpu_load']):.1f} on {timing['cpu_count']} "
                   "cores): other processes distorted these numbers; time again on an idle machine.")
    if timing["onnxruntime"] is not None:
        click.echo(f"ONNX Runtime vs PyTorch: x{timing['speedup_batch1']:.2f} at batch 1 (p50), "
                   f"x{timing['speedup_batch']:.2f} at batch {batch} (throughput)")


def _mb(size: int | None) -> str:
    return f"{size / 1e6:.1f} MB" if size is not None else "-"
