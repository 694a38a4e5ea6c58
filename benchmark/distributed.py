"""Past one machine: the same plan on a Ray cluster, or as shards for a batch scheduler.

`RayExecutor` submits each planned run as a Ray task (`num_cpus` = threads per run, `num_gpus` = 1 on a GPU)
to a running cluster (`--address`) or to a local one started for the command. A worker needs nothing of the
driver's filesystem: it runs the run in a folder of its own and sends back the record, the weights and the
sidecar as bytes, and any traceback; the driver writes them, so records and weights land exactly where a
local bench puts them, and the driver builds the site. Runs are claimed by the driver before they are
submitted (so a second driver or a local bench on the same folder leaves them alone). A task that fails
for good (after Ray's own retries, e.g. a worker killed twice) becomes a failed record with Ray's reason.
With a folder every worker can reach (`shared`: the results folder of a local cluster by default), workers
keep their checkpoints there, so a retried task resumes where the killed one stopped. Ctrl-C cancels the
outstanding tasks and keeps what finished.

`shard(plan, k, n)`: the k-th of n disjoint, deterministic slices of a plan (by run id), for SLURM job arrays
or Kubernetes indexed jobs; n shards writing into one results folder give the records of one bench.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from zoo.errors import CifarzooError, one_line


def shard(runs: list[Any], k: int, n: int) -> list[Any]:
    """Runs of shard k (1-based) of n: every n-th run in run-id order, so each run is in exactly one shard."""
    if not 1 <= k <= n:
        raise CifarzooError(f"--shard {k}/{n} is out of range; use K/N with 1 <= K <= N, e.g. --shard 1/4.")
    order = {rid: i for i, rid in enumerate(sorted(r.run_id for r in runs))}
    return [r for r in runs if order[r.run_id] % n == k - 1]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise CifarzooError(f"--shard takes K/N such as 2/8, not '{text}'.") from None
    shard([], k, n)  # range check
    return k, n


class RayExecutor:
    """Runs a plan's runs as Ray tasks; the driver claims them, writes their records and weights."""

    def __init__(self, address: str | None = None, threads: int = 1, shared: Path | None = None,
                 max_retries: int = 2):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise CifarzooError("--executor ray needs Ray: pip install 'cifarzoo[ray]'.") from None
        self.address, self.threads, self.shared, self.max_retries = address, threads, shared, max_retries

    def run(self, plan: Any, ctx: Any) -> Any:
        import ray

        from benchmark.bench import Outcome, claim

        outcome = Outcome()
        started_here = not ray.is_initialized()
        if started_here:
            _init(self.address)
        shared = self.shared or (None if self.address else ctx.results / ".checkpoints")
        task = ray.remote(_work).options(num_cpus=self.threads, max_retries=self.max_retries,
                                         num_gpus=1 if ctx.device.startswith("cuda") else 0)
        pending: dict[Any, Any] = {}
        with contextlib.ExitStack() as claims:
            try:
                data = ray.put(ctx.data)
                for run in plan.todo:
                    holder = claims.enter_context(claim(ctx.results, run.run_id))
                    if holder is not None:
                        outcome.elsewhere.append((run.run_id, f"being run by {holder}"))
                        continue
                    pending[task.remote(run, data, _options(ctx, self.threads, shared))] = run
                self._collect(pending, ctx, outcome)
            except KeyboardInterrupt:
                for ref in list(pending):
                    ray.cancel(ref, force=True)
                raise
            finally:
                if started_here:
                    ray.shutdown()
        return outcome

    def _collect(self, pending: dict[Any, Any], ctx: Any, outcome: Any) -> None:
        import ray

        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ref)
            try:
                outcome.records.append(land(ray.get(ref), ctx))
            except (ray.exceptions.RayError, OSError) as err:  # the task itself died, retries spent
                outcome.records.append(_failed(run, ctx, f"the Ray task failed: {one_line(err)}"))


