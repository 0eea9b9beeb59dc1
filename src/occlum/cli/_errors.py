"""How the command-line tools report a ``UserError``: one line on stderr and an exit code."""

from __future__ import annotations

from typing import IO, Any

import click

from occlum.errors import UserError


class OneLineError(click.ClickException):
    """``<prog>: error: <message>`` on stderr, never a traceback."""

    def __init__(self, prog: str, message: str, exit_code: int = 1, shown: bool = False) -> None:
        super().__init__(message)
        self.prog = prog
        self.exit_code = exit_code  # type: ignore[misc]  # ClassVar in click, per error here
        self.shown = shown  # already said in one line by the program that failed

    def show(self, file: IO[Any] | None = None) -> None:
        if not self.shown:
            click.echo(f"{self.prog}: error: {self.message}", err=True)


def warn(prog: str, message: str) -> None:
    click.echo(f"{prog}: warning: {message}", err=True)


class UserErrorGroup(click.Group):
    """A click group whose subcommands' ``UserError``s become one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise OneLineError("occlum", str(e), e.exit_code, e.shown)
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)


class UserErrorCommand(click.Command):
    """The same for a stand-alone command (``copy_bom``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise OneLineError("copy_bom", str(e), e.exit_code)
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)
