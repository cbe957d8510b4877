"""The CLI's argument checks: bounded numbers, dash-led values, output probes, one-line messages."""

import argparse

import pytest

from framework.cli.args import bounded_int, check_output_dir, check_output_file, protect_dash_values
from framework.cli.main import _parser
from framework.core.errors import OutputError, one_line
from framework.guidance import GuidanceSyntaxError, parse

CLI = pytest.mark.fault("CLI arguments")


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("10000", 10000), (" 42 ", 42), ("1_000", 1000)])
def test_bounded_int_accepts_whole_numbers_in_range(text, value):
    assert bounded_int(1, 10_000)(text) == value


@CLI
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "between 1 and 10,000, got 0"),
        ("10001", "got 10,001"),
        ("-5", "got -5"),
        ("3.0", "whole number"),
        ("1e3", "whole number"),
        ("", "whole number"),
        ("0x10", "whole number"),
        ("nan", "whole number"),
    ],
)
def test_bounded_int_names_the_bound(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        bounded_int(1, 10_000)(text)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sample", "--guidance", "-1*uncond + 2*cond(a)"], ["sample", "--guidance=-1*uncond + 2*cond(a)"]),
        (["sample", "--guidance=-uncond"], ["sample", "--guidance=-uncond"]),
        (
            ["explain", "-uncond + 2*cond(a)", "--steps", "3"],
            ["explain", "--steps", "3", "--", "-uncond + 2*cond(a)"],
        ),
        (["sample", "--seed", "-1"], ["sample", "--seed=-1"]),  # then refused by the bound, with its message
        (["sample", "--stpes", "3"], ["sample", "--stpes", "3"]),  # a misspelt option stays an option
        (["explain", "--", "-x*(y)"], ["explain", "--", "-x*(y)"]),
    ],
)
def test_values_that_start_with_a_minus_reach_their_option(argv, expected):
    assert protect_dash_values(argv, _parser()) == expected


def test_output_checks_create_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_output_dir(target) == target and not (tmp_path / "a").exists()
    assert check_output_file(tmp_path / "x" / "m.ckpt") and not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []  # the write probe leaves no file behind


@CLI
def test_an_output_under_a_file_or_in_a_read_only_place_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(f / "sub")
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match="is not writable"):
        check_output_dir(
            __import__("pathlib").Path("/proc/polyguide-test")
        )  # root may not write there either


def test_one_line_keeps_the_place_of_a_guidance_error():
    with pytest.raises(GuidanceSyntaxError) as e:
        parse("uncond + 4*(cond(shape) - uncond")
    line = one_line(e.value)
    assert "\n" not in line and line.startswith("malformed guidance: '(' was never closed")
    assert "(column 12: uncond + 4*»(cond(shape) - uncond)" in line
    assert one_line(KeyError("a key")) == "a key" and one_line(ValueError("a\n  b")) == "a | b"
