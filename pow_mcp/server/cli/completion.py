"""`pow-mcp completion bash|zsh|fish`: shell completion scripts, written from the parser.

The scripts are generated from the argparse parser itself, so every command, option and
choice the CLI has is completed and none it lacks; job ids are completed by asking
`pow-mcp jobs list -q` (the configured store) at the moment of completing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from pow_mcp.server.cli.common import OK

SHELLS = ("bash", "zsh", "fish")
PROG = "pow-mcp"
JOB_ID_DEST = "job_id"  # a positional with this dest is completed with the store's job ids


@dataclass
class Node:
    """One command of the tree: `pow-mcp`, `pow-mcp jobs`, `pow-mcp jobs list`, ..."""

    path: tuple[str, ...]
    help: str = ""
    flags: list[str] = field(default_factory=list)  # options that take no value
    # options that take a value: their choices, None for a free value (a path, a number)
    valued: dict[str, list[str] | None] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)  # choices of its positionals
    job_ids: bool = False

    @property
    def key(self) -> str:
        return " ".join(self.path)

    def walk(self) -> list[Node]:
        return [self, *(n for child in self.children.values() for n in child.walk())]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description='Print a completion script. bash: eval "$(pow-mcp completion bash)" in '
        '~/.bashrc; zsh: eval "$(pow-mcp completion zsh)" in ~/.zshrc, after compinit; fish: '
        "pow-mcp completion fish > ~/.config/fish/completions/pow-mcp.fish",
    )
    parser.add_argument("shell", choices=SHELLS)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    tree = command_tree(parser)
    script = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[args.shell](tree)
    sys.stdout.write(script)
    return OK


def command_tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Node:
    node = Node(path, help=parser.description or "")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                child = command_tree(sub, (*path, name))
                child.help = helps.get(name, "")
                node.children[name] = child
        elif action.help == argparse.SUPPRESS:
            continue  # hidden: not offered
        elif action.option_strings:
            if action.nargs == 0:
                node.flags += action.option_strings
            else:
                choices = [str(c) for c in action.choices] if action.choices else None
                for option in action.option_strings:
                    node.valued[option] = choices
        elif action.dest == JOB_ID_DEST:
            node.job_ids = True
        elif action.choices:
            node.words += [str(c) for c in action.choices]
    return node


# -- bash (and zsh, through its bash emulation) -----------------------------------------------


def _words(words: list[str]) -> str:
    return shlex.quote(" ".join(words))


def bash_script(tree: Node) -> str:
    # Mostly the bash script's own text, kept whole so it reads as the script it is.
    nodes = tree.walk()
    descend = "\n".join(
        f"            {shlex.quote(f'{n.key}:{name}')}) node={shlex.quote(child.key)} ;;"
        for n in nodes
        for name, child in n.children.items()
    )
    skips = [f"{n.key}:{option}" for n in nodes for option in n.valued]
    skip = " | ".join(shlex.quote(s) for s in skips)
    values = "\n".join(
        f"        {shlex.quote(f'{n.key}:{option}')}) "
        + (
            f'COMPREPLY=($(compgen -W {_words(choices)} -- "$cur")); return ;;'
            if choices
            else 'COMPREPLY=($(compgen -f -- "$cur")); return ;;'
        )
        for n in nodes
        for option, choices in n.valued.items()
    )
    options = "\n".join(
        f"            {shlex.quote(n.key)}) words={_words([*n.flags, *n.valued])} ;;" for n in nodes
    )
    positionals = "\n".join(
        f"            {shlex.quote(n.key)}) words={_words([*n.children, *n.words])}"
        + (' ; words="$words $(_pow_mcp_job_ids)"' if n.job_ids else "")
        + " ;;"
        for n in nodes
    )
    return f"""# {PROG} completion for bash; eval "$({PROG} completion bash)" in ~/.bashrc
_pow_mcp_job_ids() {{
    "${{COMP_WORDS[0]}}" jobs list -q --limit 1000 2>/dev/null
}}

_pow_mcp() {{
    local cur prev node word words skip i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev=""
    node=""
    skip=0
    # Which command the words so far name, skipping the values of options.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if ((skip)); then
            skip=0
            prev=""
            continue
        fi
        prev="$word"
        case "$node:$word" in
{descend}
            {skip or "'-'"}) skip=1 ;;
        esac
    done
    if ((skip)); then
        case "$node:$prev" in
{values}
        esac
    fi
    if [[ "$cur" == -* ]]; then
        case "$node" in
{options}
        esac
    else
        case "$node" in
{positionals}
        esac
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _pow_mcp {PROG}
"""


def zsh_script(tree: Node) -> str:
    # zsh runs the bash function through bashcompinit, which sets COMP_WORDS and friends;
    # its arrays must count from 0 there, as bash's do.
    body = bash_script(tree).replace(
        "    local cur prev node word words skip i\n",
        "    local cur prev node word words skip i\n    setopt localoptions ksharrays\n",
    )
    return (
        f'# {PROG} completion for zsh; eval "$({PROG} completion zsh)" in ~/.zshrc, after '
        "compinit\nautoload -U +X bashcompinit && bashcompinit\n" + body
    )


# -- fish -------------------------------------------------------------------------------------


def _fish_condition(node: Node) -> str:
    """True while the command line is at `node` (its path typed, no sub-command after)."""
    if not node.path:
        return "__fish_use_subcommand"
    parts = [f"__fish_seen_subcommand_from {name}" for name in node.path]
    if node.children:
        parts.append("not __fish_seen_subcommand_from " + " ".join(node.children))
    return "; and ".join(parts)


def fish_script(tree: Node) -> str:
    lines = [
        f"# {PROG} completion for fish: {PROG} completion fish > "
        f"~/.config/fish/completions/{PROG}.fish",
        "function __pow_mcp_job_ids",
        "    set -l command (commandline -opc)[1]",
        "    $command jobs list -q --limit 1000 2>/dev/null",
        "end",
        f"complete -c {PROG} -f",
    ]
    for node in tree.walk():
        when = shlex.quote(_fish_condition(node))
        for name, child in node.children.items():
            lines.append(
                f"complete -c {PROG} -n {when} -a {shlex.quote(name)} "
                f"-d {shlex.quote(_first_line(child.help))}"
            )
        if node.words:
            lines.append(f"complete -c {PROG} -n {when} -a {_words(node.words)}")
        if node.job_ids:
            lines.append(f"complete -c {PROG} -n {when} -a '(__pow_mcp_job_ids)'")
        for option in node.flags:
            lines.append(f"complete -c {PROG} -n {when} {_fish_option(option)}")
        for option, choices in node.valued.items():
            values = f" -xa {_words(choices)}" if choices else " -r -F"
            lines.append(f"complete -c {PROG} -n {when} {_fish_option(option)}{values}")
    return "\n".join(lines) + "\n"


def _fish_option(option: str) -> str:
    if option.startswith("--"):
        return f"-l {option[2:]}"
    return f"-s {option[1:]}"


def _first_line(text: str) -> str:
    return text.split("\n")[0][:80]
