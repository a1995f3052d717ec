"""daemon.json parsing, indentation, serialisation and the insecure-registries merge."""

from __future__ import annotations

import doctest
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.runtimes import daemon_json, daemon_json_checks, docker, docker_state, live_registry
from agent.runtimes.daemon_json import (
    DaemonJsonError,
    detect_indent,
    index_name,
    invalid_utf8_at,
    merge_insecure,
    parse_daemon_json,
    repeated_keys,
    serialise,
    trailing_data,
)

PATH = "/etc/docker/daemon.json"


@pytest.mark.parametrize("module", [daemon_json, daemon_json_checks, docker_state, docker, live_registry])
def test_docstring_examples_hold(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


# --- parse ----------------------------------------------------------------------------------------


def test_parse_keeps_file_order() -> None:
    doc = parse_daemon_json(b'{"z": 1, "a": {"y": 2, "b": 3}, "m": [3, 1]}', PATH)
    assert list(doc) == ["z", "a", "m"]
    assert list(doc["a"]) == ["y", "b"]


def test_parse_error_names_file_line_and_column() -> None:
    raw = b'{\n  "debug": true,\n  "labels": [\n    "a",,\n  ]\n}\n'
    with pytest.raises(DaemonJsonError) as err:
        parse_daemon_json(raw, PATH)
    message = str(err.value)
    assert message.startswith(f"{PATH}: not valid JSON (line 4, column 9): ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'["insecure-registries"]', "not a JSON object (found an array)"),
        (b'"text"', "not a JSON object (found a string)"),
        # In JSON's words, not Python's (NoneType, list, str, int, float, bool).
        (b"null", "not a JSON object (found null)"),
        (b"42", "not a JSON object (found a number)"),
        (b"4.5e1\n", "not a JSON object (found a number)"),
        (b"true", "not a JSON object (found true)"),
        (b" false ", "not a JSON object (found false)"),
        (b'{"insecure-registries": "reg.test"}', "insecure-registries must be a list of strings"),
        (b'{"insecure-registries": ["reg.test", 5]}', "insecure-registries must be a list of strings"),
        (b'{"insecure-registries": null}', None),
        (b'{"mtu": NaN}', "not valid JSON"),
        (b'{"debug": true}\xff', "not UTF-8"),
    ],
)
def test_parse_refuses_what_dockerd_refuses(raw: bytes, expected: str | None) -> None:
    if expected is None:
        assert parse_daemon_json(raw, PATH) == {"insecure-registries": None}
        return
    with pytest.raises(DaemonJsonError) as err:
        parse_daemon_json(raw, PATH)
    assert str(err.value).startswith(f"{PATH}: ")
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("raw", "repeated"),
    [
        (
            b'{"insecure-registries": ["a"], "insecure-registries": ["b"]}',
            {"insecure-registries": [["a"], ["b"]]},
        ),
        (b'\xef\xbb\xbf{"debug": true, "debug": false, "debug": 1}', {"debug": [True, False, 1]}),
        # A key repeated inside another object is not a top-level one.
        (b'{"log-opts": {"max-size": "1m", "max-size": "2m"}, "debug": true}', {}),
        (b'{"insecure-registries": ["a"]}', {}),
        (b'{"debug": tru}', {}),
        (b"[1, 1]", {}),
    ],
)
def test_repeated_top_level_keys_are_found_with_every_value(
    raw: bytes, repeated: dict[str, list[object]]
) -> None:
    assert repeated_keys(raw) == repeated


def test_the_parse_reads_a_repeated_key_as_dockerd_does_the_last_value() -> None:
    doc = parse_daemon_json(b'{"insecure-registries": ["a"], "insecure-registries": ["b"]}', PATH)
    assert doc == {"insecure-registries": ["b"]}


def test_parse_empty_file_and_bom() -> None:
    assert parse_daemon_json(b"", PATH) == {}
    assert parse_daemon_json(b"  \n", PATH) == {}
    assert parse_daemon_json(b'\xef\xbb\xbf{"debug": true}', PATH) == {"debug": True}


