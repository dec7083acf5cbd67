"""Typer with readable help: ``ID``, ``URL``, ``N`` instead of ``<str>``, ``<int>``, ``<bool>``.

Every command and group of the ``tokenry`` CLI is built from :class:`App`, whose commands give
each parameter a metavar (a flag gets none) and show arguments as ``TOKEN`` or ``[TOKEN]``,
never ``{token}``. Only Click's public ``cls=`` hooks and ``Parameter.metavar`` are used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

F = TypeVar("F", bound=Callable[..., Any])

#: readable metavars by parameter name; otherwise the name in capitals
METAVARS = {
    "client_id": "ID",
    "admin_client_id": "ID",
    "client_secret": "SECRET",
    "admin_client_secret": "SECRET",
    "kid": "KID",
    "token": "TOKEN",
    "database_url": "URL",
    "nats_url": "URL",
    "jwks_url": "URL",
    "issuer": "URL",
    "redirect_uri": "URI",
    "jwks_file": "FILE",
    "new_kek_file": "FILE",
    "data_dir": "DIR",
    "home": "DIR",
    "count": "N",
    "wait": "SECONDS",
    "access_token_ttl": "SECONDS",
    "expires_at": "UNIX_TIME",
    "token_format": "jwt|opaque",
    "client_type": "confidential|public",
    "use": "access|id",
    "token_type_hint": "HINT",
    "exchange_from": "CLIENT_ID",
}


def _no_type(*_args: Any, **_kwargs: Any) -> None:
    return None


def _readable(param: Any) -> None:
    if param.param_type_name == "argument":
        # The name column already shows TOKEN; a second "<str>" column says nothing.
        param.display_type_rich = _no_type
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.metavar = ""
        return
    if param.metavar:
        return
    name = str(param.name or "value")
    metavar = METAVARS.get(name) if param.param_type_name == "option" else name.upper()
    if metavar is None:
        metavar = name.upper()
        if name.endswith("_addr"):
            metavar = "HOST:PORT"
        elif getattr(getattr(param, "type_descriptor", None), "annotation", None) is Path:
            metavar = "FILE"
    param.metavar = metavar


#: old flag names that still work but are no longer shown
HIDDEN_ALIASES = frozenset({"--admin-client-id", "--admin-client-secret"})


class Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _readable(param)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Hide the old names from the help only; the parser still accepts them.
        saved = [(param, param.opts) for param in self.params]
        for param, opts in saved:
            param.opts = [o for o in opts if o not in HIDDEN_ALIASES]
        try:
            super().format_help(ctx, formatter)
        finally:
            for param, opts in saved:
                param.opts = opts

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = str(param.metavar or param.name).upper()
            more = "..." if param.nargs != 1 else ""
            pieces.append(f"{name}{more}" if param.required else f"[{name}{more}]")
        return pieces


class Group(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _readable(param)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class App(typer.Typer):
    """A Typer whose groups and commands have readable help (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("no_args_is_help", True)
        # One-line errors come from tokenry.cli.main; never a rich traceback with locals.
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", Command)
        decorator: Callable[[F], F] = super().command(*args, **kwargs)
        return decorator
