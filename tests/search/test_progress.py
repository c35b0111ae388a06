"""What ``archsearch run`` shows: a status line on a terminal, plain lines elsewhere, nothing when quiet."""

import io

from search.progress import Progress
from search.trial import TrialResult


class Terminal(io.StringIO):
    def isatty(self):
        return True


CONFIG = {"architecture": {"layers": [{"filters": {"count": 8, "size": 3}, "pool": {"kind": "max"}}]}}


def test_progress_on_a_terminal_redraws_a_status_line():
    out = Terminal()
    p = Progress(stream=out)
    p.start(0, 2, None)
    p.trial_start(0, CONFIG)
    p.epoch(0, 1, 2, {"val_acc": 0.5})
    p.trial_end(0, TrialResult("ok", val_acc=0.5), True, {"trial": 0, "val_acc": 0.5, "loss": 0.5})
    text = out.getvalue()
    assert "\r\x1b[K" in text
    assert "trial 1/2 t000 epoch 1/2 val_acc 0.5000" in text
    assert "t000 [1/2] l1 f8 k3 pmax" in text and "* best" in text


def test_progress_off_a_terminal_writes_plain_lines_and_quiet_writes_none():
    out = io.StringIO()
    p = Progress(stream=out)
    p.start(0, 1, None)
    p.trial_start(0, CONFIG)
    p.epoch(0, 1, 2, {"val_acc": 0.5})
    p.trial_end(0, TrialResult("failed", reason="diverged: nan"), False, None)
    assert out.getvalue() == "t000 [1/1] l1 f8 k3 pmax  0.0s  failed: diverged: nan\n"
    quiet = io.StringIO()
    q = Progress(quiet=True, stream=quiet)
    q.trial_start(0, CONFIG)
    q.trial_end(0, TrialResult("ok", val_acc=0.5), True, None)
    assert quiet.getvalue() == ""