# --- indentation and serialisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "indent"),
    [
        (None, 2),
        (b"", 2),
        (b'{"debug": true}', 2),
        (b'{\n  "debug": true\n}\n', 2),
        (b'{\n    "debug": true\n}\n', 4),
        (b'{\n\t"debug": true\n}\n', "\t"),
        (b'{\n        "a": 1\n}', 8),
    ],
)
def test_detect_indent(raw: bytes | None, indent: int | str) -> None:
    assert detect_indent(raw) == indent


def test_serialise_round_trips_a_file_written_the_same_way() -> None:
    raw = b'{\n    "log-driver": "json-file",\n    "labels": [\n        "zone=\xc3\xa9t\xc3\xa9"\n    ]\n}\n'
    assert serialise(parse_daemon_json(raw, PATH), detect_indent(raw)) == raw


def test_serialise_tab_indent_and_final_newline() -> None:
    out = serialise({"insecure-registries": ["r"]}, "\t")
    assert out == b'{\n\t"insecure-registries": [\n\t\t"r"\n\t]\n}\n'


# --- merge ------------------------------------------------------------------------------------------


def test_merge_appends_keeping_existing_order_and_position() -> None:
    doc = {"debug": True, "insecure-registries": ["b.test", "a.test"], "log-driver": "local"}
    merge = merge_insecure(doc, ["c.test", "a.test"], [])
    assert merge.doc == {
        "debug": True,
        "insecure-registries": ["b.test", "a.test", "c.test"],
        "log-driver": "local",
    }
    assert list(merge.doc) == ["debug", "insecure-registries", "log-driver"]
    assert merge.added == ("c.test",)
    assert merge.removed == ()
    assert merge.owned == ("c.test",)  # a.test was there first: not claimed
    assert doc["insecure-registries"] == ["b.test", "a.test"]  # input untouched


def test_merge_adds_key_at_the_end_when_missing() -> None:
    merge = merge_insecure({"debug": False}, ["r.test"], [])
    assert list(merge.doc.items()) == [("debug", False), ("insecure-registries", ["r.test"])]


def test_merge_without_anything_to_do_adds_no_key() -> None:
    merge = merge_insecure({"debug": False}, [], ["gone.test"])
    assert not merge.changed
    assert merge.doc == {"debug": False}
    assert merge.owned == ()


def test_merge_removes_only_owned_entries_and_keeps_empty_list() -> None:
    merge = merge_insecure({"insecure-registries": ["mine.test", "agent.test"]}, [], ["agent.test"])
    assert merge.doc["insecure-registries"] == ["mine.test"]
    assert merge.removed == ("agent.test",)
    assert not merge.emptied

    merge = merge_insecure({"insecure-registries": ["agent.test"], "debug": True}, [], ["agent.test"])
    assert merge.doc == {"insecure-registries": [], "debug": True}  # fact 11: [] rather than no key
    assert merge.emptied


def test_merge_keeps_owned_entries_still_wanted() -> None:
    merge = merge_insecure({"insecure-registries": ["agent.test"]}, ["agent.test"], ["agent.test"])
    assert not merge.changed
    assert merge.owned == ("agent.test",)


def test_merge_reclaims_an_owned_entry_a_person_removed() -> None:
    merge = merge_insecure({"insecure-registries": []}, ["agent.test"], ["agent.test"])
    assert merge.added == ("agent.test",)
    assert merge.owned == ("agent.test",)


@pytest.mark.parametrize("written", ["http://agent.test", "HTTPS://agent.test"])
def test_merge_reads_a_persons_entry_with_a_scheme_as_dockerd_does(written: str) -> None:
    # dockerd strips http:// and https://: the person's entry already makes agent.test insecure.
    merge = merge_insecure({"insecure-registries": [written]}, ["agent.test"], [])
    assert not merge.changed
    assert merge.doc["insecure-registries"] == [written]  # kept as written
    assert merge.owned == ()  # the person's, never the agent's to remove


def test_index_name_strips_only_what_dockerd_strips() -> None:
    assert [index_name(e) for e in ["http://a:5000", "Https://b", "ftp://c", "10.0.0.0/8", "d"]] == [
        "a:5000",
        "b",
        "ftp://c",
        "10.0.0.0/8",
        "d",
    ]


