"""The Performance page: built from results/perf/*.json when present, left out (with its link) when not."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from record_factory import demo_results, write_perf

import zoo
from leaderboard.build import StrictBuildError, build_site


class _Cells(HTMLParser):
    """Text of every table cell, per table id, and every link target."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: dict[str, str] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or "?"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "a":
            self.links.append(a.get("href") or "")
        elif tag == "img":
            self.images.append(a.get("src") or "")
        if a.get("id") and tag in ("div", "span", "code"):
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._id is not None:
            self.ids[self._id] += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag in ("div", "span", "code"):
            self._id = None


def _parse(page: Path) -> _Cells:
    parser = _Cells()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("perf")
    demo_results(base / "results")
    write_perf(base / "results")
    return build_site(base / "results", base / "site").out


def test_index_links_to_the_performance_page(site):
    assert "performance.html" in _parse(site / "index.html").links


def test_flagship_mean_over_seeds_and_figure(site):
    page = _parse(site / "performance.html")
    assert page.ids["flagship-acc"].strip() == "91.00 %"  # mean of 0.90 and 0.92
    assert page.ids["flagship-wall"].strip() == "6.8 min"  # mean of 400 s and 420 s
    assert page.tables["flagship-runs"][1:] == [["0", "90.00", "6.7 min", "6.3 min"],
                                                ["1", "92.00", "7.0 min", "6.7 min"],
                                                ["reference, seed 0", "90.50", "10.0 min", ""]]
    assert page.ids["flagship-ratio"].strip() == "0.68× the time"  # 410 s / 600 s
    assert page.tables["flagship-curve"][1:] == [["1", "195.0", "81.00"], ["2", "390.0", "91.00"]]
    assert page.images == ["assets/perf/flagship.png"] and (site / "assets/perf/flagship.png").stat().st_size > 1000


def test_train_speed_ratio_and_accuracy_difference(site):
    page = _parse(site / "performance.html")
    assert page.tables["train-speed-table"][1:] == [
        ["tinyvgg-aug", "32", "2048", "40.0", "120.0", "3.00×", "2", "", ""]]  # no ceilings in the file: blank
    assert page.ids["train-speed-timing"].strip() == "the second of two epochs, one each"  # a file of before
    row = page.tables["train-speed-accuracy"][1]
    assert row[:6] == ["tinyvgg-aug", "2", "5000", "3", "41.00", "41.50"]
    assert row[6].startswith("+0.50")  # mean of +1 and 0 points


def test_a_second_hosts_measurements_get_their_own_sections(tmp_path):
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    other = {**perf["flagship"], "machine": "Other CPU, 2 cores, AVX2, bf16 emulated",
             "runs": [{"seed": 0, "acc": 0.91, "wall_s": 1200.0, "train_s": 1100.0, "curve": [[1, 550.0, 0.85]]},
                      {"seed": 1, "acc": 0.93, "wall_s": 1500.0, "train_s": 1400.0, "curve": [],  # added later,
                       "sitting": "2026-12-04T10:00:00", "peak_gflops_fp32": 150.0}],  # on a slower day
             "reference": [{"seed": 0, "acc": 0.90, "wall_s": 2000.0, "epochs": 9.9, "curve": []}]}
    speed = {**perf["train_speed"], "machine": "Other CPU", "accuracy": [],
             "speed": [{**perf["train_speed"]["speed"][0], "precision": "fp32", "channels_last": True,
                        "reports_epochs_images_per_s": [38.0, 40.0], "fast_epochs_images_per_s": [120.0, 119.0]}]}
    folder = tmp_path / "results" / "perf"
    (folder / "flagship-avx2.json").write_text(json.dumps(other), encoding="utf-8")
    (folder / "train_speed-avx2.json").write_text(json.dumps(speed), encoding="utf-8")
    (folder / "flagship-Not_An_Id.json").write_text(json.dumps(other), encoding="utf-8")  # not a label: ignored
    out = build_site(tmp_path / "results", tmp_path / "site").out
    page, text = _parse(out / "performance.html"), (out / "performance.html").read_text(encoding="utf-8")
    assert page.ids["flagship-acc"].strip() == "91.00 %"
    assert page.ids["train-speed-avx2-timing"].strip() == ("each side's fastest of 2 timed epochs after an untimed "
                                                           "one; in one process, every reports' loop before the "
                                                           "first fast path")
    assert page.ids["flagship-avx2-acc"].strip() == "92.00 %"  # both seeds count for the accuracy,
    assert page.ids["flagship-avx2-ratio"].strip() == "0.60× the time"  # only the first for the time: 1200 / 2000
    assert page.ids["flagship-avx2-wall"].strip() == "20.0 min"
    assert page.tables["flagship-avx2-runs"][1:] == [
        ["0", "91.00", "20.0 min", "18.3 min", "not recorded"],
        ["1", "93.00", "25.0 min", "23.3 min", "2026-12-04 10:00:00, peak 150 GFLOP/s (accuracy only)"],
        ["reference, seed 0", "90.00", "33.3 min", "", "not recorded"]]
    assert len(page.tables["flagship-runs"][0]) == 4  # no sittings in the file: no column
    assert page.images == ["assets/perf/flagship.png", "assets/perf/flagship-avx2.png"]
    assert text.index('id="flagship"') < text.index('id="flagship-avx2"')  # the plain file first
    assert "time to accuracy, Other CPU, 2 cores, AVX2, bf16 emulated</h2>" in text
    assert "results/perf/flagship-avx2.json" in text and "Not_An_Id" not in text
    assert page.tables["train-speed-avx2-table"][1:] == [
        ["tinyvgg-aug", "32", "2048", "40.0", "120.0", "3.00×", "2", "", ""]]
    assert "this host's probe chose: fp32, channels_last." in text


