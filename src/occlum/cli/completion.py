"""``occlum completion``: the shell script that completes ``occlum`` (or ``copy_bom``) commands.

The script is click's: the shell calls the program back with ``_OCCLUM_COMPLETE`` (or
``_COPY_BOM_COMPLETE``) set to ``<shell>_complete`` and the words typed so far in
``COMP_WORDS``/``COMP_CWORD``, and click answers with the candidates instead of running a
command. The console script (:mod:`occlum.cli.entry`) hands such calls to click.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROGRAMS = ("occlum", "copy_bom")


def complete_var(program: str) -> str:
    """The environment variable click reads completion requests of ``program`` from."""
    return f"_{program.replace('-', '_').upper()}_COMPLETE"


def completion_script(command: click.Command, program: str, shell: str) -> str:
    comp_cls = get_completion_class(shell)
    if comp_cls is None:  # not reached: SHELLS are all click's
        raise click.UsageError(f"no completion for the shell {shell!r}")
    return comp_cls(command, {}, program, complete_var(program)).source()


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Print the shell completion script.",
)
@click.argument("shell", type=click.Choice(SHELLS))
@click.argument("program", type=click.Choice(PROGRAMS), default="occlum")
@click.pass_context
def completion(ctx: click.Context, shell: str, program: str) -> None:
    """Print the script that makes SHELL complete PROGRAM's commands, options and arguments
    (PROGRAM: occlum, the default, or copy_bom). Load it from the shell's start-up file.

    \b
    Example:
      eval "$(occlum completion bash)"                    # in ~/.bashrc
      eval "$(occlum completion bash copy_bom)"
      eval "$(occlum completion zsh)"                     # in ~/.zshrc
      occlum completion fish > ~/.config/fish/completions/occlum.fish
    """
    command: click.Command = ctx.find_root().command
    if program == "copy_bom":
        from occlum.cli.copy_bom import cli as copy_bom

        command = copy_bom
    click.echo(completion_script(command, program, shell), nl=False)
