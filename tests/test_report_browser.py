"""The report in a real browser: headless Chromium renders it, takes a screenshot, and the page's
own load-time check reports broken images; console errors and missing sections fail the test.

The screenshot is written to results/browser/report.png of the test's folder and, when
RICEPO_SCREENSHOT_DIR is set, copied there (CI keeps it as an artefact).
"""
import os
import re
import shutil
import struct
import subprocess

import pytest

from conftest import ROOT
from ricepo.layout import FIGURES, TABLES

SECTIONS = ["table-bright-main", "table-beir-main", "table-ablation-credit", "table-ablation-trigger",
            "table-ablation-gates", "figure-entropy-cdf", "figure-reward-curves", "figure-branching-cost", "figure-ablation-bars",
            "provenance"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


def headless(*args, url):
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The smoke configuration's report over an empty results tree (every cell "not run", every
    figure drawn from no data) — the rendering path the full smoke run also takes."""
    tmp = tmp_path_factory.mktemp("browser")
    subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp), "--cores", "1",
                    "results/smoke/config.resolved.json", "--configfile", str(ROOT / "config" / "smoke.yaml")],
                   check=True, capture_output=True)
    results = tmp / "results" / "smoke"
    config = str(results / "config.resolved.json")
    made = [*(results / "tables" / f"{t}.json" for t in TABLES),
            *(results / "figures" / f"{f}.{ext}" for f in FIGURES for ext in ("json", "png"))]
    for what, out, inputs in ([(t, "tables", []) for t in TABLES] + [(f, "figures", []) for f in FIGURES]
                              + [("html", "../../reports/smoke/report.html", made)]):
        subprocess.run(["ricepo", "report", what, "--config-json", config, "--inputs", *map(str, inputs),
                        "--out", str(results / out)], check=True, capture_output=True)
    return tmp, tmp / "reports" / "smoke" / "report.html"


def test_report_renders_in_chromium_without_broken_images_or_console_errors(report):
    tmp, html = report
    shot = tmp / "results" / "browser" / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    out = headless(f"--screenshot={shot}", "--window-size=1400,2400", url=html.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, out.stderr[-2000:]
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])      # PNG IHDR
    assert (width, height) == (1400, 2400)
    if os.environ.get("RICEPO_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["RICEPO_SCREENSHOT_DIR"])

    dom = headless("--dump-dom", url=html.as_uri())
    assert 'data-broken-images="0"' in dom.stdout, dom.stderr[-2000:]
    images = int(re.search(r'data-images="(\d+)"', dom.stdout).group(1))
    assert images == 4
    for section in SECTIONS:
        assert f'id="{section}"' in dom.stdout, section
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)]
    assert not console_errors, console_errors
