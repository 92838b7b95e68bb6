"""The value parser of a guest's or forward's `comment`: printable text nft can carry
between double quotes, or one refusal that says every problem of it."""

from __future__ import annotations

import pytest

from nftfwd.semantic import values
from nftfwd.semantic.values import MAX_COMMENT_BYTES, Refusal


@pytest.mark.parametrize(
    "text",
    ["web", "a \\ b $x {c}; #d 'e' }", "métriques ✓", "x" * MAX_COMMENT_BYTES, "é" * 64],
)
def test_printable_text_of_at_most_128_bytes_is_a_comment(text: str) -> None:
    assert values.comment(text) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the comment is empty; write some text, or remove the key"),
        ('say "hi"', 'the comment holds a double quote ("), which an nft string cannot hold'),
        ("a\nb", "not printable (U+000A); write it as printable text on one line"),
        ("\u202e", "not printable (U+202E)"),
        ("x" * 129, "129 bytes long in UTF-8, and nft takes at most 128; shorten it by 1 byte"),
        ("é" * 65, "130 bytes long in UTF-8, and nft takes at most 128; shorten it by 2 bytes"),
    ],
)
def test_anything_else_is_refused_with_what_to_do(text: str, says: str) -> None:
    refused = values.comment(text)
    assert isinstance(refused, Refusal) and says in refused.message, refused


def test_every_problem_of_a_comment_is_in_its_one_refusal() -> None:
    refused = values.comment('"\t' + "x" * 200)
    assert isinstance(refused, Refusal)
    assert [part.split(";")[0] for part in refused.message.split("; and ")] == [
        'the comment holds a double quote ("), which an nft string cannot hold',
        "the comment holds characters that are not printable (U+0009)",
        "the comment is 202 bytes long in UTF-8, and nft takes at most 128",
    ]
