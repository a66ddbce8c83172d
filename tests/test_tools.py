"""The built-in tools and the toolset: the calculator's allow-list and bounds, the clock,
and attachments read through a real upload store, confined to the conversation."""

import datetime
import json
import math

import pytest

from hermes_web.core.config import Config
from hermes_web.runs.tools import ToolContext, ToolError, Toolset, builtin_toolset, parse_arguments
from hermes_web.runs.tools.attachments import DEFAULT_READ_CHARS, SessionAttachments
from hermes_web.runs.tools.calculator import MAX_INT_BITS, evaluate
from hermes_web.store.datadir import DataDir
from hermes_web.store.uploads import UploadStore

# ------------------------------------------------------------------ calculator

VALUES = [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("2 ** 10", 1024),
    ("2 ** -1", 0.5),
    ("-3 ** 2", -9),
    ("7 // 2", 3),
    ("7 % 3", 1),
    ("10 / 4", 2.5),
    ("1_000 * 3", 3000),
    ("sqrt(16) + abs(-2)", 6.0),
    ("round(pi, 3)", 3.142),
    ("max(1, 5, 3) - min(4, 2)", 3),
    ("log(e)", 1.0),
    ("log(8, 2)", 3.0),
    ("factorial(5)", 120),
    ("comb(5, 2)", 10),
    ("pow(2, 10, 1000)", 24),
    ("hypot(3, 4)", 5.0),
    ("floor(2.7) + ceil(2.1)", 5),
]


@pytest.mark.parametrize("expression, value", VALUES)
def test_calculator_evaluates_arithmetic(expression, value):
    result = evaluate(expression)
    assert result == value and type(result) is type(value)


REFUSED = [
    ("__import__('os').system('id')", "unknown function"),
    ("open('/etc/passwd')", "unknown function"),
    ("(1).__class__", "Attribute is not allowed"),
    ("[1, 2][0]", "is not allowed"),
    ("x + 1", "unknown name 'x'"),
    ("'a' * 3", "only numbers"),
    ("True + 1", "only numbers"),
    ("1j * 2", "only numbers"),
    ("lambda: 1", "is not allowed"),
    ("1 if 2 else 3", "is not allowed"),
    ("1 << 100", "is not allowed"),
    ("1 < 2", "is not allowed"),
    ("sqrt(x=4)", "positional arguments only"),
    ("sqrt(1, 2)", "takes 1 argument"),
    ("9 ** 9 ** 9", "bits"),
    ("10 ** 100000", "bits"),
    ("(10 ** 2000) * (10 ** 2000)", "bits"),
    ("factorial(100000)", "integers up to"),
    ("comb(10 ** 6, 5000)", "integers up to"),
    ("round(1.5, 10 ** 6)", "digits"),
    ("1 / 0", "division by zero"),
    ("exp(1000)", "too large"),
    ("10.0 ** 400", "too large"),
    ("inf - inf", "not a finite number"),
    ("sqrt(-1)", "cannot compute"),
    ("1 +", "not an arithmetic expression"),
    ("", "non-empty"),
    ("1+" * 600 + "1", "longer than"),
    ("+".join(["1"] * 400), "parts"),
]


@pytest.mark.parametrize("expression, problem", REFUSED)
def test_calculator_refuses_what_is_not_bounded_arithmetic(expression, problem):
    with pytest.raises(ToolError, match=problem.replace("(", r"\(").replace("*", r"\*")):
        evaluate(expression)


def test_calculator_integers_stay_within_their_bound_and_large_ones_are_strings():
    assert evaluate("2 ** 9998").bit_length() == 9999 < MAX_INT_BITS
    with pytest.raises(ToolError):
        evaluate("2 ** 10000")
    outcome = builtin_toolset().call("calculator", '{"expression": "2 ** 64"}', context())
    assert outcome.result == {"expression": "2 ** 64", "result": str(2**64)} and not outcome.is_error
    json.dumps(outcome.result)


# ------------------------------------------------------------------ the toolset


