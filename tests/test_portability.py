"""Nothing POSIX-only on a path that Windows takes (SPEC "Platforms"), checked statically.

Every module of the package (pow/, store/, server/; the tests are exempt) is parsed with
`ast`. An import of a POSIX-only module, or a use of a POSIX-only attribute of `os` or
`signal` (or of a POSIX-only module imported under a guard), fails the test unless it
sits under a platform guard: a branch of an `if` (or `x if c else y`, or the rest of an
`and`/`or`) whose condition is false on Windows (`sys.platform`, `os.name`), or the body
of a `try` that catches ImportError (or AttributeError).

`make lint` also runs mypy as if on Windows and on macOS (`--platform`), which catches
the attributes typeshed knows to be missing there; this test also covers the imports and
the guards themselves, and needs nothing but the standard library.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pow_mcp/pow", "pow_mcp/store", "pow_mcp/server")

POSIX_MODULES = frozenset(
    {"fcntl", "termios", "tty", "pty", "resource", "pwd", "grp", "posix", "syslog", "crypt"}
)
POSIX_ATTRIBUTES = {
    "os": frozenset(
        {
            # processes, sessions, users
            "fork",
            "forkpty",
            "setsid",
            "getsid",
            "setpgrp",
            "setpgid",
            "getpgid",
            "getpgrp",
            "killpg",
            "getuid",
            "geteuid",
            "getgid",
            "getegid",
            "getgroups",
            "setuid",
            "seteuid",
            "setgid",
            "setegid",
            "wait",
            "wait3",
            "wait4",
            "WNOHANG",
            "nice",
            "register_at_fork",
            "posix_spawn",
            "posix_spawnp",
            "sched_getaffinity",
            "sched_setaffinity",
            "getloadavg",
            "pidfd_open",
            # files and descriptors
            "fchmod",
            "fchown",
            "chown",
            "lchown",
            "O_DIRECTORY",
            "O_CLOEXEC",
            "O_NOFOLLOW",
            "O_NONBLOCK",
            "O_NOCTTY",
            "O_DSYNC",
            "mkfifo",
            "mknod",
            "sync",
            "fdatasync",
            "statvfs",
            "fstatvfs",
            "pipe2",
            "set_blocking",  # on Windows only from Python 3.12, and for pipes only
            "get_blocking",
            "openpty",
            "ttyname",
            "uname",
        }
    ),
    "signal": frozenset(
        {
            "SIGKILL",
            "SIGHUP",
            "SIGQUIT",
            "SIGUSR1",
            "SIGUSR2",
            "SIGCHLD",
            "SIGALRM",
            "SIGPIPE",
            "SIGSTOP",
            "SIGCONT",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGWINCH",
            "SIGBUS",
            "SIGTRAP",
            "SIGPROF",
            "SIGVTALRM",
            "alarm",
            "pause",
            "setitimer",
            "getitimer",
            "siginterrupt",
            "pthread_kill",
            "pthread_sigmask",
            "sigwait",
            "sigwaitinfo",
            "sigtimedwait",
            "sigpending",
        }
    ),
}
POSIX_START_METHODS = frozenset({"fork", "forkserver"})
GUARD_EXCEPTIONS = frozenset({"ImportError", "ModuleNotFoundError", "AttributeError"})

# What a platform test reads on Windows.
WINDOWS = {("sys", "platform"): "win32", ("os", "name"): "nt"}
_UNKNOWN = object()


def on_windows(expr: ast.expr) -> bool | None:
    """The value of `expr` on Windows if it depends only on the platform, else None."""
    value = _evaluate(expr)
    return value if isinstance(value, bool) else None


def _evaluate(expr: ast.expr) -> object:
    match expr:
        case ast.Constant(value=value):
            return value
        case ast.Tuple(elts=elts) | ast.List(elts=elts) | ast.Set(elts=elts):
            items = [_evaluate(e) for e in elts]
            return _UNKNOWN if _UNKNOWN in items else tuple(items)
        case ast.Attribute(value=ast.Name(id=module), attr=attr) if (module, attr) in WINDOWS:
            return WINDOWS[module, attr]
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            value = on_windows(operand)
            return _UNKNOWN if value is None else not value
        case ast.BoolOp(op=op, values=values):
            known = [on_windows(v) for v in values]
            if isinstance(op, ast.And):
                if False in known:
                    return False
                return True if all(k is True for k in known) else _UNKNOWN
            if True in known:
                return True
            return False if all(k is False for k in known) else _UNKNOWN
        case ast.Compare(left=left, ops=[op], comparators=[right]):
            a, b = _evaluate(left), _evaluate(right)
            if _UNKNOWN in (a, b):
                return _UNKNOWN
            compare = {
                ast.Eq: lambda: a == b,
                ast.NotEq: lambda: a != b,
                ast.In: lambda: a in b,  # type: ignore[operator]
                ast.NotIn: lambda: a not in b,  # type: ignore[operator]
            }.get(type(op))
            return _UNKNOWN if compare is None else compare()
        case ast.Call(func=ast.Attribute(value=target, attr="startswith"), args=[prefix]):
            text, start = _evaluate(target), _evaluate(prefix)
            if isinstance(text, str) and isinstance(start, str | tuple):
                return text.startswith(start)
            return _UNKNOWN
    return _UNKNOWN


class PosixOnlyUses(ast.NodeVisitor):
    """Collects POSIX-only imports and uses outside platform guards."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self._guarded = 0
        self._posix_names: set[str] = set()  # names bound to POSIX-only modules

    def _flag(self, node: ast.AST, what: str) -> None:
        if not self._guarded:
            self.found.append((getattr(node, "lineno", 0), what))

    def _visit_guarded(self, nodes: list[ast.stmt] | list[ast.expr], guarded: bool) -> None:
        self._guarded += guarded
        for child in nodes:
            self.visit(child)
        self._guarded -= guarded

    # -- guards ----------------------------------------------------------------------------

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        value = on_windows(node.test)
        self._visit_guarded(node.body, value is False)
        self._visit_guarded(node.orelse, value is True)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        value = on_windows(node.test)
        self._visit_guarded([node.body], value is False)
        self._visit_guarded([node.orelse], value is True)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        # `a and b`: b runs only where a is true; `a or b`: only where a is false.
        stop_on = not isinstance(node.op, ast.And)
        guarded = False
        for value in node.values:
            self._visit_guarded([value], guarded)
            guarded = guarded or on_windows(value) is stop_on

    def visit_Try(self, node: ast.Try) -> None:
        caught: set[str] = set()
        for handler in node.handlers:
            kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {k.id for k in kinds if isinstance(k, ast.Name)}
        self._visit_guarded(node.body, bool(caught & GUARD_EXCEPTIONS))
        for part in (node.handlers, node.orelse, node.finalbody):
            self._visit_guarded(part, False)

    # -- what is POSIX-only ----------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in POSIX_MODULES:
                self._flag(node, f"import {alias.name}")
                self._posix_names.add(alias.asname or top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = (node.module or "").split(".")[0]
        if node.level == 0 and module in POSIX_MODULES:
            self._flag(node, f"from {node.module} import ...")
        for alias in node.names:
            if node.level == 0 and alias.name in POSIX_ATTRIBUTES.get(module, ()):
                self._flag(node, f"from {module} import {alias.name}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            module = node.value.id
            if node.attr in POSIX_ATTRIBUTES.get(module, ()):
                self._flag(node, f"{module}.{node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and node.id in self._posix_names:
            self._flag(node, f"{node.id} (a POSIX-only module)")

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if name in ("get_context", "set_start_method") and node.args:
            method = node.args[0]
            if isinstance(method, ast.Constant) and method.value in POSIX_START_METHODS:
                self._flag(node, f"multiprocessing start method {method.value!r}")
        self.generic_visit(node)


def posix_only_uses(source: str) -> list[tuple[int, str]]:
    visitor = PosixOnlyUses()
    visitor.visit(ast.parse(source))
    return visitor.found


def package_modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_the_package_has_modules_to_check() -> None:
    modules = [p.relative_to(ROOT).as_posix() for p in package_modules()]
    assert len(modules) > 40
    expected = {"store/jsonfile/locks.py", "pow/worker.py", "server/app.py"}
    assert {f"pow_mcp/{module}" for module in expected} <= set(modules)


def test_no_posix_only_import_or_call_outside_a_platform_guard() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in package_modules()
        for line, what in posix_only_uses(path.read_text(encoding="utf-8"))
    ]
    assert problems == [], "POSIX-only, outside a platform guard:\n" + "\n".join(problems)


# -- the checker itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import fcntl", "import fcntl"),
        ("import resource as r", "import resource"),
        ("from fcntl import flock", "from fcntl import ..."),
        ("import termios, os", "import termios"),
        ("os.fork()", "os.fork"),
        ("os.kill(pid, signal.SIGKILL)", "signal.SIGKILL"),
        ("x = os.O_RDONLY | os.O_DIRECTORY", "os.O_DIRECTORY"),
        ("from os import setsid", "from os import setsid"),
        ("ctx = multiprocessing.get_context('fork')", "multiprocessing start method 'fork'"),
        # A guard on something else than the platform guards nothing.
        ("if ready:\n    os.getuid()", "os.getuid"),
        ("if hasattr(os, 'fchmod'):\n    os.fchmod(fd, 0o600)", "os.fchmod"),
        # The Windows branch of a platform test is no guard.
        ("if sys.platform == 'win32':\n    os.killpg(1, 2)", "os.killpg"),
        ("if os.name != 'posix':\n    pass\nelse:\n    pass\nos.setsid()", "os.setsid"),
        ("if sys.platform == 'linux' or portable:\n    signal.SIGHUP", "signal.SIGHUP"),
        # A module imported under a guard and used outside it.
        ("if sys.platform == 'linux':\n    import fcntl\nfcntl.flock(0, 1)", "fcntl"),
        ("try:\n    os.fchmod(fd, 0)\nexcept OSError:\n    pass", "os.fchmod"),
    ],
)
def test_the_checker_flags(source: str, what: str) -> None:
    found = posix_only_uses(source)
    assert any(w.startswith(what) for _, w in found), found


