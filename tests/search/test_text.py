"""How figures are written for people: durations, SI counts, aligned tables."""

import pytest

from search.text import duration, si, table


@pytest.mark.parametrize(("seconds", "text"), [(4.24, "4.2s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_durations(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"), [(512, "512"), (56_300, "56.3k"), (4_210_000, "4.21M"), (2.5e9, "2.5G")]
)
def test_si_counts(value, text):
    assert si(value) == text


def test_a_table_aligns_names_left_and_figures_right():
    rows = [("name", "ms", "note"), ("forward", "12.5", "fast"), ("lnorm 9x9", "3.0", "")]
    assert table(rows).splitlines() == [
        "  name         ms  note",
        "  forward    12.5  fast",
        "  lnorm 9x9   3.0",
    ]
    # each column its own side; a row may be short
    assert table([("a", "b", "c"), ("dd", "e")], align="lrl", indent="").splitlines() == ["a   b  c", "dd  e"]
