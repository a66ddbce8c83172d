"""Compaction planning: the pure rules, table-driven."""

import pytest

from hermes_web.compaction.plan import (
    CLOSING,
    COMPACTED,
    DEAD,
    LIVE,
    TERMINAL,
    UNREADABLE,
    RunObservation,
    format_duration,
    parse_duration,
    plan_pruning,
    plan_session,
)

NOW = 1_000_000.0
HOUR = 3600.0


def old(run_id):
    return RunObservation(run_id, TERMINAL, ended_at=NOW - 2 * HOUR)


def young(run_id):
    return RunObservation(run_id, TERMINAL, ended_at=NOW - 60)


@pytest.mark.parametrize(
    "runs, older_than, fold, recover, finish, skipped",
    [
        ([], HOUR, (), (), (), ()),
        ([old("a"), old("b")], HOUR, ("a", "b"), (), (), ()),
        # A young run stops the prefix: "c" is old but must wait for "b".
        ([old("a"), young("b"), old("c")], HOUR, ("a",), (), (), ("b", "c")),
        ([old("a"), young("b")], 0.0, ("a", "b"), (), (), ()),
        ([old("a"), RunObservation("b", LIVE)], 0.0, ("a",), (), (), ("b",)),
        ([RunObservation("a", LIVE), old("b")], 0.0, (), (), (), ("a", "b")),
        ([old("a"), RunObservation("b", CLOSING, ended_at=0.0)], 0.0, ("a",), (), (), ("b",)),
        # A dead writer's run is recovered and folded whatever its age.
        ([old("a"), RunObservation("b", DEAD)], HOUR, ("a", "b"), ("b",), (), ()),
        ([RunObservation("a", UNREADABLE, detail="EACCES"), old("b")], 0.0, (), (), (), ("a", "b")),
        # Runs already in the transcript are finished off wherever they are.
        ([RunObservation("a", COMPACTED), young("b"), RunObservation("c", COMPACTED)], HOUR,
         (), (), ("a", "c"), ("b",)),
        # A run that ended exactly older_than ago is old enough.
        ([RunObservation("a", TERMINAL, ended_at=NOW - HOUR)], HOUR, ("a",), (), (), ()),
    ],
)
def test_plan_folds_the_longest_finished_prefix(runs, older_than, fold, recover, finish, skipped):
    plan = plan_session("s", runs, NOW, older_than)
    assert plan.fold == fold
    assert plan.recover == recover
    assert plan.finish == finish
    assert tuple(run_id for run_id, _ in plan.skipped) == skipped
    assert plan.retire == tuple(sorted(fold + finish))


def test_plan_says_why_each_run_stays():
    plan = plan_session("s", [young("a"), RunObservation("b", LIVE)], NOW, HOUR)
    assert plan.skipped == (("a", "ended 1m ago, younger than 1h"), ("b", "after a, kept in run order"))
    plan = plan_session("s", [RunObservation("a", LIVE)], NOW, 0.0)
    assert plan.skipped == (("a", "running (a live writer holds its lock)"),)


def test_plan_rejects_an_unknown_state():
    with pytest.raises(ValueError):
        plan_session("s", [RunObservation("a", "weird")], NOW, 0.0)


@pytest.mark.parametrize(
    "text, seconds",
    [("0", 0.0), ("90", 90.0), ("45s", 45.0), ("30m", 1800.0), ("1h", 3600.0), ("2d", 172800.0),
     ("1w", 604800.0), ("1.5h", 5400.0), (" 30D ", 2592000.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1y", "1h30m", "abc"])
def test_parse_duration_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (60, "1m"), (7200, "2h"), (86400 * 30, "30d")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_pruning_keeps_archives_younger_than_the_limit():
    archives = [("old", NOW - 31 * 86400), ("edge", NOW - 30 * 86400), ("new", NOW - 60)]
    assert plan_pruning(archives, NOW, 30 * 86400) == ["old"]
