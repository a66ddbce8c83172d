"""Cursor syntax: ``<run_id>:<offset>`` (and a bare offset where a run is implied)."""

import pytest

from hermes_web.core.cursors import CursorError, parse_cursor

VALID = [
    ("r1:0", None, ("r1", 0)),
    ("01795514901811318-34d059:14476", None, ("01795514901811318-34d059", 14476)),
    ("a_b-C:7", None, ("a_b-C", 7)),
    ("12", "r9", ("r9", 12)),
    ("0", "r9", ("r9", 0)),
    ("other:5", "r9", ("other", 5)),  # an explicit run wins; the caller checks it is the right one
    ("r:999999999999999999", None, ("r", 999_999_999_999_999_999)),
    ("x" * 64 + ":1", None, ("x" * 64, 1)),
]

INVALID = [
    ("", None),
    ("12", None),  # a bare offset needs an implied run
    ("r1", None),
    ("r1:", None),
    (":5", None),
    ("r1:-1", None),
    ("-1", "r9"),
    ("r1:+1", None),
    ("r1:01", None),  # no leading zeros: one spelling per offset
    ("r1:1.0", None),
    ("r1:1e3", None),
    ("r1: 1", None),
    ("r1:0x10", None),
    ("r1:1\n", None),
    ("r1:１２", None),  # non-ASCII digits
    ("r1:" + "9" * 19, None),  # beyond any file offset
    ("../etc:0", None),
    ("r/1:0", None),
    ("r 1:0", None),
    ("r1:2:3", None),
    ("x" * 65 + ":1", None),
    ("r1:" + "1" * 100, None),
    ("garbage", "r9"),
    (None, None),
    (5, "r9"),
]


@pytest.mark.parametrize("text, default_run_id, expected", VALID)
def test_valid_cursors_parse(text, default_run_id, expected):
    assert parse_cursor(text, default_run_id) == expected


@pytest.mark.parametrize("text, default_run_id", INVALID)
def test_invalid_cursors_are_rejected(text, default_run_id):
    with pytest.raises(CursorError):
        parse_cursor(text, default_run_id)
