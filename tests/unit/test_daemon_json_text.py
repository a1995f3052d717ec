"""daemon.json edited as text: only insecure-registries changes; a person's layout stays byte for byte."""

from __future__ import annotations

import doctest
import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from agent.runtimes import daemon_json_text
from agent.runtimes.daemon_json import (
    INSECURE_KEY,
    detect_indent,
    merge_insecure,
    parse_daemon_json,
    serialise,
)
from agent.runtimes.daemon_json_text import splice_insecure

# As a person wrote it: tabs and spaces mixed, inline lists and objects, aligned values, unicode.
PERSONS = (
    "{\n"
    '\t"iptables": false,\n'
    '    "bridge": "none",\n'
    '\t"storage-driver":   "vfs",\n'
    '  "labels": ["owner=Zoë Müller", "site=東京"],\n'
    '    "registry-mirrors": ["https://mirror.example.com"],\n'
    '\t"insecure-registries": ["other.example.com:5000", "10.0.0.0/8"],\n'
    '    "log-opts": {"max-size": "10m", "max-file": "3"}\n'
    "}\n"
).encode()


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(daemon_json_text)
    assert result.attempted > 0 and result.failed == 0


def merged(raw: bytes, want: list[str], owned: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return merge_insecure(parse_daemon_json(raw, "daemon.json"), want, owned).doc


def test_an_added_entry_changes_only_the_lists_line() -> None:
    after = splice_insecure(PERSONS, merged(PERSONS, ["registry.test"]))
    assert after == PERSONS.replace(b'"10.0.0.0/8"]', b'"10.0.0.0/8", "registry.test"]')


def test_removing_the_agents_entries_leaves_the_persons_in_their_place() -> None:
    mine = PERSONS.replace(
        b'["other.example.com:5000", "10.0.0.0/8"]', b'["a", "other.example.com:5000", "b"]'
    )
    after = splice_insecure(mine, merged(mine, [], owned=["a", "b"]))
    assert after == PERSONS.replace(b'"10.0.0.0/8"', b"").replace(
        b'"other.example.com:5000", ]', b'"other.example.com:5000"]'
    )


def test_an_emptied_list_is_written_as_an_empty_list() -> None:
    raw = b'{\n  "debug": true,\n  "insecure-registries": [\n    "registry.test"\n  ]\n}\n'
    after = splice_insecure(raw, merged(raw, [], owned=["registry.test"]))
    assert after == b'{\n  "debug": true,\n  "insecure-registries": []\n}\n'


def test_a_multi_line_list_keeps_its_own_indentation() -> None:
    raw = b'{\n\t"insecure-registries": [\n\t\t\t"mine"\n\t\t],\n\t"debug": true\n}'
    after = splice_insecure(raw, merged(raw, ["registry.test"]))
    assert (
        after
        == b'{\n\t"insecure-registries": [\n\t\t\t"mine",\n\t\t\t"registry.test"\n\t\t],\n\t"debug": true\n}'
    )


def test_a_new_key_follows_the_last_member_in_the_files_style() -> None:
    pretty = b'{\n\t"debug": true,\n\t"log-opts": {"max-size": "10m"}\n}\n'
    assert splice_insecure(pretty, merged(pretty, ["registry.test"])) == (
        b'{\n\t"debug": true,\n\t"log-opts": {"max-size": "10m"},\n'
        b'\t"insecure-registries": [\n\t\t"registry.test"\n\t]\n}\n'
    )
    inline = b'{"debug": true}'
    assert splice_insecure(inline, merged(inline, ["r"])) == b'{"debug": true, "insecure-registries": ["r"]}'


def test_a_byte_order_mark_and_a_missing_final_newline_stay() -> None:
    raw = '\ufeff{"insecure-registries": []}'.encode()
    assert splice_insecure(raw, merged(raw, ["r"])) == '\ufeff{"insecure-registries": ["r"]}'.encode()


def test_what_cannot_be_spliced_is_left_to_a_rewrite() -> None:
    raw = b"{}"  # no member to follow
    assert splice_insecure(raw, merged(raw, ["r"])) is None


def test_a_key_given_twice_changes_in_its_last_place_and_the_first_stays() -> None:
    """dockerd reads the last (Go's encoding/json): that one is changed; the rewrite dropped the first."""
    raw = b'{\n  "insecure-registries": ["a"],\n  "debug": true,\n  "insecure-registries": ["b"]\n}\n'
    doc = merged(raw, ["r"])
    assert doc[INSECURE_KEY] == ["b", "r"]
    assert splice_insecure(raw, doc) == raw.replace(b'["b"]', b'["b", "r"]')


_SCALAR = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=8), st.none())
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_KEYS = st.text(alphabet="abcdefghij-", min_size=1, max_size=8).filter(lambda k: k != INSECURE_KEY)
_NAMES = st.lists(st.from_regex(r"\A[a-z]{1,6}(:[1-9][0-9]{0,3})?\Z"), max_size=4, unique=True)


