"""servicekit.errors: guard() wraps every RPC method except those that map their own errors."""

from __future__ import annotations

from typing import Any

from tokenry.servicekit.errors import guard, maps_own_errors


class Servicer:
    async def Plain(self, request: Any, context: Any) -> str:
        return "plain"

    @maps_own_errors
    async def Hot(self, request: Any, context: Any) -> str:
        return "hot"

    def helper(self) -> str:
        return "helper"


def test_guard_wraps_rpc_methods_but_not_the_ones_that_map_their_own_errors() -> None:
    servicer = Servicer()
    guarded: Any = guard(servicer)
    assert guarded.Hot == servicer.Hot  # the method itself: no wrapper coroutine per call
    assert guarded.Plain != servicer.Plain  # wrapped to map exceptions to statuses
    assert guarded.helper() == "helper"  # not an RPC: passed through
