"""Host ranges and --limit patterns: examples, and properties checked by hypothesis."""

from __future__ import annotations

import doctest
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InventoryError
from agent.inventory import addresses, evaluate, expand_hostname_range, load_inventory, select
from agent.inventory.patterns import split_pattern
from agent.inventory.ranges import expand_host_pattern

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "inventories"
INV = load_inventory(str(CORPUS / "ini_fleet" / "hosts"))
GROUPS = sorted(INV.groups)


# --- ranges --------------------------------------------------------------------------------------


def test_range_examples() -> None:
    assert expand_hostname_range("web[01:03]") == ["web01", "web02", "web03"]
    assert expand_hostname_range("db-[a:c]") == ["db-a", "db-b", "db-c"]
    assert expand_hostname_range("n[1:10:4]") == ["n1", "n5", "n9"]
    assert expand_hostname_range("r[1:2]-[x:y]") == ["r1-x", "r1-y", "r2-x", "r2-y"]
    assert expand_hostname_range("[:2].lab") == ["0.lab", "1.lab", "2.lab"]
    assert expand_host_pattern("web[1:2]:2222") == (["web1", "web2"], 2222)
    assert expand_host_pattern("2001:db8::1") == (["2001:db8::1"], None)
    assert expand_host_pattern("[2001:db8::1]:2200") == (["2001:db8::1"], 2200)


@pytest.mark.parametrize("bad", ["w[1:]", "w[1]", "w[01:100]", "w[a:5]", "w[z:a]", "w[1:2:0]", "w[1:2"])
def test_bad_ranges(bad: str) -> None:
    with pytest.raises(InventoryError):
        expand_hostname_range(bad)


@given(
    prefix=st.text(string.ascii_lowercase + "-", max_size=5),
    lo=st.integers(0, 300),
    span=st.integers(0, 300),
    step=st.integers(1, 7),
    width=st.integers(1, 4),
)
def test_numeric_ranges(prefix: str, lo: int, span: int, step: int, width: int) -> None:
    hi = lo + span
    padded = width > 1 and len(str(hi)) <= width
    beg, end = (str(lo).zfill(width), str(hi).zfill(width)) if padded else (str(lo), str(hi))
    if padded and not beg.startswith("0"):
        beg, end = str(lo), str(hi)  # no leading zero: no padding, as in Ansible
    names = expand_hostname_range(f"{prefix}[{beg}:{end}:{step}].lab")
    numbers = list(range(lo, hi + 1, step))
    assert len(names) == len(numbers) == len(set(names))
    for name, n in zip(names, numbers, strict=True):
        assert name.startswith(prefix) and name.endswith(".lab")
        digits = name[len(prefix) : -len(".lab")]
        assert int(digits) == n
        if beg.startswith("0") and len(beg) > 1:
            assert len(digits) == len(beg)  # zero padding kept


@given(
    a=st.sampled_from(string.ascii_letters), b=st.sampled_from(string.ascii_letters), step=st.integers(1, 5)
)
def test_letter_ranges(a: str, b: str, step: int) -> None:
    i, j = sorted((string.ascii_letters.index(a), string.ascii_letters.index(b)))
    lo, hi = string.ascii_letters[i], string.ascii_letters[j]
    assert expand_hostname_range(f"h-[{lo}:{hi}:{step}]") == [
        f"h-{c}" for c in string.ascii_letters[i : j + 1 : step]
    ]


# --- limit patterns ------------------------------------------------------------------------------


def test_pattern_examples() -> None:
    assert select(INV, "web") == ("web01", "web02", "web03", "web04")
    assert select(INV, "bastion") == ("bastion",)
    assert select(INV, "db-*") == ("db-a.example.net", "db-b.example.net", "db-c.example.net")
    assert select(INV, "~web0[12]") == ("web01", "web02")
    assert select(INV, "web:&db") == ("web01",)
    assert select(INV, "debian:!web") == ("db-a.example.net", "db-b.example.net", "db-c.example.net")
    assert select(INV, "bastion,web04") == ("bastion", "web04")
    assert select(INV, "!debian") == ("bastion",)
    assert select(INV, "all") == select(INV, "*") == INV.names
    assert select(INV, "ungrouped") == ("bastion",)


def test_limit_returns_a_smaller_inventory() -> None:
    small = INV.limit("db:!web01")
    assert small.names == ("db-a.example.net", "db-b.example.net", "db-c.example.net")
    assert small.groups["web"].hosts == ()
    assert small.group_hosts("debian") == small.names


@pytest.mark.parametrize("pattern", ["nosuch", "web:&nosuch", "all:!typo*", "~^zzz", "web:&bastion", ""])
def test_patterns_matching_nothing_are_errors(pattern: str) -> None:
    with pytest.raises(InventoryError):
        select(INV, pattern)


