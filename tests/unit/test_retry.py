"""How a reader or writer retries a block transfer refused as STALE (crailpy/files.py)."""

from __future__ import annotations

import pytest

from crailpy.errors import Displaced, Stale
from crailpy.files import MAX_TRIES, _result


class Attempt:
    """A transfer whose result() raises `error`, or returns `value`."""

    def __init__(self, error: BaseException | None = None, value: int = 7) -> None:
        self.error, self.value = error, value

    def result(self) -> int:
        if self.error is not None:
            raise self.error
        return self.value


def retries(*outcomes: BaseException | None):
    """A retry() that gives the next attempts, and the list of those it gave."""
    given: list[Attempt] = []

    def retry() -> Attempt:
        given.append(Attempt(outcomes[len(given)]))
        return given[-1]
    return retry, given


def test_a_refused_key_is_looked_up_and_tried_once_more() -> None:
    retry, given = retries(None)
    assert _result(Attempt(Stale("old key")), retry) == 7 and len(given) == 1


def test_refused_twice_is_lost() -> None:
    retry, given = retries(Stale("still refused"), None)
    with pytest.raises(Stale, match="still refused"):
        _result(Attempt(Stale("old key")), retry)
    assert len(given) == 1


def test_displaced_transfers_are_tried_again_without_counting() -> None:
    retry, given = retries(Displaced("a"), Displaced("b"), Stale("own"), Displaced("c"), None)
    assert _result(Attempt(Displaced("first")), retry) == 7 and len(given) == 5


def test_tries_are_bounded_and_transfers_without_retry_fail_at_once() -> None:
    retry, given = retries(*[Displaced("again")] * MAX_TRIES)
    with pytest.raises(Displaced):
        _result(Attempt(Displaced("first")), retry)
    assert len(given) == MAX_TRIES - 1
    with pytest.raises(Stale):
        _result(Attempt(Stale("no retry")), None)
