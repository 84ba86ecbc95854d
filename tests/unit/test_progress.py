"""The text progress bar of notebooks without ipywidgets."""

from __future__ import annotations

import io

from rayfn._progress import TEXT_BAR_WIDTH, TextBar


def test_the_bar_is_redrawn_in_place_and_ends_its_line() -> None:
    out = io.StringIO()
    bar = TextBar(4, "square", out, redraw_seconds=0)
    for _ in range(4):
        bar.advance()
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert [f.split("] ")[1].split()[0] for f in frames] == ["0/4", "1/4", "2/4", "3/4", "4/4",
                                                               "4/4"]
    half = "#" * (TEXT_BAR_WIDTH // 2) + "." * (TEXT_BAR_WIDTH - TEXT_BAR_WIDTH // 2)
    assert frames[2].startswith(f"square [{half}] 2/4 ")
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_redraws_are_limited_but_the_last_count_is_always_shown() -> None:
    out = io.StringIO()
    bar = TextBar(1000, "many", out, redraw_seconds=3600)
    for _ in range(1000):
        bar.advance()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 2 and "1000/1000" in frames[-1]
