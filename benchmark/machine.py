"""Facts about the machine a run happens on: CPU model and the flags that decide speed, load, GPU.

One home for them: records (`environment`), the fast-path probe's cache key, `cifarzoo doctor` and the
perf scripts all read the CPU here.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

# flags that decide which kernels oneDNN can use: bf16 is native only with avx512_bf16 or AMX,
# emulated (an order of magnitude slower than fp32) with avx2 / plain avx512f
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_fp16")
# variables that cap the instruction set oneDNN (convolutions, matmuls) and ATen (everything else) dispatch to:
# with ONEDNN_MAX_CPU_ISA=AVX2 an AVX512-BF16 CPU computes like an AVX2 one, bf16 emulated included
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    if info:  # the first processor's block is enough
                        break
                    continue
                key, value = line.split(":", 1)
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (falls back to platform facts)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "CPU"


def cpu_name() -> str:
    """Model name and core count, e.g. 'AMD EPYC (2 cores)'."""
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def host_line() -> str:
    """One line naming the host a measurement comes from, as the perf files and README rows do: model, family
    and model numbers (one name, 'AMD EPYC', covers generations of very different speed), cores, and the SIMD
    level with whether bf16 is native, e.g. 'AMD EPYC (family 25 model 1), 2 cores, AVX2, bf16 emulated'."""
    info, flags = _cpuinfo(), set(cpu_flags())
    generation = (f" (family {info['cpu family']} model {info['model']})"
                  if "cpu family" in info and "model" in info else "")
    line = f"{cpu_model()}{generation}, {os.cpu_count()} cores"
    if "sse2" not in flags:  # not x86 (or no /proc/cpuinfo): its flags name other things
        return line
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    bf16 = "bf16 native" if flags & {"avx512_bf16", "amx_bf16"} else "bf16 emulated"
    capped = f", kernels capped by {isa_caps_text()}" if isa_caps() else ""
    return f"{line}, {simd}, {bf16}{capped}"


def isa_caps_text(caps: dict[str, str] | None = None) -> str:
    """Caps as shell assignments, 'A=x B=y' ('' for none): `caps`, or those set in the environment."""
    return " ".join(f"{k}={v}" for k, v in (isa_caps() if caps is None else caps).items())


def isa_caps_in(line: str) -> dict[str, str]:
    """The caps a `host_line` names (its ', kernels capped by A=x B=y' ending), by name; {} where it names none."""
    _, capped, caps = line.partition(", kernels capped by ")
    return dict(item.split("=", 1) for item in caps.split() if "=" in item) if capped else {}


def cpu_flags() -> tuple[str, ...]:
    """All CPU flags, sorted (empty where /proc/cpuinfo is not readable)."""
    return tuple(sorted(set(_cpuinfo().get("flags", "").split())))


def isa_caps() -> dict[str, str]:
    """The instruction-set caps set in the environment (ISA_CAPS), by name; empty when none is."""
    return {name: os.environ[name].strip() for name in ISA_CAPS if os.environ.get(name, "").strip()}


def separate_inductor_cache() -> str | None:
    """Under ISA caps, point torch.compile's on-disk cache at a folder of the caps' own, and return it.

    Inductor's cache (`/tmp/torchinductor_$USER`) is not keyed on the caps: on a Zen 5 VM an uncapped suite run
    after a capped one aborted in a cached graph's oneDNN convolution, three runs of three, and passed with a
    fresh cache. A `TORCHINDUCTOR_CACHE_DIR` the user set is kept; so is the default when no cap is set.
    Inductor reads the variable on its first compile, so this runs when `benchmark` is imported.
    """
    caps = isa_caps()
    if not caps or os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return None
    # torch's default folder name, rebuilt here: its helper (torch._inductor.runtime.cache_dir_utils) imports
    # torch, 1.3 s that `import benchmark` does not otherwise pay
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", isa_caps_text(caps)).strip("-")
    folder = os.path.join(tempfile.gettempdir(), f"torchinductor_{user}-{slug}")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder


def speed_flags() -> dict[str, bool]:
    """Which of the flags that matter for training speed this CPU has."""
    flags = set(cpu_flags())
    return {flag: flag in flags for flag in SPEED_FLAGS}


def torch_cpu_capability() -> str:
    """The SIMD level PyTorch dispatches its own CPU kernels to ('AVX2', 'AVX512', ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # older torch
        return "unknown"


def load_average() -> float | None:
    """The 1-minute load average (None where the OS does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


BUSY_MARGIN = 0.5  # load beyond the cores that marks a measurement as shared: the measurement's own threads
# count in the load average (two threads on two cores make it ~2), so only what is above that is someone else


def contended(loads: Iterable[float | None], cores: int | None = None) -> bool:
    """A measurement taken while the load (before, after) exceeded the core count by BUSY_MARGIN shared the
    CPU with other processes: not quotable. `cores` defaults to this machine's (a record's own when re-read)."""
    cores = cores or os.cpu_count() or 1
    return any(isinstance(x, (int, float)) and x > cores + BUSY_MARGIN for x in loads)


def gpu() -> dict[str, Any] | None:
    """The CUDA device torch sees (name, capability, bf16 support), or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {"name": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()),
            "bf16": bool(torch.cuda.is_bf16_supported()), "count": torch.cuda.device_count()}
