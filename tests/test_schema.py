"""The record's typed schema: the shipped JSON Schema is the one the TypedDicts generate, it catches a key
that drifts, and every record committed under results/ (version 1 included) reads through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_factory import make_record

from benchmark import schema

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_json_schema_is_generated_from_the_typed_sections():
    assert json.loads(schema.SCHEMA_FILE.read_text()) == schema.json_schema(), \
        "record.schema.json is stale: run `python -m benchmark.schema`"


@pytest.mark.parametrize(("where", "change"), [
    (("timing",), lambda t: t.update(new_key=1)),  # a section gains a key without the schema
    (("test",), lambda t: t.pop("ece")),  # ... or loses one
    (("history", 0), lambda h: h.update(val_acc="high")),  # ... or changes a type
    ((), lambda r: r.pop("sweep")),
])
def test_a_key_that_drifts_from_the_schema_is_caught(where, change):
    record = make_record("tinyvgg-norm")
    assert schema.validate(record) == []
    target = record
    for key in where:
        target = target[key]
    change(target)
    assert schema.validate(record), f"a change at {where} went unnoticed"


def test_every_committed_record_reads_through_the_schema():
    paths = [p for p in (ROOT / "results").rglob("*.json")
             if not {"perf", "timings"} & set(p.relative_to(ROOT / "results").parts)]
    assert paths, "results/ holds no records"
    versions = set()
    for path in paths:
        record = json.loads(path.read_text())
        versions.add(record["schema_version"])
        assert schema.validate(schema.upgrade(record)) == [], path.name
    assert versions <= set(schema.READABLE_VERSIONS)


def test_upgrading_a_version_1_record_drops_machine_paths_and_the_copied_recipe():
    v1 = make_record("tinyvgg-norm")
    recipe = v1["recipe"]
    v1.update(schema_version=1)
    v1["entry"].pop("recipe_sha256")
    v1["entry"]["recipe"] = recipe
    v1["data"].update(source="/home/me/data/cifar10-jpeg.zip", description="CIFAR-10 copy, /home/me/data/x.zip, sha")
    v1["weights"]["file"] = "/home/me/.cache/cifarzoo/weights/tinyvgg-norm/run.safetensors"
    v1["timing"].pop("contended")
    v1["timing"]["cpu_load"] = [3.5, 3.1]
    up = schema.upgrade(v1)
    assert schema.validate(up) == [] and up["upgraded_from"] == 1 and "/home" not in json.dumps(up)
    assert up["data"]["source"] == "cifar10-jpeg.zip" and up["weights"]["file"] == "tinyvgg-norm/run.safetensors"
    assert up["timing"]["contended"] is True  # load 3.5 on 2 cores
    from zoo.recipe import Recipe

    assert up["entry"]["recipe_sha256"] == Recipe.from_dict(recipe).sha256()


def test_records_and_the_committed_site_name_no_machine_folders(monkeypatch):
    """Records store the command as typed, with a data file's folders cut (cifarzoo.commands._common)."""
    import sys
    from pathlib import Path

    from cifarzoo.commands._common import command_line
    from zoo.files import _DATA_ARG, _FOLDERS, without_folders

    monkeypatch.setattr(sys, "argv", ["/venv/bin/cifarzoo", "bench", "--data", "/home/me/data/x.zip", "--results",
                                      "../r", "--model", "nets/a.py:build"])
    assert command_line() == "cifarzoo bench --data x.zip --results ../r --model nets/a.py:build"
    monkeypatch.setattr(sys, "argv", ["cifarzoo", "bench", "--data", "../shared/datasets/x.zip"])
    assert command_line() == "cifarzoo bench --data x.zip"  # relative folders of a data file too
    assert without_folders("CIFAR-10 copy, /srv/d/x.zip, sha256 ab") == "CIFAR-10 copy, x.zip, sha256 ab"
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("results/**/*.json"), *root.glob("site/**/*.html"), *root.glob("site/*.json")]
    assert files
    for path in files:
        text = path.read_text()
        found = _FOLDERS.search(text) or _DATA_ARG.search(text)
        assert found is None, f"{path.relative_to(root)} names a machine folder: {found.group(0)}"
