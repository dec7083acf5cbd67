"""The CLI's help is readable: every command's help is complete, metavars are words (ID, URL,
N), never ``<bool>``, ``<list[str]>`` or ``{token}``; old flag names still work but are hidden."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer

from tokenry.cli.main import app, run


def _commands() -> Iterator[list[str]]:
    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


COMMANDS = list(_commands())


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "tokenry" for p in COMMANDS])
def test_help_is_readable(
    path: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert run([*path, "--help"]) == 0
    text = capsys.readouterr().out
    for bad in ("<bool>", "<list[", "<str>", "<int>", "<float>", "<path>", "{"):
        assert bad not in text, (path, bad)
    assert "--admin-client" not in text
    assert "Usage: tokenry" in text


def test_every_command_has_a_help_text_that_ends_a_sentence() -> None:
    for path in COMMANDS[1:]:
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        help_text = (command.help or "").strip()
        assert help_text, path
        first = help_text.split("\n\n")[0].strip()
        assert first.endswith((".", ")")), (path, first)


def test_old_flag_names_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    # Accepted by the parser (the call then fails: nothing listens there).
    code = run(
        [
            "--issuer-addr",
            "127.0.0.1:1",
            "client",
            "list",
            "--admin-client-id",
            "a",
            "--admin-client-secret",
            "b",
        ]
    )
    assert code == 3
    assert "No such option" not in capsys.readouterr().err


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["token", "issue", "--nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: No such option: --nope")
