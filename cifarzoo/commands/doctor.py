"""`cifarzoo doctor`: the machine as cifarzoo sees it, and the precision and layout it trains in here."""

from __future__ import annotations

import json
import os
from typing import Any

import click


def report(refresh: bool = False) -> dict[str, Any]:
    """CPU, flags that decide speed, threads, GPU, load, and the fast-path probe (cached or measured now)."""
    import torch

    from benchmark import fastpath, machine

    cached = fastpath.cache_path().is_file() and not refresh
    figures = fastpath.probe(refresh=refresh)
    chosen = fastpath.choose("auto", None, "cpu")
    return {
        "cpu": machine.cpu_name(), "speed_flags": machine.speed_flags(), "isa_caps": machine.isa_caps(),
        "torch_cpu_capability": machine.torch_cpu_capability(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cores": os.cpu_count(), "load": machine.load_average(),
        "gpu": machine.gpu(), "probe": figures, "probe_cache": str(fastpath.cache_path()), "probe_cached": cached,
        "auto": {"precision": chosen.precision, "channels_last": chosen.channels_last, "chosen_by": chosen.source},
        "override": os.environ.get(fastpath.ENV) or None,
    }


@click.command()
@click.option("--refresh", is_flag=True, help="Measure the probe again instead of reading its cache.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(refresh: bool, as_json: bool) -> None:
    """Print the machine: CPU and its bf16/AMX flags, threads, GPU, load, the precision probe and its cache."""
    facts = report(refresh)
    if as_json:
        click.echo(json.dumps(facts, indent=1))
        return
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in facts["speed_flags"].items())
    gpu = facts["gpu"]
    load = facts["load"]
    from benchmark.machine import contended, isa_caps_text

    busy = " (busy: timings now would be contended)" if contended([load]) else ""
    probe = facts["probe"]
    lines = [
        f"cpu          {facts['cpu']}; torch kernels: {facts['torch_cpu_capability']}",
        f"flags        {flags}",
        *([f"capped       {isa_caps_text()}: kernels use no more than that instruction set"]
          if facts["isa_caps"] else []),
        f"threads      {facts['threads']} of {facts['cores']} cores; load {load}{busy}",
        f"gpu          {gpu['name'] + (' (bf16)' if gpu['bf16'] else ' (no bf16)') if gpu else 'none'}",
        f"torch        {facts['torch']}",
        f"probe        {'cached' if facts['probe_cached'] else 'measured now'} ({probe['measured_at']}, "
        f"{probe['threads']} threads, load {probe['load']}, {probe['seconds']} s): {facts['probe_cache']}",
        "  ms per training step (best of 3)    fp32     bf16",
    ]
    conv, matmul = probe["ms_per_step"]["conv"], probe["ms_per_step"]["matmul"]
    for layout in ("nchw", "channels_last"):
        lines.append(f"  conv, {layout:<28} {conv[f'fp32-{layout}']:>7.1f}  {conv[f'bf16-{layout}']:>7.1f}")
    lines.append(f"  {'matmul + layer norm':<34} {matmul['fp32']:>7.1f}  {matmul['bf16']:>7.1f}")
    auto = facts["auto"]
    override = f"; $CIFARZOO_PRECISION={facts['override']}" if facts["override"] else ""
    lines.append(f"auto         precision {auto['precision']}, channels_last {auto['channels_last']} "
                 f"(chosen by {auto['chosen_by']}{override})")
    click.echo("\n".join(lines))
