"""Precision and layout chosen by measurement (benchmark.fastpath): the probe, its cache, the overrides,
and a resumed run keeping the choice it started with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark import fastpath, machine
from benchmark.train import resolve_fast_path
from zoo.errors import CifarzooError
from zoo.recipe import Recipe


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path))
    monkeypatch.delenv(fastpath.ENV, raising=False)
    return tmp_path


def _no_measuring(*_args, **_kwargs):
    raise AssertionError("the probe ran although its answer was cached or not needed")


def test_explicit_recipe_fields_need_no_probe(home, monkeypatch):
    monkeypatch.setattr(fastpath, "measure", _no_measuring)
    chosen = fastpath.choose("bf16", False, "cpu")
    assert (chosen.precision, chosen.channels_last, chosen.source, chosen.probe) == ("bf16", False, "recipe", None)


def test_probe_picks_the_fastest_it_measured_and_caches_it(home, monkeypatch):
    t0 = time.perf_counter()
    figures = fastpath.probe()
    assert time.perf_counter() - t0 < 30  # "a few seconds" on an idle 2-core CPU; generous under load
    conv, matmul = figures["ms_per_step"]["conv"], figures["ms_per_step"]["matmul"]
    assert set(conv) == {"fp32-nchw", "fp32-channels_last", "bf16-nchw", "bf16-channels_last"}
    assert all(ms > 0 for ms in [*conv.values(), *matmul.values()])
    total = {p: min(conv[f"{p}-nchw"], conv[f"{p}-channels_last"]) + matmul[p] for p in ("fp32", "bf16")}
    best = min(total, key=total.get)
    assert figures["choice"] == {"precision": best,
                                 "channels_last": conv[f"{best}-channels_last"] < conv[f"{best}-nchw"]}
    cache = fastpath.cache_path()
    assert cache.parent == home / "machine" and json.loads(cache.read_text())["choice"] == figures["choice"]
    monkeypatch.setattr(fastpath, "measure", _no_measuring)  # the second use reads the cache
    chosen = fastpath.choose("auto", None, "cpu")
    assert (chosen.precision, chosen.channels_last, chosen.source) == (best, figures["choice"]["channels_last"],
                                                                       "probe")
    assert chosen.probe["ms_per_step"] == figures["ms_per_step"]


def test_cache_key_follows_cpu_flags_and_torch_version(home, monkeypatch):
    key = fastpath.cache_key()
    monkeypatch.setattr(machine, "cpu_flags", lambda: ("avx2", "avx512_bf16"))
    assert fastpath.cache_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert fastpath.cache_key() != key


def test_cache_key_and_host_line_follow_the_kernel_isa_caps(home, monkeypatch):
    for name in machine.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    key, line = fastpath.cache_key(), machine.host_line()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert fastpath.cache_key() != key  # a capped CPU must not reuse the uncapped CPU's choice
    assert machine.host_line() == f"{line}, kernels capped by ONEDNN_MAX_CPU_ISA=AVX2"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert machine.isa_caps() == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert machine.isa_caps_in(machine.host_line()) == machine.isa_caps()  # a perf file's line gives them back
    assert machine.isa_caps_in(line) == {}


def test_a_capped_process_keeps_its_own_compile_cache(monkeypatch, tmp_path):
    """Inductor's cache is not keyed on the caps, so a capped process gets a folder of its own; a folder the user
    chose is kept, and an uncapped process keeps torch's default."""
    for name in (*machine.ISA_CAPS, "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    assert machine.separate_inductor_cache() is None and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    folder = machine.separate_inductor_cache()
    assert folder == os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert Path(folder).parent == tmp_path
    assert Path(folder).name.endswith("-ONEDNN_MAX_CPU_ISA-AVX2-ATEN_CPU_CAPABILITY-avx2")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert machine.separate_inductor_cache() is None and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_importing_benchmark_under_caps_moves_the_compile_cache(tmp_path):
    """In a new interpreter, as a user's script or a test worker starts: importing `benchmark` is enough, and
    inductor then resolves its cache to the caps' folder."""
    env = {k: v for k, v in os.environ.items() if k not in (*machine.ISA_CAPS, "TORCHINDUCTOR_CACHE_DIR")}
    code = ("import benchmark\nfrom torch._inductor.runtime.cache_dir_utils import cache_dir\nprint(cache_dir())")
    capped = subprocess.run([sys.executable, "-c", code], env={**env, "TMPDIR": str(tmp_path),
                            "ONEDNN_MAX_CPU_ISA": "AVX2"}, capture_output=True, text=True, check=True).stdout
    uncapped = subprocess.run([sys.executable, "-c", code], env={**env, "TMPDIR": str(tmp_path)},
                              capture_output=True, text=True, check=True).stdout
    assert Path(capped.strip()).parent == tmp_path and capped.strip().endswith("-ONEDNN_MAX_CPU_ISA-AVX2")
    assert Path(uncapped.strip()).parent == tmp_path and capped != uncapped


@pytest.mark.skipif("avx2" not in machine.cpu_flags(), reason="needs an x86 CPU with AVX2")
def test_doctor_on_a_cpu_capped_to_avx2_says_so_and_trains_in_fp32(home):
    """Under ONEDNN_MAX_CPU_ISA=AVX2 an AVX512-BF16 CPU emulates bf16 like an AVX2-only one: the probe (in a new
    interpreter: oneDNN and ATen read their caps once) must see that and choose fp32, and doctor must say why."""
    from helpers import cifarzoo

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "CIFARZOO_TEST_EXEC": "1"}
    out = cifarzoo("doctor", env=env, check=True).stdout
    assert "torch kernels: AVX2" in out
    assert "capped       ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2: kernels use no more" in out
    assert "auto         precision fp32" in out
    [cache] = (home / "machine").glob("fastpath-*.json")
    figures = json.loads(cache.read_text())
    assert figures["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    conv = figures["ms_per_step"]["conv"]
    assert conv["bf16-channels_last"] > 2 * conv["fp32-channels_last"]  # bf16 emulated, as on an AVX2 CPU


@pytest.mark.parametrize("flags, says", [("sse2 avx2 fma", "AVX2, bf16 emulated"),
                                         ("sse2 avx2 avx512f avx512_bf16", "AVX-512, bf16 native"),
                                         ("sse2 avx2 avx512f amx_tile amx_bf16", "AVX-512, bf16 native"),
                                         ("sse2 avx2 avx512f", "AVX-512, bf16 emulated"),
                                         ("fp asimd bf16", None)])  # an ARM CPU's flags name other things
def test_the_host_line_says_whether_bf16_is_native(monkeypatch, flags, says):
    for name in machine.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    info = {"model name": "Some CPU", "cpu family": "25", "model": "1", "flags": flags}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: info)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    head = "Some CPU (family 25 model 1), 2 cores"
    assert machine.host_line() == (f"{head}, {says}" if says else head)


