"""Model cards for the Hugging Face Hub: README.md whose YAML header carries `model-index` (task, dataset and
split, accuracy) from the weights' own record, beside the weights and the preprocessing they need."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import zoo
from zoo.files import write_atomic


def write_card(entry: str, folder: Path, weights: str | None = None) -> Path:
    """Write folder/README.md, model.safetensors (a copy) and config.json for `entry`'s weights."""
    import yaml

    model = zoo.load(entry, weights)
    info, spec = model.cifarzoo, zoo.get_entry(entry)
    published = zoo.get_weights(entry).DEFAULT
    facts = _facts(info, published)
    header = {
        "library_name": "pytorch", "tags": ["image-classification", "cifar10", "cifarzoo"], "datasets": ["cifar10"],
        "metrics": ["accuracy"], "pipeline_tag": "image-classification",
        "model-index": [{"name": entry, "results": [{
            "task": {"type": "image-classification", "name": "Image Classification"},
            "dataset": {"type": "cifar10", "name": facts["dataset"], "split": "test"},
            "metrics": [{"type": "accuracy", "value": round(100 * facts["accuracy"], 2), "name": facts["metric"]}],
        }]}] if facts["accuracy"] is not None else [],
    }
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(info.weights, folder / "model.safetensors")
    config = {"entry": entry, "architecture": spec.architecture, "arch_kwargs": spec.arch_kwargs,
              "classes": list(info.classes), "mean": list(info.mean), "std": list(info.std),
              "input_size": info.input_size, "tta": info.tta, "weights_sha256": info.sha256}
    write_atomic(folder / "config.json", json.dumps(config, indent=1) + "\n")
    body = _body(entry, spec, info, facts)
    write_atomic(folder / "README.md", "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n" + body)
    return folder


def _facts(info: Any, published: Any) -> dict[str, Any]:
    if published is not None and Path(info.weights) == published.path:
        m, data = published.metrics, published.data
        sd = f", {m['n_seeds']} seeds {100 * m['test_accuracy_mean']:.2f} ± {100 * (m['test_accuracy_sd'] or 0):.2f}"
        return {"accuracy": m["test_accuracy"], "metric": f"Test accuracy (these weights, seed {published.seed}{sd})",
                "dataset": "CIFAR-10" + (f" ({data['description']})" if data.get("lossy") else ""),
                "lossy": bool(data.get("lossy")), "recipe": published.recipe}
    m = info.metrics
    return {"accuracy": m.get("test_accuracy"), "metric": "Test accuracy (these weights)", "dataset": "CIFAR-10",
            "lossy": False, "recipe": None}


def _body(entry: str, spec: Any, info: Any, facts: dict[str, Any]) -> str:
    acc = f"{100 * facts['accuracy']:.2f} %" if facts["accuracy"] is not None else "not recorded"
    lossy = ("\n**Data:** trained and tested on a JPEG q75 re-encoding of CIFAR-10 (lossy); on the original images "
             "numbers differ.\n") if facts["lossy"] else ""
    return (f"# {entry}\n\n{spec.description}\n\nFrom: report {spec.report}, {spec.report_model}.\n\n"
            f"**Test accuracy:** {acc} ({facts['metric']}).\n{lossy}\n"
            "## Use\n\n```python\nimport zoo\n"
            f"model = zoo.load(\"{entry}\")            # or load model.safetensors into zoo.create(...)\n"
            "x = model.cifarzoo.transform()(image)    # PIL image or uint8 HWC array -> normalised tensor\n"
            "logits = model(x[None])\n```\n\n"
            f"Preprocessing: scale to [0, 1], normalise with mean {list(info.mean)} and std {list(info.std)}, "
            f"{info.input_size} px input; classes in order: {', '.join(info.classes)}.\n\n"
            "Made with cifarzoo (a CIFAR-10 model zoo and benchmark runner); `config.json` holds the preprocessing.\n")
