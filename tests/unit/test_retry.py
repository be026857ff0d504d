"""How a reader or writer retries a block transfer refused as STALE (crailpy/files.py)."""

from __future__ import annotations

import pytest

from crailpy.errors import Displaced, Stale
from crailpy.files import MAX_TRIES, _result, _Retry


class Attempt:
    """A transfer whose result() raises `error`, or returns `value`."""

    def __init__(self, error: BaseException | None = None, value: int = 7) -> None:
        self.error, self.value = error, value

    def result(self) -> int:
        if self.error is not None:
            raise self.error
        return self.value


def retries(*outcomes: BaseException | None):
    """A retry(refusal) that gives the next attempts, and the list of those it gave."""
    given: list[Attempt] = []

    def retry(refusal: Stale) -> Attempt:
        assert isinstance(refusal, Stale)
        given.append(Attempt(outcomes[len(given)]))
        return given[-1]
    return retry, given


def test_a_refused_key_is_looked_up_and_tried_once_more() -> None:
    retry, given = retries(None)
    assert _result(Attempt(Stale("old key")), retry) == 7 and len(given) == 1


def test_fresh_keys_refused_again_are_looked_up_again() -> None:
    """Freeing churns a key region's key: the fresh one may be retired before it is used."""
    retry, given = retries(Stale("retired again"), Displaced("a"), Stale("and again"), None)
    assert _result(Attempt(Stale("old key")), retry) == 7 and len(given) == 4


def test_a_refusal_at_the_location_just_refused_is_final() -> None:
    """The namenode names the refused location again: the datanode restarted, the bytes are gone."""
    sent = []
    retry = _Retry(("dn 1", "key 9"), lambda used: ("dn 1", "key 9"), lambda *at: sent.append(at))
    with pytest.raises(Stale, match="old key"):
        _result(Attempt(Stale("old key")), retry)
    assert sent == []


def sends(*outcomes: BaseException | None):
    """A send(datanode, key) that records where it went and gives the next outcome."""
    sent: list[tuple] = []

    def send(datanode: str, key: str) -> Attempt:
        sent.append((datanode, key))
        return Attempt(outcomes[len(sent) - 1])
    return send, sent


def test_each_retry_compares_with_the_location_it_last_used() -> None:
    send, sent = sends(Stale("key 10 retired in turn"), None)
    keys = iter(["key 10", "key 11"])
    retry = _Retry(("dn 1", "key 9"), lambda used: ("dn 1", next(keys)), send)
    assert _result(Attempt(Stale("key 9")), retry) == 7
    assert sent == [("dn 1", "key 10"), ("dn 1", "key 11")]

    send, sent = sends(Stale("key 10 refused"))
    keys = iter(["key 10", "key 10"])  # the namenode names key 10 again: it is final now
    retry = _Retry(("dn 1", "key 9"), lambda used: ("dn 1", next(keys)), send)
    with pytest.raises(Stale, match="key 10 refused"):
        _result(Attempt(Stale("key 9")), retry)
    assert sent == [("dn 1", "key 10")]


def test_a_displaced_transfer_goes_again_to_the_same_location() -> None:
    send, sent = sends(None)
    retry = _Retry(("dn 1", "key 9"), lambda used: used, send)
    assert _result(Attempt(Displaced("under another's key")), retry) == 7
    assert sent == [("dn 1", "key 9")]


def test_tries_are_bounded_and_transfers_without_retry_fail_at_once() -> None:
    retry, given = retries(*[Displaced("again")] * MAX_TRIES)
    with pytest.raises(Displaced):
        _result(Attempt(Displaced("first")), retry)
    assert len(given) == MAX_TRIES - 1
    with pytest.raises(Stale):
        _result(Attempt(Stale("no retry")), None)