def test_a_corrupt_cache_is_measured_again(home, monkeypatch):
    path = fastpath.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    fake = {"key": fastpath.cache_key(), "choice": {"precision": "fp32", "channels_last": True}}
    monkeypatch.setattr(fastpath, "measure", lambda device="cpu": fake)
    assert fastpath.probe() == fake and json.loads(path.read_text()) == fake


def test_environment_overrides_the_probe_but_not_the_recipe(home, monkeypatch):
    monkeypatch.setattr(fastpath, "measure", lambda device="cpu": {
        "key": fastpath.cache_key(), "choice": {"precision": "fp32", "channels_last": True}})
    monkeypatch.setenv(fastpath.ENV, "bf16")
    chosen = fastpath.choose("auto", None, "cpu")
    assert (chosen.precision, chosen.source) == ("bf16", "environment")
    assert fastpath.choose("fp32", None, "cpu").precision == "fp32"
    monkeypatch.setenv(fastpath.ENV, "fp16")
    with pytest.raises(CifarzooError, match="CIFARZOO_PRECISION"):
        fastpath.choose("auto", None, "cpu")


def test_a_precision_set_elsewhere_gets_its_own_faster_layout(home, monkeypatch):
    """A bf16 host whose probe chose bf16 in channels_last, where fp32 ran faster in NCHW: an fp32 recipe
    (and evaluation, always fp32) gets NCHW; a probe without figures leaves its own layout."""
    conv = {"fp32-nchw": 4.0, "fp32-channels_last": 5.0, "bf16-nchw": 3.0, "bf16-channels_last": 2.0}
    monkeypatch.setattr(fastpath, "measure", lambda device="cpu": {
        "key": fastpath.cache_key(), "ms_per_step": {"conv": conv, "matmul": {"fp32": 1.0, "bf16": 1.0}},
        "choice": {"precision": "bf16", "channels_last": True}})
    assert fastpath.choose("auto", None, "cpu").channels_last is True
    assert fastpath.choose("fp32", None, "cpu").channels_last is False
    monkeypatch.setenv(fastpath.ENV, "fp32")
    assert (fastpath.choose("auto", None, "cpu").precision, fastpath.choose("auto", None, "cpu").channels_last) == (
        "fp32", False)
    bare = fastpath.FastPath("bf16", True, "probe", {"choice": {}})
    assert fastpath._with_precision(bare, "fp32", "recipe").channels_last is True


def test_race_stops_repeating_a_configuration_three_times_slower():
    calls = {"fast": 0, "slow": 0}

    def step(name, seconds):
        def run():
            calls[name] += 1
            time.sleep(seconds)
        return run

    best = fastpath.race({"fast": step("fast", 0.002), "slow": step("slow", 0.03)})
    assert calls == {"fast": 1 + fastpath.REPEATS, "slow": 2}  # warm-up + one timed call, then dropped
    assert best["slow"] > 3 * best["fast"]


def test_a_resumed_run_keeps_its_checkpoints_choice(home, monkeypatch):
    monkeypatch.setattr(fastpath, "measure", lambda device="cpu": {
        "key": fastpath.cache_key(), "choice": {"precision": "fp32", "channels_last": True}})
    saved = {"fast_path": {"precision": "bf16", "channels_last": False}}
    chosen = resolve_fast_path(Recipe(), "cpu", saved)
    assert (chosen.precision, chosen.channels_last, chosen.source) == ("bf16", False, "checkpoint")
    assert resolve_fast_path(Recipe(), "cpu", None).source == "probe"


def test_recipes_default_to_auto_and_validate():
    assert (Recipe().precision, Recipe().channels_last) == ("auto", None)
    with pytest.raises(ValueError, match="precision"):
        Recipe(precision="fp16")
    with pytest.raises(ValueError, match="tta"):
        Recipe(tta="flip+rotate")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_uses_bf16_where_supported(home, monkeypatch):
    monkeypatch.setattr(fastpath, "measure", _no_measuring)
    chosen = fastpath.choose("auto", None, "cuda")
    assert chosen.source == "cuda" and chosen.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
