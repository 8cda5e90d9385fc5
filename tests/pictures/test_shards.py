"""Shares of an input list for independent processes (pictures/shards.py)."""

from pathlib import Path

import pytest
from helpers import write_picture

from i2sb_cli.errors import UsageError
from i2sb_cli.pictures.inputs import InputFile
from i2sb_cli.pictures.shards import header_pixels, parse_shard, share


def _sources(names: list[str]) -> list[InputFile]:
    return [InputFile(Path("in") / n, Path(n)) for n in names]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("balanced", [False, True])
def test_shares_cover_the_list_exactly_once(count: int, balanced: bool) -> None:
    sources = _sources([f"p{i}.png" for i in (5, 3, 9, 0, 1, 8, 2)])
    pixels = [100, 4000, 10, 250, 250, 999, 7] if balanced else None
    shares = [share(sources, i, count, pixels=pixels) for i in range(count)]
    flat = [s for part in shares for s in part]
    assert sorted(flat, key=str) == sorted(sources, key=str)
    assert len(flat) == len(set(flat))
    # Each share keeps the order of the input list.
    for part in shares:
        assert part == [s for s in sources if s in part]


def test_shares_by_count_follow_the_sorted_names_whatever_the_given_order() -> None:
    sources = _sources(["c.png", "a.png", "d.png", "b.png"])
    assert [s.relative.name for s in share(sources, 0, 2)] == ["c.png", "a.png"]
    assert share(list(reversed(sources)), 0, 2) == list(reversed(share(sources, 0, 2)))


def test_shares_by_pixels_are_balanced() -> None:
    sources = _sources([f"{i}.png" for i in range(6)])
    pixels = [9, 1, 1, 1, 1, 5]
    loads = [sum(pixels[sources.index(s)] for s in share(sources, i, 2, pixels=pixels))
             for i in range(2)]  # fmt: skip
    assert sorted(loads) == [9, 9]


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "0/0"])
def test_bad_shards_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_a_good_shard_parses() -> None:
    assert parse_shard("2/5") == (2, 5)


def test_header_pixels_reads_sizes_and_counts_unreadable_pictures_as_zero(tmp_path: Path) -> None:
    write_picture(tmp_path / "a.png", (30, 20))
    (tmp_path / "b.png").write_bytes(b"not a picture")
    sources = [InputFile(tmp_path / n, Path(n)) for n in ("a.png", "b.png", "gone.png")]
    assert header_pixels(sources) == [600, 0, 0]
