"""GPU-hours from measured speed: a calibration file's decode rates carried to a job by hand,
its basis named on every line, and the roofline assumption where no calibration exists."""

import math

import pytest

from conftest import ROOT
from ricepo.errors import RicepoError

H200 = {8: 350.0, 32: 1225.0, 64: 2385.3}  # config/calibration/h200_141gb.yaml


def test_the_committed_h200_calibration_reads_as_measured():
    from ricepo.plan.timing import load_calibration

    c = load_calibration("h200_141gb")
    assert c.decode_tokens_per_s == H200 and c.arch.layers == 28 and c.sampler == "eager"
    assert c.basis == "measured on h200_141gb 2026-12-04 (eager sampler, r1_distill_qwen_1p5b)"
    assert c.prefill_tokens_per_s is None and c.update_tokens_per_s is None
    assert load_calibration("h100_80gb") is None


def test_a_decode_step_is_interpolated_between_measured_rows_and_extrapolated_outside():
    from ricepo.plan.timing import load_calibration

    c = load_calibration("h200_141gb")
    s8, s32, s64 = 8 / 350.0, 32 / 1225.0, 64 / 2385.3  # seconds a step: rows / tokens per second
    assert c.decode_step_s(8) == pytest.approx(s8) and c.decode_step_s(64) == pytest.approx(s64)
    assert c.decode_step_s(20) == pytest.approx((s8 + s32) / 2)  # halfway from 8 to 32 rows
    assert c.decode_step_s(128) == pytest.approx(s64 + 2 * (s64 - s32))
    assert c.decode_step_s(2) == pytest.approx(s8 - (s32 - s8) / 4)


def _plan(gpu: str):
    from ricepo.config import load_config
    from ricepo.plan import plan_config

    config = load_config()
    config["plan"]["gpu"] = gpu
    return config, {p.job: p for p in plan_config(config, ROOT / "results" / "none")}


def test_a_training_job_on_a_calibrated_gpu_prices_decode_from_the_measurement():
    from ricepo.layout import backbone_settings
    from ricepo.plan import load_arch, train_shape
    from ricepo.plan.lengths import measure_lengths

    config, plans = _plan("h200_141gb")
    job = plans["train bright/r1_distill_qwen_1p5b/grpo seed 0"]
    hours, basis = job.hours["decode"]
    assert basis == "measured on h200_141gb 2026-12-04 (eager sampler, r1_distill_qwen_1p5b)"
    assert [job.hours[k][1] for k in ("prefill", "update")] == ["assumed: 0.3 of bf16 peak"] * 2
    # by hand: steps x sampler calls x tokens generated a row x the measured step at 32 rows (the same
    # architecture: no layer scaling); the roofline at 0.5 of 4.8 TB/s is far below it
    arch = load_arch("r1_distill_qwen_1p5b", config["backbones"]["r1_distill_qwen_1p5b"]["model"])
    rollout = backbone_settings(config, "r1_distill_qwen_1p5b", "rollout")
    lens = measure_lengths([], [], "none", rollout, {"user": ""})
    shape = train_shape(backbone_settings(config, "r1_distill_qwen_1p5b", "train"), rollout, {}, "grpo", None, arch, lens, {})
    calls = math.ceil(shape.rows_here / shape.call_rows)
    assert shape.call_rows == 32 and lens.generated == 3 * (512 + 128)
    assert hours == pytest.approx(config["train"]["steps"] * calls * lens.generated * (32 / 1225.0) / 3600)
    # the 4B backbone's step: the same measurement times 36 layers / 28
    four_b = plans["train bright/qwen3_4b_thinking/grpo seed 0"]
    assert four_b.hours["decode"][1] == basis and four_b.hours["decode"][0] > hours * 36 / 28


def test_without_a_calibration_every_phase_says_it_is_assumed():
    _, plans = _plan("h100_80gb")
    job = plans["train bright/r1_distill_qwen_1p5b/grpo seed 0"]
    assert {k: b for k, (_, b) in job.hours.items()} == {
        "decode": "assumed: 0.5 of memory bandwidth",
        "prefill": "assumed: 0.3 of bf16 peak",
        "update": "assumed: 0.3 of bf16 peak",
    }
    assert job.gpu_hours == pytest.approx(sum(h for h, _ in job.hours.values()))


def test_a_written_calibration_loads_back_and_a_bad_one_is_one_line(tmp_path):
    from ricepo.config import load_config
    from ricepo.plan.timing import gpu_kind, load_calibration, write_calibration

    gpus = load_config()["gpus"]
    assert gpu_kind("NVIDIA H200", gpus) == "h200_141gb" and gpu_kind("NVIDIA H100 80GB HBM3", gpus) == "h100_80gb"
    with pytest.raises(RicepoError, match="no single entry of the config's gpus is named like 'NVIDIA A100'"):
        gpu_kind("NVIDIA A100", gpus)
    path = write_calibration(
        tmp_path, "h100_80gb", "NVIDIA H100 80GB HBM3", "abc1234", "bench", "compiled", "r1_distill_qwen_1p5b", {64: 5000.04, 8: 1600.0}
    )
    c = load_calibration("h100_80gb", tmp_path)
    assert c.decode_tokens_per_s == {8: 1600.0, 64: 5000.0} and c.sampler == "compiled" and c.commit == "abc1234"
    path.write_text(path.read_text().replace("gpu: h100_80gb", "gpu: h200_141gb"))
    load_calibration.cache_clear()
    with pytest.raises(RicepoError, match=r"h100_80gb\.yaml: gpu: 'h200_141gb' is not the file's GPU 'h100_80gb'"):
        load_calibration("h100_80gb", tmp_path)
    path.write_text("gpu: h100_80gb\n")
    load_calibration.cache_clear()
    with pytest.raises(RicepoError, match=r"h100_80gb\.yaml: missing decode_tokens_per_s"):
        load_calibration("h100_80gb", tmp_path)
    load_calibration.cache_clear()
