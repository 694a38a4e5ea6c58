"""Precision and memory layout chosen by measurement: the fast path's probe.

bf16 autocast is only fast where the CPU computes bf16 natively (AVX512-BF16, AMX); on an AVX2-only CPU
oneDNN emulates it and a training step runs 12-30x slower than fp32. So a recipe's `precision="auto"`
(the default) and `channels_last=None` are settled here, once per machine, by timing what matters:

- a convolution step (conv-BN-ReLU stack, forward + backward + SGD) in fp32 and bf16, NCHW and NHWC;
- a matmul step (a transformer MLP block with layer norm, forward + backward + SGD) in fp32 and bf16.

Each configuration takes the best of a few repeats (a probe on a busy machine can only be slowed, never
sped up), a configuration already 3x slower than the leader is not repeated, and the whole probe takes a
few seconds. The precision with the smaller conv + matmul time wins; the layout is the faster conv layout
at that precision (a precision set by the recipe or the environment gets the faster layout at its own
precision, and so does evaluation, which is always fp32). The result is cached under
`$CIFARZOO_HOME/machine/`, keyed by CPU model, CPU flags, the kernel ISA caps in the environment
(`ONEDNN_MAX_CPU_ISA`, `ATEN_CPU_CAPABILITY`), device and torch version. On CUDA no probe runs:
bf16 where the GPU supports it, channels_last.

Overrides, strongest first: an explicit recipe field, `$CIFARZOO_PRECISION` (fp32 / bf16), the probe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmark import machine

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
ENV = "CIFARZOO_PRECISION"
PROBE_VERSION = 1  # bump when the probe's workload changes, so old cached choices are not reused
REPEATS = 3


@dataclass(frozen=True)
class FastPath:
    """What a run computes in, and why."""

    precision: str  # "fp32" or "bf16" (autocast)
    channels_last: bool
    source: str  # where the choice came from: "recipe", "environment", "probe", "cuda", "checkpoint"
    probe: dict[str, Any] | None = None  # the probe's figures (ms per step), when it decided

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(precision: str, channels_last: bool | None, device: str = "cpu") -> FastPath:
    """Settle a recipe's `precision` ("auto" / "fp32" / "bf16") and `channels_last` (None / bool)."""
    if precision != "auto" and channels_last is not None:
        return FastPath(precision, channels_last, "recipe")
    if device.startswith("cuda"):
        import torch

        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        chosen = FastPath("bf16" if bf16 else "fp32", True, "cuda")
    else:
        figures = probe(device)
        chosen = FastPath(figures["choice"]["precision"], figures["choice"]["channels_last"], "probe", figures)
    env = environment_override()
    if precision == "auto" and env:
        chosen = _with_precision(chosen, env, "environment")
    if precision != "auto":
        chosen = _with_precision(chosen, precision, "recipe")
    if channels_last is not None:
        chosen = FastPath(chosen.precision, channels_last, chosen.source, chosen.probe)
    return chosen


def _with_precision(chosen: FastPath, precision: str, source: str) -> FastPath:
    """`chosen` in another precision, with the layout the probe timed faster in that precision (fp32 on a
    bf16 host need not share bf16's layout); the probe's own layout where it has no figures for it."""
    conv = (chosen.probe or {}).get("ms_per_step", {}).get("conv", {})
    fast, plain = conv.get(f"{precision}-channels_last"), conv.get(f"{precision}-nchw")
    layout = chosen.channels_last if fast is None or plain is None else fast < plain
    return FastPath(precision, layout, source, chosen.probe)


def environment_override() -> str | None:
    """$CIFARZOO_PRECISION (fp32 or bf16), None when unset; any other value is a user error."""
    env = os.environ.get(ENV, "").strip().lower()
    if env and env not in PRECISIONS:
        from zoo.errors import CifarzooError

        raise CifarzooError(f"${ENV} is '{env}'; set it to fp32 or bf16, or unset it to let the probe decide.")
    return env or None


# ----------------------------------------------------------------------------- the probe