@pytest.mark.parametrize(
    "source",
    [
        "if sys.platform == 'linux':\n    import fcntl\n    fcntl.flock(0, 1)",
        "if sys.platform.startswith(('linux', 'darwin')):\n    os.setsid()",
        "if os.name == 'posix':\n    os.fchmod(fd, 0o600)",
        "if sys.platform != 'win32' and not portable:\n    signal.SIGHUP",
        "if sys.platform == 'win32':\n    pass\nelse:\n    signal.SIGHUP",
        "if os.name == 'nt' or portable:\n    pass\nelse:\n    os.getuid()",
        "if sys.platform in ('linux', 'darwin'):\n    import pwd",
        "if not sys.platform == 'win32':\n    os.sync()",
        "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None",
        "try:\n    import resource\nexcept (ModuleNotFoundError, OSError):\n    pass",
        "try:\n    os.fchmod(fd, 0)\nexcept AttributeError:\n    pass",
        "uid = os.getuid() if sys.platform != 'win32' else None",
        "ok = sys.platform == 'linux' and os.geteuid() == 0",
        "ok = os.name == 'nt' or os.getuid() == 0",
        "flags = os.O_RDWR | getattr(os, 'O_BINARY', 0)",
        "os.kill(pid, signal.SIGTERM); ctx = multiprocessing.get_context('spawn')",
    ],
)
def test_the_checker_accepts(source: str) -> None:
    assert posix_only_uses(source) == []