names = st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,4})?(:[1-9][0-9]{0,3})?", fullmatch=True)
json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
foreign_docs = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k != "insecure-registries"),
    st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5),
    max_size=6,
)


@given(
    foreign=foreign_docs,
    foreign_entries=st.lists(names, max_size=5),
    owned=st.lists(names, max_size=4),
    want=st.lists(names, max_size=4),
    position=st.integers(0, 6),
)
def test_merge_never_drops_or_reorders_foreign_keys_or_entries(
    foreign: dict[str, object],
    foreign_entries: list[str],
    owned: list[str],
    want: list[str],
    position: int,
) -> None:
    owned = [o for o in owned if o not in foreign_entries]  # the state records only what the agent added
    items = list(foreign.items())
    items.insert(min(position, len(items)), ("insecure-registries", [*foreign_entries, *owned]))
    doc = dict(items)

    merge = merge_insecure(doc, want, owned)

    assert list(merge.doc) == list(doc)  # same keys, same order
    assert {k: v for k, v in merge.doc.items() if k != "insecure-registries"} == foreign
    entries = merge.doc["insecure-registries"]
    assert [e for e in entries if e in foreign_entries] == foreign_entries
    assert all(w in entries for w in want)
    assert not any(e in entries for e in owned if e not in want and e not in foreign_entries)
    assert set(merge.owned) <= set(want)
    assert not set(merge.owned) & set(foreign_entries)

    # Merging again with what is now owned changes nothing, and round-trips through text.
    again = merge_insecure(merge.doc, want, merge.owned)
    assert not again.changed
    assert json.loads(serialise(merge.doc, detect_indent(None))) == merge.doc


def test_bytes_that_are_not_utf8_are_read_as_docker_20_10_reads_them_and_written_back_as_they_were() -> None:
    """Go's encoding/json (Docker 20.10) takes such bytes inside a string; Docker 23.0 and later refuse
    the file. Read that way on purpose only: by default the parse refuses it, naming the byte."""
    raw = b'\xef\xbb\xbf{"labels": ["caf\xe9"], "debug": true}'
    assert invalid_utf8_at(raw) == 19 and invalid_utf8_at(b'{"labels": ["caf\xc3\xa9"]}') is None
    with pytest.raises(DaemonJsonError, match=r"not UTF-8 \(byte 19\)"):
        parse_daemon_json(raw, PATH)
    doc = parse_daemon_json(raw, PATH, keep_invalid_utf8=True)
    assert list(doc) == ["labels", "debug"]
    assert serialise(doc) == b'{\n  "labels": [\n    "caf\xe9"\n  ],\n  "debug": true\n}\n'
    # Outside a string such a byte is not JSON, for dockerd too.
    with pytest.raises(DaemonJsonError, match="not valid JSON"):
        parse_daemon_json(b'{"debug": true}\xff', PATH, keep_invalid_utf8=True)
    assert repeated_keys(b'{"a": "\xe9", "a": "\xff"}') == {"a": ["\udce9", "\udcff"]}


# --- data after the JSON document ------------------------------------------------------------------

# As a tester left it: a stray closing brace on the line after the object.
STRAY_BRACE = (
    b'{"iptables": false, "bridge": "none", "storage-driver": "vfs", "insecure-registries": ["hand.example"]}'
    b"\n}\n"
)


def test_data_after_the_document_is_refused_as_docker_23_refuses_it() -> None:
    """dockerd 26.1 (json.Unmarshal): "invalid character '}' after top-level value", at start and reload."""
    with pytest.raises(DaemonJsonError) as err:
        parse_daemon_json(STRAY_BRACE, PATH)
    message = str(err.value)
    assert message.startswith(f"{PATH}: not valid JSON (line 2, column 1): ")
    assert "which Docker 23.0 and later refuse (" in message
    assert "\"invalid character '}' after top-level value\"" in message
    assert "\n" not in message


