"""An exception as the one line users see."""

from search.errors import TrackingError, UserError, error_line


def test_an_exception_in_one_line_with_its_type_or_without():
    e = ValueError("first line\nsecond line")
    assert error_line(e) == "ValueError: first line"
    assert error_line(e, typed=False) == "first line"
    assert error_line(ValueError("x" * 900)) == ("ValueError: " + "x" * 900)[:500]
    assert error_line(ValueError("x" * 900), 20, typed=False) == "x" * 20
    assert error_line(RuntimeError(), typed=False) == "RuntimeError"  # no message: its type
    assert error_line(RuntimeError("  \n")) == "RuntimeError:   "


def test_a_tracking_error_is_a_user_error():
    assert issubclass(TrackingError, UserError)