def cache_key(device: str = "cpu") -> str:
    """What the probe's answer depends on: CPU model and flags, the instruction-set caps in the environment
    (a CPU capped to AVX2 emulates bf16), device, torch version, probe version."""
    import torch

    blob = json.dumps([machine.cpu_model(), machine.cpu_flags(), device, torch.__version__, PROBE_VERSION])
    if machine.isa_caps():  # appended only when set, so existing caches keep their keys
        blob += json.dumps(machine.isa_caps(), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(device: str = "cpu") -> Path:
    from zoo.weights import home

    return home() / "machine" / f"fastpath-{cache_key(device)}.json"


def probe(device: str = "cpu", *, refresh: bool = False) -> dict[str, Any]:
    """The cached probe result for this machine, measuring it first if there is none (or `refresh`)."""
    path = cache_path(device)
    if not refresh and path.is_file():
        try:
            cached = json.loads(path.read_text())
            if isinstance(cached, dict) and cached.get("key") == cache_key(device) and "choice" in cached:
                return cached
        except (OSError, ValueError):
            log.warning("fast-path cache %s is unreadable; probing again", path)
    result = measure(device)
    try:
        from zoo.files import write_atomic

        write_atomic(path, json.dumps(result, indent=1) + "\n")
    except Exception as err:  # an unwritable home only costs a probe next time
        log.warning("could not cache the fast-path probe in %s: %s", path, err)
    return result


def measure(device: str = "cpu") -> dict[str, Any]:
    """Time the probe's steps now; returns the figures (ms per step, best of repeats) and the choice."""
    import torch

    t0 = time.perf_counter()
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        conv = race({(p, cl): _conv_step(p, cl, device) for p in PRECISIONS for cl in (False, True)})
        matmul = race({p: _matmul_step(p, device) for p in PRECISIONS})
    finally:
        torch.set_rng_state(rng)  # the probe must not move a run's random stream
    total = {p: min(conv[(p, False)], conv[(p, True)]) + matmul[p] for p in PRECISIONS}
    precision = min(PRECISIONS, key=lambda p: total[p])
    return {
        "key": cache_key(device), "version": PROBE_VERSION, "device": device, "cpu": machine.cpu_model(),
        "speed_flags": machine.speed_flags(), "isa_caps": machine.isa_caps(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load": machine.load_average(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ms_per_step": {
            "conv": {f"{p}-{'channels_last' if cl else 'nchw'}": round(ms, 3) for (p, cl), ms in conv.items()},
            "matmul": {p: round(ms, 3) for p, ms in matmul.items()},
        },
        "choice": {"precision": precision, "channels_last": conv[(precision, True)] < conv[(precision, False)]},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def race(steps: dict[Any, Callable[[], None]]) -> dict[Any, float]:
    """Best-of-REPEATS milliseconds per configuration, after one warm-up call each; a configuration whose
    latest time is over 3x the current leader's best stops early (more repeats cannot make it win)."""
    best: dict[Any, float] = {}
    for step in steps.values():
        step()  # warm-up: kernel selection, allocation
    for _ in range(REPEATS):
        leader = min(best.values(), default=float("inf"))
        for name, step in steps.items():
            if name in best and best[name] > 3 * leader:
                continue
            t = time.perf_counter()
            step()
            best[name] = min(best.get(name, float("inf")), 1000 * (time.perf_counter() - t))
    return best


def _conv_step(precision: str, channels_last: bool, device: str) -> Callable[[], None]:
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).to(device)
    x = torch.randn(32, 3, 16, 16, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return _train_step(model, x, precision, device)


def _matmul_step(precision: str, device: str) -> Callable[[], None]:
    import torch
    from torch import nn

    model = nn.Sequential(nn.LayerNorm(128), nn.Linear(128, 256), nn.GELU(), nn.Linear(256, 128),
                          nn.Flatten(), nn.Linear(64 * 128, 10)).to(device)
    return _train_step(model, torch.randn(32, 64, 128, device=device), precision, device)


def _train_step(model: Any, x: Any, precision: str, device: str) -> Callable[[], None]:
    import torch

    y = torch.arange(len(x), device=device) % 10
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    dev = torch.device(device)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return step


def autocast(device: Any, precision: str) -> Any:
    """The autocast context of a precision: bf16 autocast, or a disabled one for fp32."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
