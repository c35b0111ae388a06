"""The cost model: seconds = epochs x images x (a x MACs + b), fitted on the trials so far."""

import pytest

from search.cost import PRIOR_MACS, CostModel, accuracy, accuracy_line


def truth(macs, images, epochs, a=2e-9, b=3e-4):
    return epochs * images * (a * macs + b)


def test_nothing_is_predicted_before_a_trial_has_ended_or_without_macs():
    cost = CostModel()
    assert not cost.ready and cost.predict(1e6, 1000, 3) is None
    cost.observe(None, 1000, 3, 10.0)  # a trial whose MACs are unknown teaches nothing
    cost.observe(1e6, 1000, 0, 10.0)  # nor one that trained no epoch
    assert not cost.ready
    cost.observe(1e6, 1000, 3, 10.0)
    assert cost.ready and cost.predict(None, 1000, 3) is None


def test_two_mac_counts_recover_both_coefficients_and_predict_any_size():
    cost = CostModel()
    for macs, images, epochs in [(1e6, 8000, 3), (2e7, 8000, 3), (5e6, 8000, 1)]:
        cost.observe(macs, images, epochs, truth(macs, images, epochs))
    a, b = cost.coefficients()
    assert a == pytest.approx(2e-9, rel=1e-6) and b == pytest.approx(3e-4, rel=1e-6)
    # a larger training set and more epochs scale linearly
    assert cost.predict(1e7, 60000, 10) == pytest.approx(truth(1e7, 60000, 10), rel=1e-6)


def test_one_mac_count_splits_its_time_as_if_the_overhead_were_prior_macs():
    cost = CostModel()
    cost.observe(4e6, 1000, 2, 10.0)
    assert cost.predict(4e6, 1000, 2) == pytest.approx(10.0)  # the same size: what was seen
    assert cost.predict(4e6, 2000, 2) == pytest.approx(20.0)
    # a bigger one: more, but less than in proportion to its MACs
    assert cost.predict(8e6, 1000, 2) == pytest.approx(10.0 * (8e6 + PRIOR_MACS) / (4e6 + PRIOR_MACS))


def test_the_coefficients_never_go_negative():
    cost = CostModel()
    # time that falls as MACs grow (noise): the best non-negative fit is a constant per image
    cost.observe(1e6, 1000, 1, 10.0)
    cost.observe(1e7, 1000, 1, 9.0)
    a, b = cost.coefficients()
    assert a >= 0 and b >= 0
    assert 9.0 <= cost.predict(5e6, 1000, 1) <= 10.0


def test_how_well_predictions_matched():
    assert accuracy([]) is None and accuracy_line([]) is None
    pairs = [(10.0, 12.0), (20.0, 18.0), (5.0, 5.0), (0.0, 3.0)]  # a zero prediction is left out
    got = accuracy(pairs)
    assert got["trials"] == 3
    assert got["median_ratio"] == pytest.approx(1.0)
    assert got["median_error"] == pytest.approx(2 / 18)
    assert accuracy_line(pairs) == (
        "trial times predicted for 3 trials: median actual/predicted 1.00, median error 11%"
    )
