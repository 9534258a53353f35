"""Reconnect delays: exponential, capped, with full jitter so that the clients a server
restart disconnects all at once do not come back all at once."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, minimum: float, maximum: float, *, factor: float = 2.0) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.factor = factor
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.minimum * self.factor ** self.attempt)
        self.attempt += 1
        return random.uniform(self.minimum / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
