"""The built site in headless Chromium (Debian's chromium + chromedriver, driven by selenium).

Opened straight from the folder (file://) and through `cifarzoo leaderboard serve`: the index lists
exactly the expected rows, headers sort, filters hide rows, every entry link opens a page that names
its entry, every image loads, and the console stays free of errors. One screenshot is kept as
artifacts/leaderboard-index.png. Without chromium the tests skip locally but fail when $CI is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from record_factory import DEMO, demo_results, make_record, write_perf, write_record

from leaderboard.build import build_site

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
EXPECTED_ROWS = {(entry, profile) for entry, profile, _ in DEMO}


def _binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if not (chromium and driver):
        message = "headless browser tests need chromium, chromedriver and selenium (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must not skip them")
        pytest.skip(message)
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium, driver_path = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--disable-quic", "--disable-extensions", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("browser-site")
    demo_results(base / "results")
    for trial, (lr, acc) in enumerate([(1e-3, 0.61), (3e-3, 0.66), (1e-2, 0.55)]):  # a small sweep study
        write_record(base / "results" / "sweeps", make_record(
            "tinyvgg-norm", accuracy=acc, run_id=f"tinyvgg-norm--quick--s0--{trial:08x}",
            sweep={"study": "tinyvgg-lr", "trial": trial, "params": {"lr": lr}}))
    write_perf(base / "results")
    return build_site(base / "results", base / "site").out


def _open(driver, url: str) -> None:
    driver.get(url)  # returns after the load event: images have loaded or failed by then


def _console_errors(driver) -> list[str]:
    return [f"{e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _visible_rows(driver) -> list[tuple[str, str]]:
    return [tuple(r) for r in driver.execute_script(
        "return Array.from(document.querySelectorAll('#board tbody tr'))"
        ".filter(r => !r.hidden).map(r => [r.dataset.entry, r.dataset.profile]);")]


def _column(driver, key: str) -> list[str]:
    """The data-sort values of column `key` (header data-key), top to bottom, visible rows only."""
    return driver.execute_script("""
        const ths = Array.from(document.querySelectorAll('#board thead th'));
        const col = ths.findIndex(th => th.dataset.key === arguments[0]);
        return Array.from(document.querySelectorAll('#board tbody tr')).filter(r => !r.hidden)
            .map(r => r.cells[col].dataset.sort);""", key)


def _click_header(driver, key: str) -> None:
    driver.find_element("css selector", f'#board thead th[data-key="{key}"] button').click()


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);")


def test_index_from_file_url_rows_sort_filter_and_screenshot(browser, site):
    _open(browser, site.joinpath("index.html").as_uri())
    assert set(_visible_rows(browser)) == EXPECTED_ROWS and len(_visible_rows(browser)) == len(EXPECTED_ROWS)
    assert browser.find_element("id", "row-count").text == f"{len(EXPECTED_ROWS)} of {len(EXPECTED_ROWS)} rows"

    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1400, 1600)
    assert browser.save_screenshot(str(ARTIFACTS / "leaderboard-index.png"))
    browser.set_window_size(1400, 1000)

    # numeric column: ascending, then descending; the values really are in order
    _click_header(browser, "acc_mean")
    values = [float(v) for v in _column(browser, "acc_mean")]
    assert values == sorted(values) and values[0] == pytest.approx(0.20)
    _click_header(browser, "acc_mean")
    values = [float(v) for v in _column(browser, "acc_mean")]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(0.855)
    header = browser.find_element("css selector", '#board thead th[data-key="acc_mean"]')
    assert header.get_attribute("aria-sort") == "descending"

    # text column
    _click_header(browser, "entry")
    assert [e for e, _ in _visible_rows(browser)] == sorted(e for e, _ in EXPECTED_ROWS)
    _click_header(browser, "entry")
    assert [e for e, _ in _visible_rows(browser)] == sorted((e for e, _ in EXPECTED_ROWS), reverse=True)

    # text filter hides rows that do not contain every typed word
    text = browser.find_element("id", "filter-text")
    text.send_keys("resnet")
    assert set(_visible_rows(browser)) == {("resnet12-norm", "quick"), ("resnet12-aug", "quick")}
    assert browser.find_element("id", "row-count").text == f"2 of {len(EXPECTED_ROWS)} rows"
    text.send_keys(" augmented")
    assert set(_visible_rows(browser)) == {("resnet12-aug", "quick")}
    text.clear()
    text.send_keys("no-such-model")
    assert _visible_rows(browser) == [] and browser.find_element("id", "no-rows").is_displayed()
    browser.execute_script("const t = document.getElementById('filter-text'); t.value = '';"
                           "t.dispatchEvent(new Event('input'));")
    assert len(_visible_rows(browser)) == len(EXPECTED_ROWS)

    # family, recipe and profile filters, alone and together
    from selenium.webdriver.support.ui import Select

    family, kind, profile = (Select(browser.find_element("id", f"filter-{k}")) for k in ("family", "kind", "profile"))
    family.select_by_value("cnn")
    assert set(_visible_rows(browser)) == {("tinyvgg-norm", "quick"), ("tinyvgg-aug", "quick")}
    kind.select_by_value("aug")
    assert set(_visible_rows(browser)) == {("tinyvgg-aug", "quick")}
    family.select_by_value("")
    assert set(_visible_rows(browser)) == {(e, p) for e, p in EXPECTED_ROWS if e.endswith("-aug")}
    profile.select_by_value("smoke")
    assert set(_visible_rows(browser)) == {("vit-aug", "smoke")}
    smoke_cell = browser.find_element("css selector", '#board tbody tr[data-profile="smoke"] .badge-smoke')
    assert smoke_cell.is_displayed() and "smoke" in smoke_cell.text

    assert _broken_images(browser) == []
    assert _console_errors(browser) == []


def test_every_entry_link_opens_its_page_with_loaded_images(browser, site):
    _open(browser, site.joinpath("index.html").as_uri())
    links = browser.execute_script(  # every link to an entry page: board, augmentation and failure sections
        "return Array.from(document.querySelectorAll('a[href^=\"entries/\"]')).map(a => [a.href, a.dataset.entry]);")
    assert len(links) == len(EXPECTED_ROWS) + 4  # + tinyvgg and resnet12 twice each in the augmentation table
    assert {entry for _, entry in links} == {entry for entry, _ in EXPECTED_ROWS}
    for href, entry in sorted(set(map(tuple, links))):
        _open(browser, href)
        h1 = browser.find_element("tag name", "h1").text
        assert h1.split()[0] == entry, f"{href} names {h1!r}"
        images = browser.execute_script("return document.images.length")
        assert images >= 5, f"{href} shows {images} images"
        assert _broken_images(browser) == [], href
        assert _console_errors(browser) == [], href


def test_sweep_link_opens_the_study_page(browser, site):
    _open(browser, site.joinpath("index.html").as_uri())
    browser.find_element("css selector", 'a[href="sweeps/tinyvgg-lr.html"]').click()
    assert browser.find_element("tag name", "h1").text.startswith("Sweep tinyvgg-lr")
    trials = browser.execute_script(
        "return Array.from(document.querySelectorAll('#trials-table tbody tr')).map(r => r.cells[0].dataset.sort);")
    assert [float(t) for t in trials] == [1.0, 0.0, 2.0]  # ranked by validation accuracy
    browser.find_element("css selector", "#trials-table thead th:first-child button").click()
    trials = browser.execute_script(
        "return Array.from(document.querySelectorAll('#trials-table tbody tr')).map(r => r.cells[0].dataset.sort);")
    assert [float(t) for t in trials] == [0.0, 1.0, 2.0]
    assert browser.execute_script("return document.images.length") == 1 and _broken_images(browser) == []
    assert _console_errors(browser) == []


def test_performance_link_opens_the_measurements(browser, site):
    _open(browser, site.joinpath("index.html").as_uri())
    browser.find_element("id", "perf-link").click()
    assert browser.find_element("tag name", "h1").text == "Performance"
    assert browser.find_element("id", "flagship-acc").text == "91.00 %"
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#inference-table tbody tr')).map(r => r.cells[0].textContent);")
    assert rows == ["tinyvgg", "vit", "cnn3"]
    ratio = browser.find_element("css selector", "#train-speed-table tbody tr td:nth-child(6)").text
    assert ratio == "3.00×"
    assert browser.execute_script("return document.images.length") == 1 and _broken_images(browser) == []
    assert _console_errors(browser) == []


def test_served_site_works(browser, site):
    command = [sys.executable, "-m", "cifarzoo", "leaderboard", "serve", "--dir", str(site), "--port", "0",
               "--seconds", "60"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving "), line + server.stderr.read()
        url = line.split(" at ")[1].split()[0]
        _open(browser, url)
        assert set(_visible_rows(browser)) == EXPECTED_ROWS
        assert _broken_images(browser) == []
        browser.find_element("css selector", 'a[href="entries/tinyvgg-norm--quick.html"]').click()
        assert browser.find_element("tag name", "h1").text.startswith("tinyvgg-norm")
        assert browser.current_url.startswith(url)
        assert _broken_images(browser) == []
        assert _console_errors(browser) == []
    finally:
        server.terminate()
        server.wait(timeout=10)