def context(attachments=None, vision=True, clock=lambda: 1_700_000_000.0):
    return ToolContext("s1", "r1", attachments or SessionAttachments(None, "s1"), vision=vision, clock=clock)


def test_builtin_tools_have_the_documented_names_and_object_schemas():
    tools = builtin_toolset()
    assert tools.names == ["list_attachments", "read_attachment", "current_time", "calculator"]
    for schema in tools.schemas():
        assert schema["type"] == "function"
        function = schema["function"]
        assert function["description"] and function["parameters"]["type"] == "object"
        json.dumps(schema)


@pytest.mark.parametrize("arguments, args, problem", [
    ('{"expression": "1"}', {"expression": "1"}, None),
    ("", {}, None),
    (None, {}, None),
    ({"a": 1}, {"a": 1}, None),
    ('{"expression": ', '{"expression": ', "not valid JSON"),
    ("[1, 2]", [1, 2], "JSON object"),
    ("x" * 70_000, None, "longer than"),
])
def test_arguments_are_parsed_once_and_bad_ones_are_kept_as_sent(arguments, args, problem):
    parsed, found = parse_arguments(arguments)
    if args is not None:
        assert parsed == args
    assert (found is None) if problem is None else (problem in found)


def test_a_bad_call_is_an_error_result_never_an_exception():
    tools = builtin_toolset()
    unknown = tools.call("shell", '{"cmd": "ls"}', context())
    assert unknown.is_error and "no tool named 'shell'" in unknown.result["error"] and "calculator" in unknown.result["error"]
    broken = tools.call("calculator", '{"expression": "1 +', context())
    assert broken.is_error and broken.args == '{"expression": "1 +' and "not valid JSON" in broken.result["error"]
    refused = tools.call("calculator", {"expression": "x"}, context())
    assert refused.is_error and "unknown name" in refused.result["error"]

    class Buggy:
        name, description, parameters = "buggy", "fails", {"type": "object"}

        def run(self, args, ctx):
            raise KeyError("oops")

    failed = Toolset([Buggy()]).call("buggy", "{}", context())
    assert failed.is_error and "KeyError" in failed.result["error"]


def test_two_tools_cannot_share_a_name():
    with pytest.raises(ValueError):
        Toolset([builtin_toolset()._tools["calculator"]] * 2)


# ------------------------------------------------------------------ the clock


def test_current_time_in_utc_and_in_a_named_zone():
    tools = builtin_toolset()
    utc = tools.call("current_time", "{}", context())
    assert utc.result == {"timezone": "UTC", "iso": "2023-11-14T22:13:20+00:00", "weekday": "Tuesday", "unix": 1_700_000_000}
    tokyo = tools.call("current_time", '{"timezone": "Asia/Tokyo"}', context())
    assert tokyo.result["iso"] == "2023-11-15T07:13:20+09:00" and tokyo.result["timezone"] == "Asia/Tokyo"
    assert datetime.datetime.fromisoformat(tokyo.result["iso"]).timestamp() == 1_700_000_000


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Europe/../../x", 5, "a" * 80])
def test_current_time_refuses_unknown_or_path_like_zones(zone):
    outcome = builtin_toolset().call("current_time", {"timezone": zone}, context())
    assert outcome.is_error and ("time zone" in outcome.result["error"] or "timezone" in outcome.result["error"])


# ------------------------------------------------------------------ attachments


@pytest.fixture
def store(tmp_path):
    data_dir = DataDir(tmp_path / "var").create()
    return UploadStore(data_dir, Config(data_dir=tmp_path / "var"))


def upload(store, session_id, name, data: bytes) -> dict:
    receiving = store.receive(session_id)
    receiving.new_file(name).write(data)
    (meta,) = receiving.commit()
    return meta


