"""`pow-mcp claude-config`: the mcpServers entry that starts this installation, printed or
merged into an MCP client's configuration file (Claude Desktop, Cursor, Windsurf)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from pow_mcp.server.cli.common import ERROR, OK, USAGE
from pow_mcp.server.config import ConfigError, load_config

SERVER_NAME = "pow"  # the key of our entry in mcpServers
DISTRIBUTION = "pow-mcp"
CLAUDE_FILE = "claude_desktop_config.json"
# Clients whose configuration is the same {"mcpServers": {name: {command, args, env}}} JSON.
CLIENTS = ("claude", "cursor", "windsurf")
SYSTEMS = ("darwin", "windows", "linux")


class Refused(Exception):
    """The configuration file cannot be merged into; nothing was changed."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "claude-config",
        help="print (or --install) the mcpServers entry that starts this installation",
        description="Print the mcpServers entry that starts this pow-mcp, or merge it into "
        "an MCP client's configuration file, keeping every other key and server and a "
        "backup of the old file beside it. Exit status: 0 done, 1 a file that cannot be "
        "merged into, 2 a usage error.",
    )
    parser.add_argument(
        "--install", action="store_true", help="write it into the client's configuration file"
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="claude",
        help="claude (Claude Desktop, the default), cursor (~/.cursor/mcp.json) or windsurf "
        "(~/.codeium/windsurf/mcp_config.json)",
    )
    parser.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="the JOBS_DATA_DIR to write in the entry (default: JOBS_DATA_DIR, ./data/jobs)",
    )
    # For the tests: the operating system whose file location to use.
    parser.add_argument("--os", choices=SYSTEMS, dest="system", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config().with_overrides(data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return USAGE
    entry = server_entry(launch_command(), config.data_dir.resolve())
    if not args.install:
        print(json.dumps({"mcpServers": {SERVER_NAME: entry}}, indent=2))
        return OK
    path = config_path(args.client, args.system or current_system(), os.environ, Path.home())
    try:
        done = install(path, entry)
    except (Refused, OSError) as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return ERROR
    if not done.changed:
        print(f"{path}: the {SERVER_NAME!r} server is already there, as it should be")
        return OK
    kept = f"; the old file is kept as {done.backup}" if done.backup else ""
    print(f"{path}: wrote the {SERVER_NAME!r} server{kept}")
    print("Restart the client to start it.")
    return OK


# -- where ------------------------------------------------------------------------------------


_SYSTEMS = {"darwin": "darwin", "win32": "windows", "cygwin": "windows"}


def current_system() -> str:
    # A lookup, not `if sys.platform == ...`: mypy checks this file as if on each OS too.
    return _SYSTEMS.get(sys.platform, "linux")  # the other Unix-likes follow the XDG layout


def config_path(client: str, system: str, env: Mapping[str, str], home: Path) -> Path:
    """The client's configuration file on `system` ("darwin", "windows", "linux")."""
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    if client == "windsurf":
        return home / ".codeium" / "windsurf" / "mcp_config.json"
    if system == "darwin":
        return home / "Library" / "Application Support" / "Claude" / CLAUDE_FILE
    if system == "windows":
        appdata = env.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
        return base / "Claude" / CLAUDE_FILE
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is to be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    return base / "Claude" / CLAUDE_FILE


# -- what -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """How a client starts this installation's server."""

    command: str
    args: tuple[str, ...] = ()


def server_entry(launch: Launch, data_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"command": launch.command}
    if launch.args:
        entry["args"] = list(launch.args)
    # Absolute: a client starts the server in a working directory of its own.
    entry["env"] = {"JOBS_DATA_DIR": str(data_dir), "PERSIST_JOBS": "true"}
    return entry


def launch_command(env: Mapping[str, str] | None = None) -> Launch:
    """`uvx --from SOURCE pow-mcp` when running in an environment uvx made (it lives in uv's
    cache and may be pruned, so its paths must not be written down), else the absolute path
    of this environment's console script."""
    env = os.environ if env is None else env
    uv = env.get("UV")  # uv sets it for every process it starts
    if uv:
        source = install_source()
        cache = uv_cache_dir(uv, env)
        if source and cache and ephemeral(Path(sys.prefix), cache):
            return Launch(_uvx(uv), ("--from", source, DISTRIBUTION))
    return Launch(str(console_script()))


def ephemeral(prefix: Path, uv_cache: Path) -> bool:
    """Whether the environment at `prefix` is one of uv's throw-away ones: in its cache
    (uvx), or in the temporary directory (uvx --no-cache)."""
    where = prefix.resolve()
    return any(
        where.is_relative_to(base.resolve()) for base in (uv_cache, Path(tempfile.gettempdir()))
    )


def uv_cache_dir(uv: str, env: Mapping[str, str]) -> Path | None:
    if env.get("UV_CACHE_DIR"):
        return Path(env["UV_CACHE_DIR"])
    try:
        done = subprocess.run(
            [uv, "cache", "dir"], capture_output=True, text=True, timeout=15, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = done.stdout.strip()
    return Path(text) if text else None


def install_source(direct_url: str | None = None) -> str | None:
    """What this distribution was installed from (PEP 610 direct_url.json): a local
    directory or wheel as a path, a VCS checkout as `git+URL@commit`, another URL as is.
    None when it came from a package index, or cannot be told."""
    if direct_url is None:
        # Every copy of the metadata: in a checkout, the build's pow_mcp.egg-info (which has
        # no direct_url.json) may come before the installed dist-info on sys.path.
        found = (d.read_text("direct_url.json") for d in metadata.distributions(name=DISTRIBUTION))
        direct_url = next((text for text in found if text), None)
    if not direct_url:
        return None
    try:
        info = json.loads(direct_url)
        url = str(info["url"])
    except (ValueError, KeyError, TypeError):
        return None
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs"):
        commit = vcs.get("commit_id")
        return f"{vcs['vcs']}+{url}" + (f"@{commit}" if commit else "")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return url2pathname(unquote(parsed.path))
    return url


def _uvx(uv: str) -> str:
    beside = Path(uv).with_name("uvx" + Path(uv).suffix)  # uv.exe -> uvx.exe
    if beside.exists():
        return str(beside)
    return shutil.which("uvx") or "uvx"


def console_script() -> Path:
    """This environment's `pow-mcp` script, absolute (run as `python -m pow_mcp.server.cli` too)."""
    name = "pow-mcp.exe" if sys.platform == "win32" else "pow-mcp"
    argv0 = Path(sys.argv[0])
    if argv0.name == name:
        return argv0.absolute()
    return Path(sysconfig.get_path("scripts")).absolute() / name


# -- merging ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    changed: bool  # False: the entry was there already, and the file was left alone
    backup: Path | None = None  # the old file's copy, if there was an old file


def install(path: Path, entry: dict[str, Any]) -> Installed:
    """Merge `entry` into the mcpServers of the JSON file at `path`, keeping everything else
    and a backup of the old file. `Refused`, changing nothing, when the file is not a JSON
    object, or its mcpServers is not one."""
    old = path.read_bytes() if path.exists() else None
    settings = _parse(path, old)
    servers = settings.setdefault("mcpServers", {})
    if servers.get(SERVER_NAME) == entry:
        return Installed(changed=False)
    servers[SERVER_NAME] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = _backup(path, old) if old is not None else None
    _write_atomic(path, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
    return Installed(changed=True, backup=backup)


def _parse(path: Path, content: bytes | None) -> dict[str, Any]:
    if content is None or not content.strip():
        return {}
    try:
        settings = json.loads(content.decode("utf-8-sig"))  # Windows editors write a BOM
    except ValueError as exc:  # UnicodeDecodeError too
        raise Refused(
            f"{path} is not valid JSON ({exc}); fix or move it, then run this again. "
            "Nothing was changed."
        ) from None
    if not isinstance(settings, dict):
        raise Refused(f"{path} is not a JSON object; nothing was changed")
    if not isinstance(settings.get("mcpServers", {}), dict):
        raise Refused(f'"mcpServers" in {path} is not a JSON object; nothing was changed')
    return settings


def _backup(path: Path, content: bytes) -> Path:
    """A copy of the file's `content` beside it, never over an earlier backup."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        backup = path.with_name(f"{path.name}.{stamp}{f'.{n}' if n else ''}.bak")
        try:
            with backup.open("xb") as out:
                out.write(content)
        except FileExistsError:
            continue
        shutil.copymode(path, backup)
        return backup
    raise Refused(f"could not find a free name for a backup of {path}; nothing was changed")


def _write_atomic(path: Path, text: str) -> None:
    """Write a temporary file beside `path` and rename it over: never a half-written file."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            shutil.copymode(path, temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
