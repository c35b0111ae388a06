"""What a space file may say: each field says what it expects, admits its range, and can be found
by its key path."""

import pytest

from search import schema
from search.schema import REQUIRED, Enum, Flag, Kinds, Num, Rec, Shape, Text, spec_at


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (Num(integer=True, low=1), "an integer >= 1"),
        (Num(low=0, low_open=True, nullable=True), "a number > 0 or null"),
        (Num(low=0, high=1, high_open=True), "a number in [0, 1)"),
        (Num(high=5), "a number <= 5"),
        (Flag(), "true or false"),
        (Enum(("tpe", "random")), "one of tpe, random"),
        (Text(), "a string"),
        (Shape(), "a list of 3 positive integers or null"),
        (Rec({"a": Flag(), "b": Flag()}), "a mapping with keys a, b"),
        (Kinds({"max": {}, "lp": {}}), "a kind (max, lp) or a mapping with a kind"),
    ],
)
def test_every_field_says_what_it_expects(spec, said):
    assert spec.describe() == said


def test_a_number_admits_its_range_and_its_open_ends_approached():
    unit = Num(low=0, high=1, low_open=True)
    assert unit.admits(0.5) == (True, True)
    assert unit.admits(0.0) == (False, True)  # open: 0 itself is out ...
    assert unit.admits(0.0, open_end=True) == (True, True)  # ... but a distribution may approach it
    assert unit.admits(1.5) == (True, False)
    assert Num().admits(-1e300) == (True, True)


def test_settings_are_found_by_their_key_path():
    assert spec_at("search.trials") is schema.SEARCH.fields["trials"]
    assert spec_at("search.tpe.gamma").default == 0.25
    assert spec_at("search.pruning.rule").options == ("none", "asha", "median")
    assert spec_at("data.dataset").default == "fashion-mnist"
    assert spec_at("training.epochs").default == 10
    with pytest.raises(KeyError):
        spec_at("search.nope")


def test_required_fields_have_no_default_and_every_block_is_reachable():
    assert repr(REQUIRED) == "REQUIRED"
    assert schema.FILTERS.fields["count"].default is REQUIRED
    assert set(schema.SECTIONS) == {"data", "training", "constraints", "search"}
    assert set(schema.TOP_KEYS) == {"name", "description", "architecture", *schema.SECTIONS}
