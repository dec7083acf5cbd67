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


class Aborted(Exception):
    pass


class Context:
    """The part of grpc.aio.ServicerContext the mapping uses."""

    def __init__(self) -> None:
        self.status: Any = None

    async def abort_with_status(self, status: Any) -> None:
        self.status = status
        raise Aborted


class Down(ConnectionError):
    pass


class Failing:
    async def Call(self, request: Any, context: Any) -> str:
        raise Down("database unreachable")


async def test_guard_maps_the_unavailable_errors_it_is_given() -> None:
    # The one error mapping (issue 12 item 6): what ``unavailable`` lists becomes UNAVAILABLE;
    # before, new_server also took an ``unavailable=`` that was silently ignored.
    import grpc
    import pytest

    for unavailable, code in (
        ((Down,), grpc.StatusCode.UNAVAILABLE),
        ((), grpc.StatusCode.INTERNAL),
    ):
        context = Context()
        guarded: Any = guard(Failing(), unavailable)
        with pytest.raises(Aborted):
            await guarded.Call(None, context)
        assert context.status.code == code


def test_new_server_takes_no_error_mapping_options() -> None:
    import inspect

    from tokenry.servicekit import errors, server

    params = inspect.signature(server.new_server).parameters
    assert "unavailable" not in params and "map_errors" not in params
    assert not hasattr(errors, "ErrorMappingInterceptor")