def test_data_after_the_document_is_ignored_as_docker_20_10_ignores_it() -> None:
    """dockerd 20.10 (json.Decoder.Decode) reads the first value and stops: not a second object's keys,
    nor bytes that are not UTF-8, nor anything else that follows."""
    assert parse_daemon_json(STRAY_BRACE, PATH, ignore_trailing=True) == {
        "iptables": False,
        "bridge": "none",
        "storage-driver": "vfs",
        "insecure-registries": ["hand.example"],
    }
    second = b'{"debug": false}\n{"debug": true, "insecure-registries": ["second"]} \xff junk'
    assert parse_daemon_json(second, PATH, keep_invalid_utf8=True, ignore_trailing=True) == {"debug": False}
    # What the first value itself gets wrong is refused all the same.
    with pytest.raises(DaemonJsonError, match=r"line 1, column 11"):
        parse_daemon_json(b'{"debug": tru}\n}', PATH, ignore_trailing=True)
    with pytest.raises(DaemonJsonError, match=r"not a JSON object \(found an array\)"):
        parse_daemon_json(b"[1]\n}", PATH, ignore_trailing=True)


@pytest.mark.parametrize(
    ("raw", "line", "column", "text"),
    [
        (STRAY_BRACE, 2, 1, "}"),
        (b'\t{"debug": true}  ,\r\n', 1, 19, ","),
        (b'{\n  "debug": true\n}\n{"debug": false}\n\n', 4, 1, '{"debug": false}'),
        (b'{"labels": ["caf\xe9"]}\n\xff', 2, 1, "\udcff"),
    ],
)
def test_trailing_data_says_where_it_starts_and_what_it_is(
    raw: bytes, line: int, column: int, text: str
) -> None:
    found = trailing_data(raw)
    assert found is not None
    assert (found.line, found.column, found.text) == (line, column, text)


@pytest.mark.parametrize(
    "raw", [b"", b" \n", b'{"debug": true}', b'{"debug": true} \r\n\t\n', b'{"debug": tru} }']
)
def test_trailing_data_is_none_where_nothing_follows_or_nothing_can_be_read(raw: bytes) -> None:
    assert trailing_data(raw) is None


def test_trailing_data_is_shown_on_one_line_and_cut_short() -> None:
    found = trailing_data(b'{}\n{"labels": ["a\\nb"],\n "debug": true, "log-level": "debug"}\n')
    assert found is not None
    assert found.excerpt() == '"{\\"labels\\": [\\"a\\\\nb\\"],\\n \\"d..."'
    assert found.dockerd_says() == "invalid character '{' after top-level value"
    not_utf8 = trailing_data(b"{}\xff")
    assert not_utf8 is not None
    assert not_utf8.excerpt() == '"\\ufffd"'
    assert not_utf8.dockerd_says() == "invalid character ... after top-level value"


def test_repeated_keys_are_read_in_the_first_document_only() -> None:
    raw = b'{"insecure-registries": ["a"], "insecure-registries": ["b"]}\n{"debug": true, "debug": false}\n}'
    assert repeated_keys(raw) == {"insecure-registries": [["a"], ["b"]]}


_TRAILING = st.text(min_size=1, max_size=12).filter(lambda t: t[0] not in " \t\n\r")


@given(
    doc=st.dictionaries(st.text(max_size=6), st.booleans() | st.integers() | st.text(max_size=6), max_size=4),
    space=st.text(alphabet=" \t\n\r", max_size=3),
    tail=_TRAILING,
    indent=st.sampled_from([2, "\t"]),
)
def test_whatever_follows_a_document_is_read_as_each_docker_reads_it(
    doc: dict[str, object], space: str, tail: str, indent: int | str
) -> None:
    raw = serialise(doc, indent) + space.encode() + tail.encode()
    assert parse_daemon_json(raw, PATH, ignore_trailing=True) == doc
    with pytest.raises(DaemonJsonError, match=r"Docker 23\.0 and later refuse \("):
        parse_daemon_json(raw, PATH)
    found = trailing_data(raw)
    assert found is not None
    assert found.text == tail.rstrip(" \t\n\r")
