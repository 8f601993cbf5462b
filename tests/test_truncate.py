"""Middle truncation of command output: the pure function and its streaming twin."""

from __future__ import annotations

import random

import pytest

from codemonkeys.sandbox.truncate import HeadTail, truncate_middle


def test_short_output_is_kept_whole() -> None:
    assert truncate_middle(b"hello\n", 100) == ("hello\n", False)
    assert truncate_middle(b"x" * 100, 100) == ("x" * 100, False)
    assert truncate_middle(b"", 0) == ("", False)


def test_long_output_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    data = b"H" * 60 + b"M" * 880 + b"T" * 60
    text, cut = truncate_middle(data, 100)
    assert cut
    assert text == "H" * 50 + "\n[... 900 bytes cut ...]\n" + "T" * 50


def test_odd_limits_split_head_and_tail() -> None:
    text, cut = truncate_middle(b"abcdefghij", 5)
    assert cut and text == "ab\n[... 5 bytes cut ...]\nhij"
    text, cut = truncate_middle(b"abcdefghij", 1)
    assert cut and text == "\n[... 9 bytes cut ...]\nj"
    text, cut = truncate_middle(b"abc", 0)
    assert cut and text == "\n[... 3 bytes cut ...]\n"


def test_bad_bytes_and_split_characters_become_replacement_characters() -> None:
    assert truncate_middle(b"ok \xff\xfe", 100) == ("ok \ufffd\ufffd", False)
    data = "é".encode() * 10  # 20 bytes, 2 per character
    text, cut = truncate_middle(data, 7)  # head 3 bytes: a character is split
    assert cut
    assert text.startswith("é\ufffd")
    assert text.endswith("éé")


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        truncate_middle(b"x", -1)
    with pytest.raises(ValueError):
        HeadTail(-1)


@pytest.mark.parametrize("limit", [0, 1, 7, 64, 1000, 5000])
def test_streaming_equals_the_pure_function_for_any_chunking(limit: int) -> None:
    rng = random.Random(limit)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
        sink = HeadTail(limit)
        position = 0
        while position < len(data):
            step = rng.randrange(0, 300)
            sink.feed(data[position : position + step])
            position += step
        assert sink.render() == truncate_middle(data, limit)
        assert sink.total == len(data)
