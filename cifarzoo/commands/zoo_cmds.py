"""`cifarzoo list [PATTERN] [--json]` and `cifarzoo info ENTRY [--json]`: what the zoo holds."""

from __future__ import annotations

import json
from typing import Any

import click


def _row(name: str) -> dict[str, Any]:
    """One entry as the list shows it (parameters from the entry's metadata: no model is built)."""
    import zoo
    from zoo.published import get_weights
    from zoo.weights import find_best

    entry = zoo.get_entry(name)
    best = find_best(name)
    published = get_weights(name).DEFAULT
    return {"name": name, "architecture": entry.architecture, "arch_kwargs": entry.arch_kwargs,
            "family": entry.family, "kind": entry.kind, "report": entry.report, "report_model": entry.report_model,
            "params": entry.num_params, "reported": {"accuracy": entry.reported.accuracy, "loss": entry.reported.loss,
                                                     "where": entry.reported.where, "note": entry.reported.note},
            "weights_present": best is not None, "weights": str(best) if best else None,
            "published": published is not None,
            "published_accuracy": published.metrics.get("test_accuracy") if published else None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _params(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f}M"


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_cmd(pattern: str | None, as_json: bool) -> None:
    """List the registered entries (PATTERN is a glob such as 'resnet*' or '*-aug')."""
    import zoo
    from zoo.errors import CifarzooError, unknown_name

    names = zoo.list_models(pattern)
    if not names:
        if any(ch in (pattern or "") for ch in "*?["):
            raise CifarzooError(f"no entry matches '{pattern}'; run `cifarzoo list` to see them all.")
        raise unknown_name("entry", pattern or "", zoo.list_models())
    rows = [_row(n) for n in names]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    header = ("name", "architecture", "kind", "report", "params", "reported acc", "published", "local")
    table = [header] + [(r["name"], r["architecture"], r["kind"], r["report"], _params(r["params"]),
                         _pct(r["reported"]["accuracy"]),
                         _pct(r["published_accuracy"]) if r["published"] else "no",
                         "yes" if r["weights_present"] else "no") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


@click.command()
@click.argument("entry")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(entry: str, as_json: bool) -> None:
    """Show ENTRY: architecture, recipe, source report, parameters, reported numbers, stored weights."""
    import zoo
    from zoo.hub import entry_info

    zoo.get_entry(entry)  # registers the zoo; an unknown name fails here with the closest names
    data = entry_info(entry, count=False)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    rep, recipe = data["reported"], data["recipe"]
    kwargs = ", ".join(f"{k}={v!r}" for k, v in data["arch_kwargs"].items())
    stop = recipe["early_stopping"]
    lines = [
        f"{data['name']}  ({data['family']}, kind {data['kind']})",
        f"  architecture  {data['architecture']}({kwargs})  {data['params']:,} parameters",
        f"  report        {data['report']}: {data['report_model']}",
        f"  reported      accuracy {_pct(rep['accuracy'])}, loss {rep['loss'] if rep['loss'] is not None else '-'}"
        f"  [{rep['where']}]",
    ]
    if rep["note"]:
        lines.append(f"  note          {rep['note']}")
    if rep.get("per_class_accuracy"):
        lines.append("  per class     " + ", ".join(f"{c} {_pct(a)}" for c, a in rep["per_class_accuracy"].items()))
    lines += [
        f"  recipe        {recipe['optimizer']} lr {recipe['lr']:g}, weight decay {recipe['weight_decay']:g}, "
        f"batch {recipe['batch_size']}, epochs {recipe['min_epochs']}..{recipe['max_epochs']}, "
        f"scheduler {recipe['scheduler']}" + (f" (gamma {recipe['gamma']:g})" if recipe["scheduler"] != "none" else ""),
        f"                augment {recipe['augment']}"
        + (f" (p={recipe['augment_prob']:g})" if recipe["augment_prob"] < 1 else "")
        + f", normalize {recipe['normalize']}, input {recipe['input_size']} px, evaluate every {recipe['eval_every']}",
        "  stopping      " + ("none (fixed epochs)" if stop is None else
                              f"{stop['monitor']}, patience {stop['patience']}"
                              + (f", min delta {stop['min_delta']:g}" if stop["min_delta"] else "")
                              + (f", max train-val gap {stop['max_train_val_gap']:g}"
                                 if stop["max_train_val_gap"] is not None else "")),
    ]
    if data["pretrained"]:
        lines.append(f"  pretrained    {data['pretrained']}")
    if data["description"]:
        lines.append(f"  description   {data['description']}")
    published = data["published"]
    if published:
        m = published["metrics"]
        lines.append(f"  published     {published['file']} ({published['dtype']}, seed {published['seed']}): test "
                     f"{_pct(m['test_accuracy'])} on {published['data']['source']}; "
                     f"{m['n_seeds']} seeds {_pct(m['test_accuracy_mean'])}")
    stored = data["weights"] or f"none stored (train with `cifarzoo train {data['name']}`)"
    lines.append(f"  local         {stored}")
    click.echo("\n".join(lines))