@given(
    doc=st.dictionaries(_KEYS, _VALUE, min_size=1, max_size=5),
    present=st.none() | _NAMES,
    want=_NAMES,
    indent=st.sampled_from([2, 4, "\t"]),
)
def test_a_file_the_agent_wrote_is_spliced_to_what_a_rewrite_would_write(
    doc: dict[str, Any], present: list[str] | None, want: list[str], indent: int | str
) -> None:
    if present is not None:
        doc = {**doc, INSECURE_KEY: present}
    raw = serialise(doc, indent)
    assume(merge_insecure(doc, want, present or []).changed)  # unchanged: nothing is written
    after_doc = merged(raw, want, owned=present or [])
    assert splice_insecure(raw, after_doc) == serialise(after_doc, detect_indent(raw))


_SPACE = st.text(alphabet=" \t\n", max_size=3)


@given(
    doc=st.dictionaries(_KEYS, _VALUE, min_size=1, max_size=5),
    present=st.none() | _NAMES,
    want=_NAMES,
    gaps=st.lists(_SPACE, min_size=24, max_size=24),
)
def test_any_layout_keeps_every_other_member_as_written(
    doc: dict[str, Any], present: list[str] | None, want: list[str], gaps: list[str]
) -> None:
    if present is not None:
        doc = {**doc, INSECURE_KEY: present}
    members = [
        f"{json.dumps(k)}{gaps[2 * i % 24]}:{gaps[(2 * i + 1) % 24]}{json.dumps(v)}"
        for i, (k, v) in enumerate(doc.items())
    ]
    raw = ("{" + gaps[-1] + f",{gaps[-2]}".join(members) + gaps[-3] + "}" + gaps[-4]).encode()
    assume(merge_insecure(doc, want, present or []).changed)
    after_doc = merged(raw, want, owned=present or [])
    after = splice_insecure(raw, after_doc)
    assert after is not None
    text = after.decode()
    assert json.loads(text) == after_doc and list(json.loads(text)) == list(after_doc)
    for member, key in zip(members, doc, strict=True):
        if key != INSECURE_KEY:
            assert member in text


def test_a_crlf_file_stays_crlf() -> None:
    raw = b'{\r\n  "debug": true,\r\n  "log-level": "info"\r\n}\r\n'
    added = splice_insecure(raw, merged(raw, ["a", "b"]))
    assert added == (
        b'{\r\n  "debug": true,\r\n  "log-level": "info",\r\n  "insecure-registries": [\r\n'
        b'    "a",\r\n    "b"\r\n  ]\r\n}\r\n'
    )
    assert added is not None
    assert splice_insecure(added, merged(added, ["a"], owned=["a", "b"])) == added.replace(
        b',\r\n    "b"', b""
    )


def test_bytes_that_are_not_utf8_stay_byte_for_byte() -> None:
    """Docker 20.10 reads a daemon.json with Latin-1 bytes in a label: the splice keeps them."""
    raw = b'{\n\t"labels": ["owner=Jos\xe9"],\n\t"insecure-registries": ["a"]\n}\n'
    doc = parse_daemon_json(raw, "daemon.json", keep_invalid_utf8=True)
    after = splice_insecure(raw, {**doc, INSECURE_KEY: ["a", "b"]})
    assert after == raw.replace(b'["a"]', b'["a", "b"]')


def test_a_key_the_merged_document_no_longer_has_is_taken_out_with_its_comma() -> None:
    for raw, left in [
        (b'{\n  "debug": true,\n  "insecure-registries": []\n}\n', b'{\n  "debug": true\n}\n'),
        (b'{\n  "insecure-registries": [],\n  "debug": true\n}\n', b'{\n  "debug": true\n}\n'),
        (b'{"a": 1, "insecure-registries": [], "b": "\xe9"}', b'{"a": 1, "b": "\xe9"}'),
        (b'{ "insecure-registries": [] }\n', b"{}\n"),
    ]:
        doc = parse_daemon_json(raw, "daemon.json", keep_invalid_utf8=True)
        del doc[INSECURE_KEY]
        assert splice_insecure(raw, doc) == left, raw
    # Given twice: taking out the last would let dockerd read the first; left to a rewrite.
    twice = b'{"insecure-registries": ["x"], "insecure-registries": []}'
    assert splice_insecure(twice, {}) is None