terms = st.sampled_from([*GROUPS, *INV.names, "web0*", "~db-[ab]", "all"])


@given(a=terms)
def test_exclusion_of_self_is_empty(a: str) -> None:
    assert evaluate(INV, f"{a}:!{a}") == frozenset()


@given(a=terms, b=terms)
def test_intersection_is_a_subset(a: str, b: str) -> None:
    both = evaluate(INV, f"{a}:&{b}")
    assert both <= evaluate(INV, a)
    assert both <= evaluate(INV, b)
    assert both == evaluate(INV, f"{b}:&{a}")


@given(a=terms, b=terms)
def test_union_is_commutative_and_matches_sets(a: str, b: str) -> None:
    union = evaluate(INV, f"{a}:{b}")
    assert union == evaluate(INV, f"{b}:{a}") == evaluate(INV, f"{a},{b}")
    assert union == evaluate(INV, a) | evaluate(INV, b)


@given(a=terms, b=terms)
def test_exclusion_is_set_difference(a: str, b: str) -> None:
    assert evaluate(INV, f"{a}:!{b}") == evaluate(INV, a) - evaluate(INV, b)


# Written as an INI file: hosts in file order lone, w1, d1, k1, z1; Ansible counts `all` by walking
# the group tree instead (ungrouped and the top-level groups, then their children, level by level).
TREE_INI = "lone\n[web]\nw1\n[web:children]\nwebkids\n[webkids]\nk1\n[webkids:children]\ndeep\n[deep]\nz1\n[db]\nd1\nw1\n"
# Another, where a top-level group is written after a child group.
CHILD_FIRST_INI = "[kids]\nk1\n[top]\nt1\n[top:children]\nkids\n[zz]\nz1\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # `ansible -i FILE PATTERN --list-hosts` with ansible-core 2.19.
        (TREE_INI, {"all[0]": {"lone"}, "all[1]": {"w1"}, "all[2:3]": {"d1", "k1"}, "all[4]": {"z1"}}),
        (
            TREE_INI,
            {"*[1]": {"w1"}, "*[6]": {"w1"}, "*[8]": {"z1"}, "*[4:]": {"z1", "lone", "w1", "k1", "d1"}},
        ),
        (TREE_INI, {"web[1:]": {"k1", "z1"}, "all[-1]": {"z1"}}),
        (CHILD_FIRST_INI, {"all[0]": {"t1"}, "all[1]": {"z1"}, "all[2:3]": {"k1"}}),
        (CHILD_FIRST_INI, {"*[1]": {"z1"}, "*[6]": {"z1"}, "*[8]": {"t1"}, "*[4:]": {"t1", "k1", "z1"}}),
    ],
)
def test_subscripts_of_all_count_hosts_in_ansibles_order(
    tmp_path: Path, text: str, expected: dict[str, set[str]]
) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    inv = load_inventory(str(path))
    assert {pattern: set(evaluate(inv, pattern)) for pattern in expected} == expected


@pytest.mark.parametrize(
    ("pattern", "terms"),
    [
        # ansible.inventory.manager.split_host_pattern, ansible-core 2.19.
        ("2001:db8::2", ["2001:db8::2"]),
        ("::1", ["::1"]),
        ("[2001:db8::2]:2200", ["[2001:db8::2]:2200"]),
        ("fe80::[a:f]", ["fe80::[a:f]"]),
        ("10.0.0.1:22", ["10.0.0.1:22"]),
        ("web:22", ["web:22"]),
        ("w[1:2]", ["w[1:2]"]),
        ("2001:db8::*", ["2001", "db8", "*"]),
        ("h1:2001:db8::2", ["h1", "2001", "db8", "2"]),
        ("web:&db:!x", ["web", "&db", "!x"]),
        ("db-[a:c]:!db-b", ["db-[a:c]", "!db-b"]),
        ("~web\\d+:db", ["~web\\d+", "db"]),
        ("web_:x", ["web_", "x"]),
        ("2001:db8::2,h1", ["2001:db8::2", "h1"]),
    ],
)
def test_a_pattern_that_is_one_address_is_one_term(pattern: str, terms: list[str]) -> None:
    assert split_pattern(pattern) == terms


def test_an_ipv6_host_can_be_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("h1 ansible_host=10.0.0.1\n2001:db8::2\n[web]\nw1\n")
    assert select(load_inventory(str(path)), "2001:db8::2") == ("2001:db8::2",)


def test_addresses_docstring_examples_hold() -> None:
    result = doctest.testmod(addresses)
    assert result.attempted > 0 and result.failed == 0
