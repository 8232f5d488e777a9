"""figure_reward_curves from hand-made step logs: the training reward, and the shares of each
step's sampled searches above and below the query alone's, averaged over seeds and smoothed."""

import json

import pytest

from conftest import ROOT
from ricepo.config import load_config
from ricepo.layout import ARTEFACTS, Run, train_log_file
from ricepo.report.build import build_figure
from ricepo.report.results import ResultFiles


def write_log(root, method, seed, rows):
    f = train_log_file(root, Run("bright", "tiny_qwen2", method, None, seed))
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("".join(json.dumps({"step": i + 1, **r}) + "\n" for i, r in enumerate(rows)))


def test_the_searches_better_and_worse_than_the_query_alone_are_averaged_over_seeds_and_smoothed(tmp_path):
    """GRPO, seeds 0 and 1, 3 steps: better 0.5 / 0.0 / 0.25 and 0.0 / 0.0 / 0.25 -> 0.25, 0, 0.25 a
    step, smoothed over a trailing window of 3: 0.25, 0.125, 0.5 / 3. RICE-PO's log predates the
    shares: its reward is drawn, its shares are None and it has no line in that panel."""
    config = load_config(ROOT / "config" / "smoke.yaml")
    for seed, better in zip(config["seeds"], ([0.5, 0.0, 0.25], [0.0, 0.0, 0.25])):
        write_log(
            tmp_path,
            "grpo",
            seed,
            [{"reward_mean": 0.1 * i, "better_than_alone_rate": b, "worse_than_alone_rate": 0.5} for i, b in enumerate(better)],
        )
        write_log(tmp_path, "ricepo", seed, [{"reward_mean": 0.2}] * 3)
    files = [p for p in ARTEFACTS["figure_reward_curves"].result_files(config, tmp_path) if p.exists()]
    data = build_figure("figure_reward_curves", ResultFiles(config, tmp_path, files), tmp_path / "fig")
    curves = {c["method"]: c for c in data["curves"] if c["benchmark"] == "bright"}
    assert curves["grpo"]["better"] == pytest.approx([0.25, 0.125, 0.5 / 3])
    assert curves["grpo"]["worse"] == pytest.approx([0.5, 0.5, 0.5])
    assert curves["grpo"]["raw"] == pytest.approx([0.0, 0.1, 0.2])
    assert curves["ricepo"]["better"] is None and curves["ricepo"]["raw"] == pytest.approx([0.2] * 3)
    assert (tmp_path / "fig" / "figure_reward_curves.png").stat().st_size > 10_000