def after_docker_20_10(raw: bytes, want: list[str], owned: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """The merge of what Docker 20.10 reads in ``raw``: its first JSON value alone."""
    doc = parse_daemon_json(raw, "daemon.json", keep_invalid_utf8=True, ignore_trailing=True)
    return merge_insecure(doc, want, owned).doc


def test_what_follows_the_document_stays_after_it_byte_for_byte() -> None:
    """A stray brace after the object: 20.10 reads the object alone, and the splice changes that alone."""
    raw = (
        b'{"iptables": false, "bridge": "none", "storage-driver": "vfs", "insecure-registries": ["hand.example"]}'
        b"\n}\n"
    )
    after = splice_insecure(raw, after_docker_20_10(raw, ["registry.test"]))
    assert after == raw.replace(b'["hand.example"]', b'["hand.example", "registry.test"]')


def test_a_second_document_and_bytes_that_are_not_utf8_after_the_first_stay() -> None:
    raw = b'\xef\xbb\xbf{\n  "debug": true\n}\n{"insecure-registries": ["theirs"]}\n\xff\n'
    after = splice_insecure(raw, after_docker_20_10(raw, ["registry.test"]))
    assert after == (
        b'\xef\xbb\xbf{\n  "debug": true,\n  "insecure-registries": [\n    "registry.test"\n  ]\n}'
        b'\n{"insecure-registries": ["theirs"]}\n\xff\n'
    )


def test_an_empty_object_with_data_after_it_is_written_out_and_the_data_kept() -> None:
    for raw, written in [
        (b"{}\n}\n", b'{\n  "insecure-registries": [\n    "r"\n  ]\n}'),
        (b"{\n\t}}", b'{\n\t"insecure-registries": [\n\t\t"r"\n\t]\n}'),  # the file's indent
    ]:
        tail = raw[raw.index(b"}") + 1 :]
        assert splice_insecure(raw, after_docker_20_10(raw, ["r"])) == written + tail, raw
    # Given twice, the key cannot be taken out in place: the object is written out, the tail kept.
    twice = b'{"insecure-registries": ["x"], "insecure-registries": []} ]'
    assert splice_insecure(twice, {}) == b"{} ]"


@given(
    doc=st.dictionaries(_KEYS, _VALUE, min_size=1, max_size=5),
    present=st.none() | _NAMES,
    want=_NAMES,
    space=_SPACE,
    tail=st.text(min_size=1, max_size=10).filter(lambda t: t[0] not in " \t\n\r"),
)
def test_whatever_follows_the_document_is_kept_and_the_document_spliced_as_without_it(
    doc: dict[str, Any], present: list[str] | None, want: list[str], space: str, tail: str
) -> None:
    if present is not None:
        doc = {**doc, INSECURE_KEY: present}
    head = serialise(doc).rstrip(b"\n")
    assume(merge_insecure(doc, want, present or []).changed)
    after_doc = merge_insecure(doc, want, present or []).doc
    raw = head + (space + tail).encode("utf-8", "surrogateescape")
    after = splice_insecure(raw, after_doc)
    assert after == splice_insecure(head, after_doc) + (space + tail).encode("utf-8", "surrogateescape")


def test_a_compact_file_gets_the_key_written_compact() -> None:
    """A file with no blank between its members got ``, "insecure-registries": [...]``."""
    raw = b'{"storage-driver":"vfs","iptables":false,"bridge":"none","debug":false}'
    after = splice_insecure(raw, merged(raw, ["registry.test", "registry.test:443"]))
    assert after == raw[:-1] + b',"insecure-registries":["registry.test","registry.test:443"]}'


@given(
    members=st.dictionaries(
        st.sampled_from(["debug", "bridge", "iptables", "storage-driver", "labels"]),
        st.one_of(st.booleans(), st.text(max_size=8), st.integers()),
        min_size=2,
    ),
    item_separator=st.sampled_from([",", ", ", " , ", ",\t"]),
    key_separator=st.sampled_from([":", ": ", " : ", ":\t"]),
    want=st.lists(
        st.sampled_from(["registry.test", "registry.test:443", "10.0.0.0/8"]), min_size=1, unique=True
    ),
)
def test_a_one_line_file_gets_the_key_as_its_own_separators_write_it(
    members: dict[str, Any], item_separator: str, key_separator: str, want: list[str]
) -> None:
    separators = (item_separator, key_separator)
    raw = json.dumps(members, separators=separators, ensure_ascii=False).encode()
    doc = merged(raw, want)
    assert splice_insecure(raw, doc) == json.dumps(doc, separators=separators, ensure_ascii=False).encode()


def test_a_compact_one_member_file_gets_the_key_compact_too() -> None:
    """``{"a":1}`` got ``{"a":1, "insecure-registries":["r", "q"]}``: its colon compact, its commas not."""
    raw = b'{"a":1}'
    assert (
        splice_insecure(raw, merged(raw, ["r:5000", "q"])) == b'{"a":1,"insecure-registries":["r:5000","q"]}'
    )


@given(
    list_joint=st.sampled_from([",", ", ", " , ", ",\t"]),
    member_joint=st.sampled_from([",", ", "]),
    added=st.lists(
        st.sampled_from(["z.test", "10.0.0.0/8", "w.test:5000"]), min_size=1, max_size=3, unique=True
    ),
)
def test_an_inline_list_keeps_its_own_joints_whatever_the_objects(
    list_joint: str, member_joint: str, added: list[str]
) -> None:
    """A person's ``["x", "y"]`` in a compact object was rewritten ``["x","y",...]``: restyled in the diff."""
    raw = f'{{"a":1{member_joint}"insecure-registries":["x"{list_joint}"y"]}}'.encode()
    doc = merged(raw, added)
    entries = list_joint.join(json.dumps(e) for e in doc[INSECURE_KEY])
    assert splice_insecure(raw, doc) == f'{{"a":1{member_joint}"insecure-registries":[{entries}]}}'.encode()
