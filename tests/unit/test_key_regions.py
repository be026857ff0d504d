"""A datanode's key regions alone: keys checked, changed in two steps, retired when idle."""

from __future__ import annotations

import pytest

from crailpy.errors import OutOfRange, Stale
from crailpy.key_regions import KeyRegions
from crailpy.protocol.messages import RegionKey

REGION = 1 << 20


class Registration:
    """Stands in for an RDMA memory registration: a key, and whether it was dropped."""

    issued: list["Registration"] = []

    def __init__(self, start: int, length: int) -> None:
        self.key = 1000 + len(Registration.issued)
        self.closed = False
        Registration.issued.append(self)

    def close(self) -> None:
        self.closed = True


def issue(start: int, length: int) -> tuple[int, Registration]:
    registration = Registration(start, length)
    return registration.key, registration


@pytest.fixture
def keys() -> KeyRegions:
    Registration.issued = []
    return KeyRegions(3 * REGION + 5, REGION, issue)  # four regions, the last of 5 bytes


def test_a_transfer_needs_its_regions_key_and_stays_inside_it(keys: KeyRegions) -> None:
    assert [k for _, k in keys.all()] == [1000, 1001, 1002, 1003]
    with keys.admit(REGION, 100, 1001):
        pass
    with pytest.raises(Stale, match="does not open"):
        keys.admit(REGION, 100, 1000)  # region 0's key
    with pytest.raises(OutOfRange, match="cross"):
        keys.admit(REGION - 10, 20, 1000)


def test_a_key_changes_in_two_steps(keys: KeyRegions) -> None:
    keys.rotate((RegionKey(1, 1001), RegionKey(2, 999)))  # region 2: not the key it has
    rotated, retired = keys.reports()
    assert rotated == [RegionKey(1, 1004)] and retired == []
    with keys.admit(REGION, 10, 1001), keys.admit(REGION, 10, 1004):  # both work for now
        pass
    keys.rotate((RegionKey(1, 1004),))  # asked again while changing: ignored
    assert Registration.issued[-1].key == 1004
    slow = keys.admit(REGION, 10, 1001)  # a TCP transfer under the old key, still moving
    keys.acknowledged(rotated)
    assert keys.reports() == ([], []) and keys.busy  # the old key waits for it
    with slow:
        pass
    assert keys.reports() == ([], [RegionKey(1, 1001)])
    assert Registration.issued[1].closed and not keys.busy
    with pytest.raises(Stale):
        keys.admit(REGION, 10, 1001)


def test_a_report_that_did_not_get_through_is_sent_again(keys: KeyRegions) -> None:
    keys.rotate((RegionKey(0, 1000),))
    rotated, retired = keys.reports()
    keys.unreport(rotated, retired)
    assert keys.reports() == (rotated, [])


def test_registering_again_drops_every_old_key_at_once(keys: KeyRegions) -> None:
    keys.rotate((RegionKey(0, 1000),))
    keys.rotate_all()
    assert all(r.closed for r in Registration.issued[:5])
    assert [k for _, k in keys.all()] == [1005, 1006, 1007, 1008]
    assert keys.reports() == ([], []) and not keys.busy


def test_random_keys_where_there_is_no_device() -> None:
    keys = KeyRegions(4 * REGION, REGION)
    before = keys.all()
    assert all(k for _, k in before)
    keys.rotate(tuple(before))
    rotated, _ = keys.reports()
    assert [r for r, _ in rotated] == [0, 1, 2, 3]
    assert all(new != old for (_, new), (_, old) in zip(rotated, before))