def test_attachments_are_those_of_the_conversation_only(store):
    notes = upload(store, "s1", "notes.txt", b"hello notes\n")
    image = upload(store, "s1", "cat.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    unsent = upload(store, "s1", "draft.txt", b"not sent yet")
    other = upload(store, "s2", "other.txt", b"another session's file")
    history = [{"role": "user", "attachments": [{"id": notes["id"]}]}, {"role": "assistant", "text": "ok"}]
    attachments = SessionAttachments.of_conversation(store, "s1", history, [{"id": image["id"]}, {"id": other["id"]}])
    listed = builtin_toolset().call("list_attachments", "{}", context(attachments)).result["attachments"]
    assert [item["name"] for item in listed] == ["notes.txt", "cat.png"]
    assert listed[0] == {"id": notes["id"], "name": "notes.txt", "mime": "text/plain", "size": 12}
    tools = builtin_toolset()
    for args in ({"name": "draft.txt"}, {"id": unsent["id"]}, {"id": other["id"]}, {"name": "../s2/meta"}):
        outcome = tools.call("read_attachment", args, context(attachments))
        assert outcome.is_error and "no attachment" in outcome.result["error"], args


def test_read_attachment_returns_text_by_name_or_id_in_bounded_parts(store):
    text = "".join(f"line {number}: héllo wörld\n" for number in range(2000))
    meta = upload(store, "s1", "Big Notes.md", text.encode())
    attachments = SessionAttachments(store, "s1", [meta["id"]])
    tools = builtin_toolset()
    first = tools.call("read_attachment", {"name": "Big Notes.md"}, context(attachments)).result
    assert first["text"] == text[:DEFAULT_READ_CHARS] and first["truncated"] and first["next_offset"] == DEFAULT_READ_CHARS
    assert first["mime"] == "text/markdown" and first["offset"] == 0
    parts, offset = [], 0
    while offset is not None:
        part = tools.call("read_attachment", {"id": meta["id"], "offset": offset, "max_chars": 20_000},
                          context(attachments)).result
        parts.append(part["text"])
        offset = part["next_offset"]
    assert "".join(parts) == text and len(parts) == math.ceil(len(text) / 20_000)
    by_case = tools.call("read_attachment", {"name": "big notes.MD", "max_chars": 5.0}, context(attachments)).result
    assert by_case["text"] == text[:5]


@pytest.mark.parametrize("args, problem", [
    ({}, "name or its id"),
    ({"name": ""}, "non-empty"),
    ({"id": 7}, "non-empty string"),
    ({"name": "a.txt", "offset": -1}, "offset must be"),
    ({"name": "a.txt", "max_chars": 10**6}, "max_chars must be"),
    ({"name": "a.txt", "max_chars": True}, "max_chars must be"),
])
def test_read_attachment_validates_its_arguments(store, args, problem):
    meta = upload(store, "s1", "a.txt", b"abc")
    outcome = builtin_toolset().call("read_attachment", args, context(SessionAttachments(store, "s1", [meta["id"]])))
    assert outcome.is_error and problem in outcome.result["error"]


def test_read_attachment_refuses_images_binaries_and_deleted_files(store):
    image = upload(store, "s1", "cat.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    binary = upload(store, "s1", "blob.bin", bytes(range(256)) * 4)
    latin = upload(store, "s1", "latin.txt", "café".encode("latin-1") * 10)
    gone = upload(store, "s1", "gone.txt", b"soon gone")
    (store.data_dir.uploads_dir("s1") / "meta" / f"{gone['id']}.json").unlink()
    attachments = SessionAttachments(store, "s1", [image["id"], binary["id"], latin["id"], gone["id"]])
    tools = builtin_toolset()
    seen = tools.call("read_attachment", {"name": "cat.png"}, context(attachments))
    assert seen.is_error and "is an image" in seen.result["error"] and "given to you as an image" in seen.result["error"]
    blind = tools.call("read_attachment", {"name": "cat.png"}, context(attachments, vision=False))
    assert "not sent images" in blind.result["error"]
    for name in ("blob.bin", "latin.txt"):
        outcome = tools.call("read_attachment", {"name": name}, context(attachments))
        assert outcome.is_error and ("binary" in outcome.result["error"] or "UTF-8" in outcome.result["error"]), name
    assert tools.call("read_attachment", {"name": "gone.txt"}, context(attachments)).is_error
    assert [item["name"] for item in attachments.list()] == ["cat.png", "blob.bin", "latin.txt"]
