"""A write is never cut by SIGINT/SIGTERM: the signal waits for the atomic write, then acts."""

import os
import signal

import pytest

from uer.io.atomic import atomic_write


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test (another test file in this worker may have left torch's)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_during_a_write_waits_for_it_then_interrupts(tmp_path, python_sigint):
    target = tmp_path / "out.txt"

    def write(handle):
        handle.write("first half ")
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-write
        handle.write("second half")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert target.read_text(encoding="utf-8") == "first half second half"  # whole, under its real name
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


def test_a_write_without_a_signal_leaves_the_handlers_alone(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    atomic_write(tmp_path / "x.txt", lambda handle: handle.write("x"))
    assert signal.getsignal(signal.SIGTERM) is before
