"""The trial contract: outcomes and their groups, a result from an epoch history, the planned
result, the errors that end a trial, the device helpers."""

import pytest
import torch

from models import Limits
from search.data import load_data
from search.errors import UserError
from search.outcome import ENDED, LEARNED, Outcome, counts_text, outcome_counts
from search.trial import (
    TIMEOUT,
    TrialResult,
    deadline_check,
    failures,
    is_device_error,
    planned,
    release_memory,
    resolve_device,
    seeded,
)

ARCH = {
    "input_norm": {"kind": "none"},
    "layers": [
        {
            "filters": {"count": 4, "size": 3, "stride": 1, "init": "kaiming_normal", "trainable": True},
            "activation": {"kind": "relu"},
            "pool": {"kind": "max", "size": 2, "stride": 2},
            "norm": {"kind": "none"},
            "dropout": 0.0,
            "padding": "same",
        }
    ],
    "head": {"pool": "flatten", "hidden": 0, "dropout": 0.0},
}


def test_outcomes_are_their_tags_text_and_fall_in_their_groups():
    assert [str(o) for o in Outcome] == ["ok", "pruned", "invalid", "failed", "killed", "running"]
    assert Outcome("ok") is Outcome.OK and Outcome.OK == "ok"  # as read back from an MLflow tag
    assert [o for o in Outcome if o.ended] == list(ENDED)
    assert [o for o in Outcome if o.learned] == list(LEARNED) == [Outcome.OK, Outcome.PRUNED]
    assert not Outcome.KILLED.ended and not Outcome.RUNNING.ended  # run again on resume
    with pytest.raises(ValueError):
        Outcome("done")


def test_outcome_counts_keep_the_order_of_the_outcomes():
    counts = outcome_counts(["failed", "ok", Outcome.PRUNED, "ok", "invalid"])
    assert list(counts.items()) == [
        (Outcome.OK, 2),
        (Outcome.PRUNED, 1),
        (Outcome.INVALID, 1),
        (Outcome.FAILED, 1),
    ]
    assert counts_text(outcome_counts(["ok", "ok"])) == "2 ok"
    assert counts_text(outcome_counts(["ok"]), always=(Outcome.OK, Outcome.INVALID, Outcome.FAILED)) == (
        "1 ok, 0 invalid, 0 failed"
    )
    assert counts_text({}) == ""


def test_a_result_from_its_epochs_takes_the_last_and_the_best():
    history = [{"val_acc": 0.5, "val_loss": 1.0}, {"val_acc": 0.7, "val_loss": 0.8}, {"val_acc": 0.6}]
    r = TrialResult.from_history(history, Outcome.PRUNED, reason="asha", train_seconds=3.0)
    assert (r.outcome, r.reason, r.train_seconds) == (Outcome.PRUNED, "asha", 3.0)
    assert (r.val_acc, r.val_loss) == (0.6, None)  # the last epoch's, what the weights are
    assert (r.best_val_acc, r.best_val_loss, r.best_epoch) == (0.7, 0.8, 2)
    assert r.loss == pytest.approx(0.4) and r.metrics()["epochs_done"] == 3.0
    assert TrialResult.from_history(history).outcome == Outcome.OK
    assert TrialResult("failed").outcome is Outcome.FAILED  # a string, as tests and workers give it


def test_metrics_leave_out_what_is_unknown_or_not_finite():
    r = TrialResult(Outcome.OK, val_acc=0.5, val_loss=float("nan"), params=10)
    assert r.metrics() == {
        "val_acc": 0.5,
        "loss": 0.5,
        "train_seconds": 0.0,
        "params": 10.0,
        "epochs_done": 0.0,
    }


def test_the_planned_result_has_the_size_or_says_why_it_is_invalid(tmp_path):
    data = load_data("digits", cache_dir=tmp_path)
    r = planned(ARCH, data, None)
    assert r.outcome == Outcome.OK and r.params > 0 and r.macs > 0 and r.device == "cpu"
    refused = planned(ARCH, data, Limits(max_params=10))
    assert refused.outcome == Outcome.INVALID and "max_params" in refused.reason and refused.params is None


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), True),
        (getattr(torch, "AcceleratorError", RuntimeError)("CUDA error: unspecified launch failure"), True),
        (RuntimeError("CUDA error: out of memory"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("CUDA error: not a runtime error"), False),
    ],
)
def test_cuda_errors_that_poison_the_process_are_told_apart(error, fatal):
    assert is_device_error(error) is fatal
    result = TrialResult("ok")
    with failures(result):
        raise error
    assert result.outcome == "failed" and result.device_error is fatal


def test_failures_record_why_a_trial_ended_and_let_ctrl_c_through():
    result = TrialResult(Outcome.OK)
    with failures(result):
        deadline_check(0.0)()  # already past
    assert (result.outcome, result.reason) == (Outcome.FAILED, TIMEOUT)
    result = TrialResult(Outcome.OK)
    with failures(result):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
    assert result.reason == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    result = TrialResult(Outcome.OK)
    with failures(result):
        raise ValueError("bad\nsecond line")
    assert result.reason == "ValueError: bad" and "Traceback" in result.traceback
    with pytest.raises(KeyboardInterrupt), failures(TrialResult(Outcome.OK)):
        raise KeyboardInterrupt
    assert deadline_check(None)() is None  # no limit


def test_releasing_memory_never_raises_after_a_cuda_error(monkeypatch):
    def poisoned():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "empty_cache", poisoned)
    release_memory(torch.device("cuda"))  # the failure is recorded already; cleanup is best effort


def test_a_trial_seeds_the_global_generator_and_gives_it_back():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    with seeded(7, torch.device("cpu")):
        inside = torch.rand(1)
    assert torch.equal(torch.rand(1), before)  # the caller's sequence goes on untouched
    with seeded(7, torch.device("cpu")):
        assert torch.equal(torch.rand(1), inside)


def test_devices_by_name():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda: torch sees no CUDA device here"):
            resolve_device("cuda")


def test_metrics_leave_out_what_is_unknown():
    assert TrialResult("invalid", reason="too big", params=None).metrics() == {
        "train_seconds": 0.0,
        "epochs_done": 0.0,
    }
