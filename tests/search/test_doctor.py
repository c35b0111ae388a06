"""archsearch doctor: every step of the acceptance check, on the CPU at toy sizes."""

import json

import pytest

from search import doctor
from search.cli import main

pytestmark = pytest.mark.slow


def test_every_step_runs_on_the_cpu_and_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["doctor", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    report = json.loads((out / "doctor.json").read_text())
    steps = report["steps"]
    assert list(steps) == list(doctor.STEPS) and report["passed"]
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in steps.values()), steps
    assert steps["environment"]["precision"] in ("bf16 autocast", "float32")  # a CPU's, said
    assert steps["campaign"]["trials"] == 3 and steps["campaign"]["packing"] == "--workers 2"
    assert 0 < steps["retrain"]["test_acc"] <= 1
    assert steps["export"]["onnx_max_abs_diff"] <= steps["export"]["tolerance"]
    assert "model.onnx" in steps["export"]["files"]
    assert steps["evaluator"]["ratio"] > 0 and steps["screen"]["models_per_hour"] > 0
    assert [row["at_once"] for row in steps["packing"]["levels"]] == [1, 2]
    for name in doctor.STEPS:  # one line of the table each
        assert any(line.startswith(f"{name} ") and " ok " in line for line in said.splitlines()), name
    assert "every step passed" in said
    log = (out / "doctor.log").read_text()
    assert "$ archsearch run " in log and "$ archsearch bench workers " in log


def test_a_failed_step_fails_the_check_and_the_steps_that_need_it_are_skipped(tmp_path, capsys, monkeypatch):
    def broken(self):
        raise doctor.StepFailed("no trial ended ok")

    monkeypatch.setattr(doctor.Doctor, "run_campaign", broken)
    out = tmp_path / "check"
    steps = "campaign,retrain,export"
    code = main(["doctor", "--device", "cpu", "--quick", "--steps", steps, "--out", str(out)])
    assert code == 1
    said = capsys.readouterr().out
    steps = json.loads((out / "doctor.json").read_text())["steps"]
    assert {n: s["status"] for n, s in steps.items()} == {
        "environment": "ok",
        "campaign": "failed",
        "retrain": "skipped",
        "export": "skipped",
    }
    assert "no trial ended ok" in said and "FAILED: campaign, retrain, export" in said


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu"], "--gpu: torch sees no CUDA device here"),
        (["--steps", "campaign,nope"], "--steps: expected some of environment, campaign"),
        (["--data-dir", "/nonexistent"], "--data-dir /nonexistent: not a folder"),
    ],
)
def test_doctor_usage_errors(tmp_path, capsys, args, message):
    try:
        code = main(["doctor", *args, "--out", str(tmp_path / "check")])
    except SystemExit as e:  # argparse refuses the value itself
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "check").exists()


def test_an_output_folder_that_holds_files_is_refused(tmp_path, capsys):
    (tmp_path / "old.json").write_text("{}")
    assert main(["doctor", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert "holds files already" in capsys.readouterr().err
