"""The report in a real browser: headless Chromium renders it, takes a screenshot, and the page's
own load-time check reports broken images; console errors and missing sections fail the test.

The screenshot is written to results/browser/report.png of the test's folder and, when
RICEPO_SCREENSHOT_DIR is set, copied there (CI keeps it as an artefact).
"""

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from ricepo.layout import ARTEFACTS, FIGURES, TABLES, metrics_file, runs

SECTIONS = [
    "claims",
    "table-bright-main",
    "table-beir-main",
    "table-ablation-credit",
    "table-ablation-trigger",
    "table-ablation-gates",
    "figure-entropy-cdf",
    "figure-reward-curves",
    "figure-branching-cost",
    "figure-ablation-bars",
    "figure-ceiling",
    "provenance",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


def headless(*args, url):
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The smoke configuration's report over a results tree where three methods have results on
    BRIGHT (with NDCG@10 spread over two seeds, so cells show mean ± std) and the rest do not:
    the cells, the "not run" rows and the claims take the rendering path of a real run."""
    tmp = tmp_path_factory.mktemp("browser")
    subprocess.run(
        [
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp),
            "--cores",
            "1",
            "results/smoke/config.resolved.json",
            "--configfile",
            str(ROOT / "config" / "smoke.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    results = tmp / "results" / "smoke"
    config = str(results / "config.resolved.json")
    resolved = json.loads(Path(config).read_text())
    for run in runs(resolved):
        if run.benchmark == "bright" and run.method in ("prompting", "grpo", "ricepo") and run.variant is None:
            for task in resolved["benchmarks"]["bright"]["tasks"]:
                per_query = {f"q{i}": 0.1 * run.seed + 0.01 * i for i in range(10)}
                f = metrics_file(results, run, task)
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps({"ndcg_cut_10": sum(per_query.values()) / 10, "per_query": per_query}))
    made = [
        results / "tables" / "claims.json",
        *(results / "tables" / f"{t}.json" for t in TABLES),
        *(results / "figures" / f"{f}.{ext}" for f in FIGURES for ext in ("json", "png")),
    ]
    jobs = (
        [("claims", "tables", ARTEFACTS["claims"].result_files(resolved, results))]
        + [(t, "tables", ARTEFACTS[t].result_files(resolved, results)) for t in TABLES]
        + [(f, "figures", ARTEFACTS[f].result_files(resolved, results)) for f in FIGURES]
        + [("html", "../../reports/smoke/report.html", made)]
    )
    for what, out, inputs in jobs:
        subprocess.run(
            [
                "ricepo",
                "report",
                what,
                "--configfile",
                config,
                "--results",
                str(results),
                "--inputs",
                *(str(p) for p in inputs if p.exists()),
                "--out",
                str(results / out),
            ],
            check=True,
            capture_output=True,
        )
    return tmp, tmp / "reports" / "smoke" / "report.html"


def test_report_renders_in_chromium_without_broken_images_or_console_errors(report):
    tmp, html = report
    shot = tmp / "results" / "browser" / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    out = headless(f"--screenshot={shot}", "--window-size=1400,2400", url=html.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, out.stderr[-2000:]
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])  # PNG IHDR
    assert (width, height) == (1400, 2400)
    if os.environ.get("RICEPO_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["RICEPO_SCREENSHOT_DIR"])

    dom = headless("--dump-dom", url=html.as_uri())
    assert 'data-broken-images="0"' in dom.stdout, dom.stderr[-2000:]
    images = int(re.search(r'data-images="(\d+)"', dom.stdout).group(1))
    assert images == len(FIGURES) == 5
    for section in SECTIONS:
        assert f'id="{section}"' in dom.stdout, section
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)]
    assert not console_errors, console_errors


def test_report_fits_1280_pixels_and_folds_the_rows_not_measured_here(report):
    """At a 1280-px window no table runs off the right edge (the average column included), and
    each table's rows with no measured cell are hidden until its toggle is ticked. The page's
    #selftest script measures both in the browser and writes the counts on <body>."""
    _, html = report
    dom = headless("--window-size=1280,2000", "--dump-dom", url=html.as_uri() + "#selftest")
    attrs = {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(\d+)"', dom.stdout.split("<body", 1)[1].split(">", 1)[0])}
    assert attrs["wide-tables"] == 0, [line for line in dom.stderr.splitlines() if "wider than" in line]
    assert attrs["unmeasured-rows"] > 0
    assert attrs["hidden-when-folded"] == attrs["unmeasured-rows"]
    assert attrs["shown-when-unfolded"] == attrs["unmeasured-rows"]
    measured_rows = dom.stdout.count('<tr class="measured">')
    assert measured_rows >= 3  # prompting, GRPO and RICE-PO on BRIGHT stay in view
    assert 'class="banner">These verdicts are about the synthetic offline fixture data' in dom.stdout
