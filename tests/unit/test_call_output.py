"""A call's output: teed to the worker's streams, bounded, and only while the call runs."""

from __future__ import annotations

import sys
import threading

import pytest

from rayfn_service.call_output import MAX_LOG_CHARS, CallLog, captured


def test_output_goes_to_the_worker_and_to_the_call_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with captured() as log:
        print("one")
        print("two", file=sys.stderr)
        thread = threading.Thread(target=lambda: print("from a thread"))
        thread.start()
        thread.join()
        sys.stdout.write("no newline")
        sys.stdout.buffer.flush()  # what the tee does not have, the worker's stream answers
    print("after")  # between calls: to the worker's stream only
    assert log.text() == "one\ntwo\nfrom a thread\nno newline"
    out, err = capsys.readouterr()
    assert out == "one\nfrom a thread\nno newlineafter\n" and err == "two\n"


def test_a_call_that_raises_stops_capturing_and_the_next_call_has_its_own_log() -> None:
    with pytest.raises(KeyError), captured():
        print("first call")
        raise KeyError("x")
    print("between calls")
    with captured() as second:
        print("second call")
    assert second.text() == "second call\n"


def test_a_long_log_keeps_its_end_and_says_how_much_was_cut() -> None:
    log = CallLog()
    for i in range(20_000):
        log.add(f"line {i:05d}\n")  # 11 characters each
    text = log.text()
    head, _, kept = text.partition("\n")
    assert head == f"[{20_000 * 11 - MAX_LOG_CHARS} earlier characters not kept]"
    assert len(kept) == MAX_LOG_CHARS and kept.endswith("line 19999\n")
    assert CallLog().text() == ""

