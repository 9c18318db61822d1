"""The server tests' port helper: no two servers of a run can be handed the same port."""

from __future__ import annotations

import socket

import servers


def test_free_ports_are_distinct_below_the_ephemeral_range_and_skip_taken_ones():
    a, b = servers.free_port(), servers.free_port()
    assert a != b
    assert 20000 <= min(a, b) and max(a, b) < servers._ephemeral_low()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", b + 1))
        taken.listen()
        assert servers.free_port() not in (a, b, b + 1)


def test_each_test_worker_has_a_block_of_its_own(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = servers.free_port()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    second = servers.free_port()
    assert first // servers._BLOCK != second // servers._BLOCK
