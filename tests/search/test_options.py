"""The commands' shared options and value types: declared once, added to each command that takes
them, with the defaults of their owners."""

import argparse

import pytest

from search.options import (
    DATA_DIR,
    DEVICE,
    RUNS_DIR,
    STORE,
    TRACKING_PATIENCE,
    Command,
    positive_float,
    positive_int,
    shape,
    some_of,
)
from search.settings import PATIENCE, RUNS


@pytest.mark.parametrize(
    ("read", "text", "value"),
    [
        (positive_int, "3", 3),
        (positive_float, "0.5", 0.5),
        (shape, "1x28x28", (1, 28, 28)),
        (shape, "3X32X32", (3, 32, 32)),
        (some_of(("a", "b", "c")), "c, a", ["c", "a"]),
    ],
)
def test_values_are_read(read, text, value):
    assert read(text) == value


@pytest.mark.parametrize(
    ("read", "text", "message"),
    [
        (positive_int, "0", "expected a number >= 1, got 0"),
        (positive_int, "2.5", "expected a whole number, got '2.5'"),
        (positive_float, "-1", "expected a number > 0, got -1"),
        (positive_float, "x", "expected a number, got 'x'"),
        (shape, "28x28", "expected CxHxW such as 1x28x28, got '28x28'"),
        (shape, "0x28x28", "every size must be >= 1"),
        (some_of(("a", "b")), "a,z", "expected some of a, b, got 'a,z'"),
        (some_of(("a", "b")), ",", "expected some of a, b"),
    ],
)
def test_bad_values_say_what_was_expected(read, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        read(text)


class Echo(Command):
    name = "echo"
    help = "say it"
    description = "Say it again."
    options = (*STORE, DATA_DIR, DEVICE, TRACKING_PATIENCE)

    def add_arguments(self, p):
        p.add_argument("word")

    def run(self, args):
        return len(args.word)


def test_a_command_takes_the_shared_options_with_their_owners_defaults():
    parser = argparse.ArgumentParser(prog="x")
    Echo().add_to(parser.add_subparsers(dest="c"))
    args = parser.parse_args(["echo", "hi"])
    assert (args.runs, args.tracking_uri, args.data_dir, args.device) == (str(RUNS), None, None, "auto")
    assert args.tracking_patience == PATIENCE and args.debug is False
    assert args.command.run(args) == 2
    args = parser.parse_args(["echo", "hi", "--runs", "r", "--device", "cpu", "--debug"])
    assert (args.runs, args.device, args.debug) == ("r", "cpu", True)


def test_an_option_can_be_added_with_other_help():
    parser = argparse.ArgumentParser(prog="x")
    RUNS_DIR.add(parser, help="the cache is RUNS/data")
    (action,) = [a for a in parser._actions if a.dest == "runs"]
    assert action.help == "the cache is RUNS/data" and action.default == str(RUNS)
