"""The leaderboard build without a browser: tables, aggregation, pages, downloads, bad input, --strict."""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from helpers import cifarzoo
from record_factory import JPEG_DATA, demo_results, make_record, write_record

from leaderboard import format as fmt
from leaderboard.build import MARKER, StrictBuildError, build_site
from leaderboard.records import gather
from leaderboard.tables import COLUMNS, augmentation_table, failures_table, leaderboard_table
from zoo.errors import CifarzooError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """The demo results, built once: (results folder, site folder, BuildReport)."""
    base = tmp_path_factory.mktemp("lb")
    demo_results(base / "results")
    report = build_site(base / "results", base / "site")
    return base / "results", base / "site", report


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Queue figures but skip drawing them (~0.13 s of CPU each), for tests about something else."""
    queued: list = []
    monkeypatch.setattr("leaderboard.plots.draw", lambda jobs, workers=None: queued.extend(jobs))
    return queued


def _table(results: Path) -> pd.DataFrame:
    return leaderboard_table(gather(results).runs).set_index(["entry", "profile"])


# ---- tables ------------------------------------------------------------------------------------------

def test_mean_and_sample_std_over_seeds(demo):
    table = _table(demo[0])
    row = table.loc[("tinyvgg-norm", "quick")]
    assert row["seeds"] == 3
    assert row["acc_mean"] == pytest.approx(0.71)
    assert row["acc_std"] == pytest.approx(0.01)  # sample std (n-1) of .70 .72 .71; population std is .0082
    assert row["diff_pts"] == pytest.approx((0.71 - 0.7582) * 100)
    one_seed = table.loc[("resnet12-norm", "quick")]
    assert one_seed["seeds"] == 1 and pd.isna(one_seed["acc_std"])
    assert fmt.pm(one_seed["acc_mean"], one_seed["acc_std"]) == "80.00 ± —"


def test_rows_are_entry_profile_pairs_best_first_smoke_last(demo):
    table = leaderboard_table(gather(demo[0]).runs)
    assert list(table.columns) == COLUMNS
    assert list(zip(table["entry"], table["profile"])) == [
        ("resnet12-aug", "quick"), ("resnet12-norm", "quick"), ("tinyvgg-aug", "quick"), ("tinyvgg-norm", "quick"),
        ("mlpmixer-aug", "quick"), ("vit-norm", "quick"), ("vit-aug", "smoke")]
    # speed-up is the ratio of the mean latencies shown beside it
    assert (table["speedup"] - table["torch_ms"] / table["ort_ms"]).abs().max() < 1e-12


def test_seeds_of_different_data_copies_are_never_pooled(tmp_path, no_figures):
    other = dict(JPEG_DATA, fingerprint="0123456789abcdef", lossy=False, source="cifar10",
                 description="CIFAR-10, official release")
    for seed, acc in enumerate([0.70, 0.72]):
        write_record(tmp_path, make_record("tinyvgg-norm", seed=seed, accuracy=acc))
        write_record(tmp_path, make_record("tinyvgg-norm", seed=seed, accuracy=acc + 0.1, data=other))
    table = leaderboard_table(gather(tmp_path).runs)
    assert len(table) == 2
    by_copy = table.set_index("fingerprint")
    assert by_copy.loc["0123456789abcdef", "acc_mean"] == pytest.approx(0.81)
    assert by_copy.loc[JPEG_DATA["fingerprint"], "acc_mean"] == pytest.approx(0.71)
    assert set(table["page"]) == {"entries/tinyvgg-norm--quick--01234567.html",
                                  f"entries/tinyvgg-norm--quick--{JPEG_DATA['fingerprint'][:8]}.html"}
    site = build_site(tmp_path, tmp_path.parent / "site-two-copies")
    html = site.index.read_text()
    assert ">Data</button>" in html  # the data column appears once there are several copies
    assert html.count("tinyvgg-norm</a>") == 2


def test_augmentation_pairs_and_gains(demo):
    pairs = augmentation_table(leaderboard_table(gather(demo[0]).runs)).set_index("architecture")
    assert sorted(pairs.index) == ["resnet12", "tinyvgg"]  # vit has norm in quick but aug only in smoke
    assert pairs.loc["tinyvgg", "gain_pts"] == pytest.approx((0.77 - 0.71) * 100)
    assert pairs.loc["tinyvgg", "reported_gain_pts"] == pytest.approx((0.8109 - 0.7582) * 100)
    assert pairs.loc["resnet12", "gain_pts"] == pytest.approx((0.855 - 0.80) * 100)


def test_failed_and_skipped_runs_are_listed_with_reasons(demo):
    results, site, report = demo
    failures = failures_table(gather(results).runs)
    assert list(zip(failures["entry"], failures["seed"], failures["status"])) == [
        ("gru-norm", 0, "failed"), ("gru-norm", 1, "skipped")]
    html = (site / "index.html").read_text()
    section = html[html.index('id="failures"'):]
    assert "out of memory while training" in section and "we are offline" in section
    tb = re.search(r'href="(tracebacks/[^"]+)"', section).group(1)
    assert "RuntimeError: out of memory" in (site / tb).read_text()
    assert (report.ok, report.not_ok) == (12, 2)


# ---- the built site ----------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.rows: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("a", "link") and a.get("href"):
            self.urls.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "tr" and "data-entry" in a:
            self.rows.append((a["data-entry"], a["data-profile"]))


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text())
    return parser


def test_index_rows_links_and_assets_are_relative_and_exist(demo):
    _, site, report = demo
    index = _parse(site / "index.html")
    assert sorted(index.rows) == sorted([
        ("tinyvgg-norm", "quick"), ("tinyvgg-aug", "quick"), ("resnet12-norm", "quick"), ("resnet12-aug", "quick"),
        ("vit-norm", "quick"), ("mlpmixer-aug", "quick"), ("vit-aug", "smoke")])
    pages = [site / "index.html", *report.pages]
    assert len(report.pages) == 7
    for page in pages:
        for url in _parse(page).urls:
            if url.startswith("data:"):
                continue
            assert not re.match(r"^(https?:)?//", url), f"{page.name} loads {url} from the network"
            assert (page.parent / url.split("#")[0]).resolve().is_file(), f"{page.name}: broken link {url}"
    assert (site / MARKER).is_file()


def test_entry_page_shows_provenance_data_command_and_timing(demo):
    _, site, _ = demo
    html = (site / "entries" / "tinyvgg-norm--quick.html").read_text()
    assert re.search(r"<h1>tinyvgg-norm\b", html)
    assert "cifarzoo train tinyvgg-norm --profile quick --seed 2" in html
    assert "JPEG q75 re-encoding of CIFAR-10 (lossy): numbers sit below published CIFAR-10 figures" in html
    assert JPEG_DATA["fingerprint"] in html
    assert "75.82 %" in html  # the report's own number
    assert len(re.findall(r"<td><code>tinyvgg-norm--quick--s\d--[0-9a-f]{8}</code></td>", html)) == 3  # per seed
    for figure in ("curves", "confusion", "per_class", "roc", "calibration"):
        assert f"../assets/tinyvgg-norm--quick/{figure}.png" in html
    assert "p99 ms" in html and "max |PyTorch − ONNX|" in html and "channels last: on" in html
    smoke = (site / "entries" / "vit-aug--smoke.html").read_text()
    assert "smoke profile: a seconds-long run for tests and CI; its numbers mean nothing." in smoke


def test_a_gpu_run_timed_against_a_cpu_onnx_runtime_quotes_both_latencies_and_no_speedup(tmp_path):
    """On a GPU machine whose onnxruntime has no CUDA provider, PyTorch ran on the GPU and ONNX Runtime on the
    CPU: the index and the entry page keep both latencies, say where each ran, and quote no speed-up."""
    for seed in (0, 1):
        write_record(tmp_path / "results", make_record("net003-norm", seed, "full", timing={
            "device": "cuda", "ort_device": "cpu", "ort_providers": ["CPUExecutionProvider"]}))
    write_record(tmp_path / "results", make_record("tinyvgg-norm", 0, "full"))
    out = build_site(tmp_path / "results", tmp_path / "site").out
    rows = {r["entry"]: r for r in json.loads((out / "leaderboard.json").read_text())}
    gpu, cpu = rows["net003-norm"], rows["tinyvgg-norm"]
    assert gpu["speedup"] is None and gpu["torch_ms"] > 0 and gpu["ort_ms"] > 0
    assert gpu["timing"] == "bench: PyTorch on cuda, ONNX Runtime on cpu"
    assert cpu["timing"] == "bench" and cpu["speedup"] == pytest.approx(cpu["torch_ms"] / cpu["ort_ms"])
    page = (out / "entries" / "net003-norm--full.html").read_text()
    assert "PyTorch on cuda, ONNX Runtime on cpu: both figures stand" in page and "Speed-up of ONNX" not in page
    assert "<td>PyTorch eager on cuda</td>" in page and "<td>ONNX Runtime on cpu</td>" in page
    assert "Speed-up of ONNX" in (out / "entries" / "tinyvgg-norm--full.html").read_text()


def test_downloads_hold_the_index_table(demo):
    _, site, _ = demo
    csv = pd.read_csv(site / "leaderboard.csv")
    rows = json.loads((site / "leaderboard.json").read_text())
    assert list(csv.columns) == COLUMNS and list(rows[0]) == COLUMNS
    assert [r["entry"] for r in rows] == list(csv["entry"])
    tiny = next(r for r in rows if r["entry"] == "tinyvgg-norm")
    assert tiny["acc_mean"] == pytest.approx(0.71) and tiny["seeds"] == 3 and tiny["params"] == 1_186_762
    assert next(r for r in rows if r["entry"] == "resnet12-norm")["acc_std"] is None


def test_build_is_deterministic_apart_from_the_timestamp(tmp_path):
    for seed, acc in enumerate([0.70, 0.72]):
        write_record(tmp_path / "results", make_record("tinyvgg-norm", seed=seed, accuracy=acc))
        write_record(tmp_path / "results", make_record("tinyvgg-aug", seed=seed, accuracy=acc + 0.05))
    site = build_site(tmp_path / "results", tmp_path / "site").out
    again = build_site(tmp_path / "results", tmp_path / "again").out
    first = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert first == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    stamp = re.compile(r"Built \d{4}-\d\d-\d\d \d\d:\d\d UTC")
    for rel in first:
        a, b = (site / rel).read_bytes(), (again / rel).read_bytes()
        if rel.name == "index.html":
            a, b = stamp.sub("", a.decode()), stamp.sub("", b.decode())
        assert a == b, f"{rel} differs between two builds"


def test_sparse_ok_record_still_renders(tmp_path, no_figures):
    record = make_record("gru-norm", accuracy=0.5)
    for key in ("timing", "onnx", "fast_path"):  # sections a run may not reach; the schema allows them null
        record[key] = None
    record["history"] = []
    for key in ("roc", "calibration", "samples", "top_confusions"):
        del record["test"][key]
    write_record(tmp_path / "results", record)
    report = build_site(tmp_path / "results", tmp_path / "site")
    html = report.pages[0].read_text()
    assert sorted(job.func.__name__ for job in no_figures) == ["confusion", "per_class", "tradeoff"]
    assert "This run was not timed." in html and "No ROC curves recorded." in html
    assert "The records hold no per-epoch history." in html
    assert "50.00" in html


def test_sample_images_drawn_only_for_the_matching_data_copy(tmp_path, no_figures):
    from benchmark.data import load_dataset

    data = load_dataset("synthetic")
    match = dict(JPEG_DATA, fingerprint=data.fingerprint, lossy=False, source="synthetic")
    write_record(tmp_path / "results", make_record("tinyvgg-norm", accuracy=0.7, data=match))
    write_record(tmp_path / "results", make_record("tinyvgg-aug", accuracy=0.7))  # the JPEG copy
    warnings: list[str] = []
    report = build_site(tmp_path / "results", tmp_path / "site", data_source="synthetic", warn=warnings.append)
    assert warnings == []
    drawn = (report.out / "entries" / "tinyvgg-norm--quick.html").read_text()
    images = re.findall(r'src="\.\./(samples/[^"]+\.png)"', drawn)
    assert len(images) == len({s["index"] for s in make_record("tinyvgg-norm", accuracy=0.7)["test"]["samples"]})
    from PIL import Image

    first = Image.open(report.out / images[0])
    assert first.size == (64, 64)
    index = int(re.search(r"test-(\d+)\.png", images[0]).group(1))
    assert first.getpixel((1, 1)) == tuple(data.x_test[index][0, 0].tolist())  # the right image, upscaled
    other = (report.out / "entries" / "tinyvgg-aug--quick.html").read_text()
    assert "samples/" not in other and "is not the copy these runs used" in other


# ---- bad input -----------------------------------------------------------------------------------------

def test_missing_results_folder(tmp_path):
    with pytest.raises(CifarzooError, match=r"results folder .*nowhere' does not exist"):
        build_site(tmp_path / "nowhere", tmp_path / "site")


def test_no_records(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.json").write_text('{"not": "a record"}')
    with pytest.raises(CifarzooError, match="no usable result records"):
        build_site(tmp_path / "results", tmp_path / "site")
    assert not (tmp_path / "site").exists()


def _bad_results(folder: Path) -> None:
    write_record(folder, make_record("tinyvgg-norm", accuracy=0.7))
    write_record(folder, make_record("resnet12-aug", accuracy=0.8, schema_version=3), name="future.json")
    broken = make_record("vit-norm", accuracy=0.6)
    del broken["timing"], broken["history"]
    write_record(folder, broken, name="broken.json")
    (folder / "sweep-summary.json").write_text('{"best": 1}')  # not a record: said so, never silently dropped


def test_newer_schema_and_missing_fields_warn_and_skip(tmp_path, no_figures):
    _bad_results(tmp_path / "results")
    warnings: list[str] = []
    report = build_site(tmp_path / "results", tmp_path / "site", warn=warnings.append)
    assert warnings == [
        "record broken.json lacks fields history, timing; skipped.",
        "record future.json has schema_version 3; this cifarzoo reads 2 — upgrade cifarzoo; skipped.",
        "sweep-summary.json is a JSON object without a schema_version, not a result record; skipped.",
    ]
    assert report.warnings == warnings and report.records == 1 and len(report.pages) == 1


def test_an_older_record_of_the_same_seed_is_superseded(tmp_path):
    old = make_record("tinyvgg-norm", seed=0, accuracy=0.60, run_id="tinyvgg-norm--quick--s0--aaaaaaaa",
                      finished_at="2025-01-01T10:00:00Z")
    new = make_record("tinyvgg-norm", seed=0, accuracy=0.70, run_id="tinyvgg-norm--quick--s0--bbbbbbbb",
                      finished_at="2025-02-01T10:00:00Z")
    write_record(tmp_path, new)
    write_record(tmp_path, old)
    warnings: list[str] = []
    gathered = gather(tmp_path, warn=warnings.append)
    assert list(gathered.records) == [new["run_id"]]
    assert warnings == [f"records {old['run_id']}.json and {new['run_id']}.json are both seed 0 of tinyvgg-norm "
                        f"(quick); kept the newer, {new['run_id']}.json."]
    assert leaderboard_table(gathered.runs)["acc_mean"].tolist() == [0.70]


def test_seeds_of_an_older_recipe_are_not_pooled_with_the_new_one(tmp_path):
    # three seeds at 4 epochs, then the entry changed to 8 epochs and only seed 0 was rerun
    old = [make_record("tinyvgg-norm", seed=s, accuracy=0.60 + s / 100, finished_at=f"2025-01-0{s + 1}T10:00:00Z",
                       run_id=f"tinyvgg-norm--quick--s{s}--aaaaaaaa") for s in range(3)]
    new = make_record("tinyvgg-norm", seed=0, accuracy=0.75, finished_at="2025-02-01T10:00:00Z",
                      run_id="tinyvgg-norm--quick--s0--bbbbbbbb", recipe={"max_epochs": 8})
    other = make_record("vit-norm", seed=1, accuracy=0.5)  # another entry's seeds are untouched
    for r in [*old, new, other]:
        write_record(tmp_path, r)
    warnings: list[str] = []
    gathered = gather(tmp_path, warn=warnings.append)
    assert sorted(gathered.records) == sorted([new["run_id"], other["run_id"]])
    assert warnings[0].startswith(f"records {old[0]['run_id']}.json and {new['run_id']}.json are both seed 0")
    assert warnings[1:] == [f"record {r['run_id']}.json (seed {r['seed']} of tinyvgg-norm, quick) ran an older "
                            "network or recipe than the newest run of that entry; left out of the tables."
                            for r in old[1:]]
    table = leaderboard_table(gathered.runs).set_index("entry")
    assert table.loc["tinyvgg-norm", "acc_mean"] == 0.75 and table.loc["tinyvgg-norm", "seeds"] == 1
    assert table.loc["vit-norm", "acc_mean"] == 0.5


def test_strict_fails_before_touching_the_output(tmp_path):
    _bad_results(tmp_path / "results")
    with pytest.raises(StrictBuildError) as err:
        build_site(tmp_path / "results", tmp_path / "site", strict=True)
    assert len(err.value.warnings) == 3 and isinstance(err.value, CifarzooError)
    assert not (tmp_path / "site").exists()


def test_refuses_to_replace_a_folder_that_is_not_a_site(tmp_path, no_figures):
    write_record(tmp_path / "results", make_record())
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(CifarzooError, match="holds no cifarzoo site"):
        build_site(tmp_path / "results", tmp_path / "precious")
    assert (tmp_path / "precious" / "thesis.tex").exists()
    with pytest.raises(CifarzooError, match="contains the results folder"):
        build_site(tmp_path / "results", tmp_path)
    first = build_site(tmp_path / "results", tmp_path / "site")
    (first.out / "stale.html").write_text("old")
    build_site(tmp_path / "results", tmp_path / "site")  # a previous site is replaced whole
    assert not (tmp_path / "site" / "stale.html").exists() and (tmp_path / "site" / "index.html").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return cifarzoo("leaderboard", *args, timeout=120)


def test_cli_warns_and_strict_exits_non_zero(tmp_path):
    _bad_results(tmp_path / "results")
    ok = _cli("build", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site"))
    assert ok.returncode == 0, ok.stderr
    assert "warning: record future.json has schema_version 3" in ok.stderr
    assert "built 1 entry pages from 1 records" in ok.stdout
    strict = _cli("build", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "strict"), "--strict")
    assert strict.returncode == 2
    assert "warning: record broken.json lacks fields history, timing" in strict.stderr
    assert strict.stderr.strip().splitlines()[-1].startswith("error: --strict: 3 warning(s), nothing was built")
    assert "Traceback" not in strict.stderr and not (tmp_path / "strict").exists()
    missing = _cli("build", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "site"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    serve = _cli("serve", "--dir", str(tmp_path / "nothing-built"))
    assert serve.returncode == 2 and "no built site" in serve.stderr


# ---- formatting ----------------------------------------------------------------------------------------

def test_number_formats():
    assert fmt.pm(0.8457, 0.0031) == "84.57 ± 0.31"
    assert fmt.signed(-4.31) == "−4.31" and fmt.signed(5.24) == "+5.24" and fmt.signed(None) == "—"
    assert fmt.count(1_186_762) == "1.19 M" and fmt.count(14_241_144_000) == "14.2 G" and fmt.count(512) == "512"
    assert fmt.sig(0.74533) == "0.745" and fmt.sig(12.41) == "12.4" and fmt.sig(float("nan")) == "—"
    assert fmt.duration(52.3) == "52 s" and fmt.duration(204) == "3.4 min" and fmt.duration(5400) == "1.5 h"
    assert fmt.sort_key(None) == "" and fmt.sort_key("ResNet") == "resnet" and fmt.sort_key(3) == "3.0"


def test_sweep_trials_get_a_study_page_not_leaderboard_rows(tmp_path):
    write_record(tmp_path / "results", make_record("tinyvgg-norm", seed=0, accuracy=0.70))
    for trial, (lr, acc) in enumerate([(1e-3, 0.61), (3e-3, 0.66), (1e-2, 0.55)]):
        write_record(tmp_path / "results" / "sweeps", make_record(
            "tinyvgg-norm", seed=0, accuracy=acc, run_id=f"tinyvgg-norm--quick--s0--{trial:08x}",
            sweep={"study": "tiny lr/1", "trial": trial, "params": {"lr": lr}}))
    pruned = make_record("tinyvgg-norm", seed=0, status="skipped", run_id="tinyvgg-norm--quick--s0--000000ff",
                         sweep={"study": "tiny lr/1", "trial": 3, "params": {"lr": 1e-4}})
    pruned["reason"] = "pruned at epoch 2: validation accuracy below the median"
    write_record(tmp_path / "results" / "sweeps", pruned)
    report = build_site(tmp_path / "results", tmp_path / "site")
    table = leaderboard_table(gather(tmp_path / "results").runs[lambda r: r["study"].isna()])
    assert table["seeds"].tolist() == [1] and table["acc_mean"].tolist() == [0.70]  # trials are not seeds
    assert [p.name for p in report.studies] == ["tiny-lr-1.html"]
    page = report.studies[0].read_text()
    order = [int(t) for t in re.findall(r'<tr[^>]*>\s*<td class="num" data-sort="[\d.]+">(\d+)', page)]
    assert order == [1, 0, 2, 3]  # by best validation accuracy; the pruned trial last
    assert "pruned at epoch 2" in page and "cifarzoo train tinyvgg-norm" in page
    index = report.index.read_text()
    assert 'href="sweeps/tiny-lr-1.html"' in index and "pruned at epoch 2" not in index
    assert (report.out / "assets" / "sweeps" / "tiny-lr-1.png").is_file()