def test_a_gpu_flagship_is_titled_by_its_gpu_and_reproduced_on_its_device(tmp_path):
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    gpu = {**perf["flagship"], "device": "cuda", "gpu": "Test GPU 9000",
           "runs": [{"seed": 0, "acc": 0.907, "wall_s": 3.7, "train_s": 2.9, "curve": [[1, 0.4, 0.65], [2, 2.9, 0.9]]}],
           "reference": [{"seed": 0, "acc": 0.903, "wall_s": 5.8, "epochs": 9.9, "curve": []}]}
    (tmp_path / "results" / "perf" / "flagship-cuda.json").write_text(json.dumps(gpu), encoding="utf-8")
    out = build_site(tmp_path / "results", tmp_path / "site").out
    page, text = _parse(out / "performance.html"), (out / "performance.html").read_text(encoding="utf-8")
    assert "time to accuracy, Test GPU 9000</h2>" in text and "device <code>cuda</code> (Test GPU 9000)" in text
    assert page.ids["flagship-cuda-reproduce"] == ("python tests/perf/perf_flagship.py --device cuda --seeds 0 "
                                                   "--reference-seeds 0 --epochs 2 --threads 2 "
                                                   "--json results/perf/flagship-cuda.json")
    assert page.ids["flagship-reproduce"] == ("python tests/perf/perf_flagship.py --seeds 0 1 --reference-seeds 0 "
                                              "--epochs 2 --threads 2 --json results/perf/flagship.json")
    assert page.ids["flagship-cuda-ratio"].strip() == "0.64× the time"  # 3.7 / 5.8
    assert (out / "assets/perf/flagship-cuda.png").stat().st_size > 1000


@pytest.mark.parametrize(("longest", "unit"), [(2.9, (1, "seconds")), (119.0, (1, "seconds")),
                                               (120.0, (60, "minutes")), (3000.0, (60, "minutes"))])
def test_a_time_axis_reads_in_seconds_for_a_gpu_run_and_minutes_for_a_cpu_one(longest, unit):
    from leaderboard.plots import time_unit

    assert time_unit(longest) == unit


def test_engine_against_the_single_script_loop(site):
    page = _parse(site / "performance.html")
    assert page.tables["reference-table"][1:] == [["Test CPU, 2 cores", "fp32, channels_last", "4096", "2", "100.0",
                                                   "125.0", "1.25×", "reference.json"]]


def test_inference_rows_and_median_speedups(site):
    page = _parse(site / "performance.html")
    rows = page.tables["inference-table"][1:]
    assert [r[0] for r in rows] == ["tinyvgg", "vit", "cnn3"]
    assert [r[6] for r in rows] == ["2.00×", "1.25×", "4.00×"]
    assert [r[9] for r in rows] == ["2.50×", "1.10×", "1.53×"]
    text = (site / "performance.html").read_text(encoding="utf-8")
    assert "<strong>2.00×</strong> at batch 1" in text and "<strong>1.53×</strong> in batch" in text  # medians


def test_without_perf_files_there_is_no_page_and_no_link(tmp_path):
    demo_results(tmp_path / "results")
    out = build_site(tmp_path / "results", tmp_path / "site").out
    assert not (out / "performance.html").exists()
    assert "performance.html" not in _parse(out / "index.html").links


