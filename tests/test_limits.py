"""Counting what each client holds: slots per client and in total, failed-login windows."""

import pytest

from hermes_web.security.limits import FailureWindow, Slots, client_key


@pytest.mark.parametrize("address, key", [
    ("192.168.1.20", "192.168.1.20"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:10.0.0.7", "10.0.0.7"),
    ("fe80::1%eth0", "fe80::/64"),
    ("", "-"),
    ("not-an-address", "not-an-address"),
])
def test_client_key(address, key):
    assert client_key(address) == key


def test_slots_cap_each_client_and_the_total():
    slots = Slots(per_client=2, total=3)
    assert slots.acquire("a") is None and slots.acquire("a") is None
    assert slots.acquire("a") == "client"
    assert slots.acquire("b") is None
    assert slots.acquire("c") == "total"
    slots.release("a")
    assert slots.held == 2 and slots.held_by("a") == 1
    assert slots.acquire("c") is None
    assert slots.acquire("b") == "total"
    for key in ("a", "b", "c"):
        slots.release(key)
    assert slots.held == 0 and slots.held_by("a") == 0
    slots.release("a")  # a stray release never goes below zero
    assert slots.held == 0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_failure_window_blocks_after_the_attempts_until_the_oldest_expires():
    clock = Clock()
    window = FailureWindow(attempts=3, window=60, clock=clock)
    for _ in range(2):
        window.record_failure("a")
        clock.now += 10
    assert window.retry_after("a") == 0
    window.record_failure("a")  # third failure at t=1020, first was at t=1000
    assert window.retry_after("a") == pytest.approx(40)
    assert window.retry_after("b") == 0
    clock.now += 40
    assert window.retry_after("a") == 0
    window.record_failure("a")
    assert window.retry_after("a") == pytest.approx(10)  # the one at t=1010 is now the oldest
    window.forget("a")
    assert window.retry_after("a") == 0


def test_failure_window_forgets_old_failures():
    clock = Clock()
    window = FailureWindow(attempts=2, window=5, clock=clock)
    window.record_failure("a")
    clock.now += 6
    window.record_failure("a")
    assert window.retry_after("a") == 0