def _init(address: str | None) -> None:
    import ray

    if address is None:  # a private cluster for this command: no usage reports, no token handshake
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_source_paths())}})
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise CifarzooError(f"cannot start or reach {where} ({one_line(err)}); check --address.") from None


def _source_paths() -> list[str]:
    """Where this cifarzoo's packages live, so local workers import the same code as the driver."""
    import benchmark

    return [str(Path(benchmark.__file__).resolve().parents[1]), *filter(None, os.environ.get("PYTHONPATH",
                                                                                              "").split(os.pathsep))]


def _options(ctx: Any, threads: int, shared: Path | None) -> dict[str, Any]:
    from benchmark import fastpath

    probe = None if ctx.device.startswith("cuda") else fastpath.probe()
    return {"device": ctx.device, "command": ctx.command, "threads": threads, "force": True, "probe": probe,
            "checkpoints": str(shared) if shared else None,
            "imagenet_weights": str(ctx.imagenet_weights) if ctx.imagenet_weights else None}


def _work(run: Any, data: Any, options: dict[str, Any]) -> dict[str, Any]:
    """On a worker: do the run in a folder of its own; return the record, weights and traceback as data."""
    import torch

    from benchmark.runner import RunContext, execute

    torch.set_num_threads(options["threads"])
    home = Path(tempfile.gettempdir()) / f"cifarzoo-ray-{os.getuid()}" / f"worker-{os.getpid()}"
    os.environ["CIFARZOO_HOME"] = str(home)  # this worker's own store and machine cache
    _adopt_probe(options["probe"])
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        ctx = RunContext(results, data, options["device"], options["command"], "quiet", force=True,
                         checkpoints=Path(options["checkpoints"]) if options["checkpoints"] else None,
                         imagenet_weights=Path(options["imagenet_weights"]) if options["imagenet_weights"] else None)
        record = execute(run, ctx)
        sent: dict[str, Any] = {"record": record, "weights": None, "traceback": None}
        if record.get("weights"):
            path = home / "weights" / record["weights"]["file"]
            sent["weights"] = (path.read_bytes(), path.with_suffix(".json").read_text())
            path.unlink()
            path.with_suffix(".json").unlink()
        if record.get("traceback_file"):
            sent["traceback"] = (results / record["traceback_file"]).read_text()
    return sent


def _adopt_probe(probe: dict[str, Any] | None) -> None:
    """A worker on the driver's kind of machine takes the driver's precision choice, so the same run computes
    the same way wherever it lands (a probe of its own, under load, could pick the other layout)."""
    import json

    from benchmark import fastpath
    from zoo.files import write_atomic

    if probe is not None and probe.get("key") == fastpath.cache_key() and not fastpath.cache_path().is_file():
        write_atomic(fastpath.cache_path(), json.dumps(probe) + "\n")


def land(sent: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Write a worker's record, weights and traceback where a local bench would have put them."""
    from benchmark.records import write_record
    from zoo.files import sha256_bytes, write_atomic
    from zoo.weights import store_dir

    record = sent["record"]
    if sent["weights"] is not None:
        blob, sidecar = sent["weights"]
        if sha256_bytes(blob) != record["weights"]["sha256"]:
            raise OSError(f"the weights of {record['run_id']} arrived damaged (sha256 mismatch)")
        path = store_dir() / record["weights"]["file"]
        write_atomic(path, blob, overwrite=False)
        write_atomic(path.with_suffix(".json"), sidecar)
    if sent["traceback"] is not None:
        write_atomic(ctx.results / record["traceback_file"], sent["traceback"])
    write_record(ctx.results, record, force=ctx.force)
    return record


def _failed(run: Any, ctx: Any, reason: str) -> dict[str, Any]:
    from benchmark.records import write_record
    from benchmark.runner import base_record

    record = base_record(run, ctx)
    record.update(status="failed", reason=reason, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                                           time.gmtime()))
    write_record(ctx.results, record, force=ctx.force)
    return record