def test_a_broken_perf_file_is_left_out_with_a_warning_and_fails_strict(tmp_path):
    demo_results(tmp_path / "results")
    write_perf(tmp_path / "results")
    (tmp_path / "results" / "perf" / "inference.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "results" / "perf" / "train_speed.json").write_text('{"kind": "flagship"}', encoding="utf-8")
    warnings: list[str] = []
    report = build_site(tmp_path / "results", tmp_path / "site", warn=warnings.append)
    assert any("perf/inference.json is not readable JSON" in w for w in warnings)
    assert any("perf/train_speed.json is not a train_speed measurement" in w for w in warnings)
    page = _parse(report.out / "performance.html")
    assert "flagship-runs" in page.tables and "inference-table" not in page.tables
    assert "train-speed-table" not in page.tables
    with pytest.raises(StrictBuildError):
        build_site(tmp_path / "results", tmp_path / "site2", strict=True)
    assert not (tmp_path / "site2").exists()


def test_a_perf_file_that_is_not_an_object_is_left_out(tmp_path):
    demo_results(tmp_path / "results")
    write_perf(tmp_path / "results")
    (tmp_path / "results" / "perf" / "flagship.json").write_text("[1, 2]", encoding="utf-8")
    warnings: list[str] = []
    report = build_site(tmp_path / "results", tmp_path / "site", warn=warnings.append)
    assert any("perf/flagship.json is not a flagship measurement" in w for w in warnings)
    assert "flagship-runs" not in _parse(report.out / "performance.html").tables


def test_a_flagship_measured_under_isa_caps_is_reproduced_under_them(tmp_path):
    """A file measured with ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY set (an AVX2 machine on a bf16 CPU) says so in
    its host line; its command must set them again, and name the epochs it ran and that it kept no curve."""
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    capped = {**perf["flagship"], "machine": "Test CPU, 2 cores, AVX-512, bf16 native, kernels capped by "
                                             "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2",
              "recipe": {**perf["flagship"]["recipe"], "max_epochs": 9},
              "runs": [{"seed": 0, "acc": 0.9088, "wall_s": 1746.9, "train_s": 1677.5, "curve": []}]}
    (tmp_path / "results" / "perf" / "flagship-avx2cap.json").write_text(json.dumps(capped), encoding="utf-8")
    out = build_site(tmp_path / "results", tmp_path / "site").out
    page = _parse(out / "performance.html")
    assert page.ids["flagship-avx2cap-reproduce"] == (
        "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python tests/perf/perf_flagship.py --seeds 0 "
        "--reference-seeds 0 --epochs 9 --no-curve --threads 2 --json results/perf/flagship-avx2cap.json")


def test_a_flagship_of_two_sittings_with_overrides_is_reproduced_sitting_by_sitting(tmp_path):
    """Seeds added later by --append are a second command that appends; a recipe field or architecture argument
    the file ran with that differs from the entry's own comes back as --set, so the command runs what the file says."""
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    first, second = {"sitting": "2026-12-04T09:00:00"}, {"sitting": "2026-12-05T10:00:00"}
    split = {**perf["flagship"], "recipe": {**perf["flagship"]["recipe"], "precision": "fp32"},
             "arch_kwargs": {**perf["flagship"]["arch_kwargs"], "filter_lr": 0.2, "filter_ns_steps": 5},
             "runs": [{"seed": s, "acc": 0.907, "wall_s": 1000.0, "train_s": 900.0, "curve": [], **sitting}
                      for s, sitting in ((1, second), (0, first), (2, second))],
             "reference": [{"seed": 0, "acc": 0.906, "wall_s": 1500.0, "epochs": 9.9, "curve": [], **first}]}
    (tmp_path / "results" / "perf" / "flagship-fp32.json").write_text(json.dumps(split), encoding="utf-8")
    out = build_site(tmp_path / "results", tmp_path / "site").out
    tail = ("--epochs 2 --set 'precision=\"fp32\"' filter_lr=0.2 filter_ns_steps=5 --no-curve --threads 2 "
            "--json results/perf/flagship-fp32.json")
    assert _parse(out / "performance.html").ids["flagship-fp32-reproduce"] == (
        f"python tests/perf/perf_flagship.py --seeds 0 --reference-seeds 0 {tail} && "
        f"python tests/perf/perf_flagship.py --seeds 1 2 --reference-seeds {tail} --append")


def test_an_argument_the_entry_sets_and_the_file_lacks_comes_back_at_the_builders_default(tmp_path):
    """A file measured before its entry gained an argument ran the builder's default: the command says so, or
    it would rerun the entry's new value under the old file's name."""
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    arch = {k: v for k, v in perf["flagship"]["arch_kwargs"].items() if k != "whiten_bias_epochs"}
    older = {**perf["flagship"], "arch_kwargs": arch}  # the entry sets 3, airnet's default is 2
    (tmp_path / "results" / "perf" / "flagship-older.json").write_text(json.dumps(older), encoding="utf-8")
    out = build_site(tmp_path / "results", tmp_path / "site").out
    assert zoo.get_entry("airnet-fast").arch_kwargs["whiten_bias_epochs"] == 3
    assert _parse(out / "performance.html").ids["flagship-older-reproduce"] == (
        "python tests/perf/perf_flagship.py --seeds 0 1 --reference-seeds 0 --epochs 2 --set whiten_bias_epochs=2 "
        "--threads 2 --json results/perf/flagship-older.json")


def test_train_speed_says_whether_each_entry_had_a_process_of_its_own(tmp_path):
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    row = {**perf["train_speed"]["speed"][0], "reports_epochs_images_per_s": [38.0, 40.0],
           "fast_epochs_images_per_s": [120.0, 119.0]}
    folder = tmp_path / "results" / "perf"
    for label, rows in (("own", [{**row, "process": "own", "ceiling": 2.55, "conv_bound": 2.591}] * 2),
                        ("mixed", [{**row, "process": "own"}, {**row, "entry": "resnet12-aug"}])):
        speed = {**perf["train_speed"], "accuracy": [], "speed": rows}
        (folder / f"train_speed-{label}.json").write_text(json.dumps(speed), encoding="utf-8")
    page = _parse(build_site(tmp_path / "results", tmp_path / "site").out / "performance.html")
    assert page.ids["train-speed-own-timing"].strip().endswith(
        "; each entry in a process of its own, its reports' loop and then its fast path")
    assert page.tables["train-speed-own-table"][1][-2:] == ["2.55×", "2.59×"]  # both ceilings, as the file has them
    assert page.tables["train-speed-mixed-table"][1][-2:] == ["", ""]  # a file of before: neither
    assert page.ids["train-speed-mixed-timing"].strip().endswith(
        "; 1 of 2 entries each in a process of its own, the rest in one process")


def test_train_speed_says_how_many_processes_each_entry_had(tmp_path):
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    row = {**perf["train_speed"]["speed"][0], "process": "own", "processes": 3,
           "reports_epochs_images_per_s": [38.0, 40.0, 37.0, 39.0, 41.0, 36.0],
           "fast_epochs_images_per_s": [120.0, 119.0, 121.0, 118.0, 117.0, 122.0]}
    speed = {**perf["train_speed"], "accuracy": [], "speed": [row]}
    (tmp_path / "results" / "perf" / "train_speed-best3.json").write_text(json.dumps(speed), encoding="utf-8")
    page = _parse(build_site(tmp_path / "results", tmp_path / "site").out / "performance.html")
    assert page.ids["train-speed-best3-timing"].strip().endswith(
        "each side's fastest of 2 timed epochs after an untimed one in each of 3 fresh processes per entry, one after "
        "the other, each its reports' loop and then its fast path; the fastest epoch of all")


def test_train_speed_names_the_rows_re_measured_with_another_process_count(tmp_path):
    demo_results(tmp_path / "results")
    perf = write_perf(tmp_path / "results")
    base = {**perf["train_speed"]["speed"][0], "process": "own", "reports_epochs_images_per_s": [38.0, 40.0],
            "fast_epochs_images_per_s": [120.0, 119.0]}
    again = {**base, "entry": "b", "processes": 3, "reports_epochs_images_per_s": [38.0, 40.0] * 3,
             "fast_epochs_images_per_s": [120.0, 119.0] * 3}
    rows = [{**base, "entry": "a"}, again, {**base, "entry": "c"}]
    speed = {**perf["train_speed"], "accuracy": [], "speed": rows}
    (tmp_path / "results" / "perf" / "train_speed-mixed.json").write_text(json.dumps(speed), encoding="utf-8")
    page = _parse(build_site(tmp_path / "results", tmp_path / "site").out / "performance.html")
    assert page.ids["train-speed-mixed-timing"].strip().endswith(
        "each side's fastest of 2 timed epochs after an untimed one in each of 3 fresh processes for b, and 1 for "
        "the other entries, one after the other, each its reports' loop and then its fast path; the fastest epoch "
        "of all")
