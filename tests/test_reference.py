"""The reference pages are what the code declares: a fresh generation changes nothing, the
settings registry names every variable the code reads (and no other), and its defaults are
the ones the server takes."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from pow_mcp.pow.plan import TargetStart
from pow_mcp.server.cli import build_parser
from pow_mcp.server.config import Config, OAuthSettings, load_config
from pow_mcp.server.settings import DEFAULTS, SETTINGS
from tests.mcp_helpers import ROOT
from tests.test_docs import CODE, NOT_OURS, READS

GENERATOR = ROOT / "docs" / "generate_reference.py"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_pages_are_a_fresh_generation(generator: ModuleType) -> None:
    stale = generator.stale(ROOT, generator.pages())
    assert stale == [], f"{stale} stale: run python docs/generate_reference.py"


def test_check_names_the_stale_pages(generator: ModuleType, tmp_path: Path) -> None:
    wanted = {"docs/reference/a.md": "a\n", "docs/reference/b.md": "b\n"}
    assert generator.stale(tmp_path, wanted) == list(wanted)
    (tmp_path / "docs/reference").mkdir(parents=True)
    (tmp_path / "docs/reference/a.md").write_text("a\n")
    (tmp_path / "docs/reference/b.md").write_text("old b\n")
    assert generator.stale(tmp_path, wanted) == ["docs/reference/b.md"]


def test_the_registry_declares_every_variable_the_code_reads_and_no_other() -> None:
    read = {name for path in CODE for name in READS.findall(path.read_text())} - NOT_OURS
    declared = [s.variable for s in SETTINGS if s.variable is not None]
    assert len(declared) == len(set(declared))
    assert set(declared) == read


def test_the_declared_flags_are_the_servers_flags() -> None:
    flags = [flag for s in SETTINGS for flag in s.flags]
    assert len(flags) == len(set(flags))
    parser_flags = {
        option for action in build_parser()._actions for option in action.option_strings
    }
    assert set(flags) <= parser_flags
    assert all(s.variable is not None or s.flags for s in SETTINGS)


# Each variable with a plain default: the Config field it sets, and how its text reads.
PLAIN: dict[str, tuple[str, Callable[[str], object]]] = {
    "PERSIST_JOBS": ("persist", lambda text: text == "true"),
    "JOBS_LEASE_SECONDS": ("lease_seconds", float),
    "JOBS_RECOVERY": ("recovery", str),
    "JOBS_MAX_RECOVERIES": ("max_recoveries", int),
    "POW_CLUSTER_TIMEOUT_SECONDS": ("cluster_timeout_seconds", float),
    "JOBS_RETENTION_SECONDS": ("retention_seconds", float),
    "JOBS_SAVE_DEBOUNCE_SECONDS": ("save_debounce_seconds", float),
    "BLOCK_TIME_SECONDS": ("block_time_seconds", float),
    "BLOCK_HEIGHT_GRACE_SECONDS": ("block_height_grace_seconds", float),
    "TARGET_DIFFICULTY_START": ("target_start", TargetStart.parse),
    "POW_MAX_ACTIVE_JOBS": ("max_active_jobs", int),
}
# Unset, these are None in the Config.
UNSET = {
    "JOBS_DATABASE_URL": "database_url",
    "POW_CLUSTER": "cluster",
    "BLOCK_HEIGHT_URL": "block_height_url",
    "POW_MCP_TOKEN": "token",
    "POW_MCP_OAUTH_ISSUER": "oauth",
}


def test_the_declared_defaults_are_what_an_empty_environment_gives() -> None:
    # Config's own field defaults too: load_config takes its defaults from the registry, so
    # only Config() can disagree with it.
    config, fields = load_config({}), Config()
    for variable, (field, read) in PLAIN.items():
        assert read(DEFAULTS[variable]) == getattr(config, field) == getattr(fields, field), (
            variable
        )
    declared = {s.variable: s.default for s in SETTINGS}
    for variable, field in UNSET.items():
        assert declared[variable] == "unset" and getattr(config, field) is None, variable
    assert config.allowed_hosts == () and declared["POW_MCP_ALLOWED_HOSTS"] == "unset"
    assert DEFAULTS["POW_KERNEL"] == "auto" and config.kernel is None  # the kernels choose
    assert (
        OAuthSettings("https://i.example", "https://r.example").admin_scope
        == DEFAULTS["POW_MCP_OAUTH_ADMIN_SCOPE"]
    )


def test_the_flag_only_defaults_are_the_configs() -> None:
    by_flag = {s.flags: s.default for s in SETTINGS if s.variable is None}
    config = Config()
    assert by_flag[("--transport",)] == f"`{config.transport}`"
    assert by_flag[("--host", "--port")] == f"`{config.host}`, `{config.port}`"
    assert by_flag[("--token-file",)] == "unset" and config.token_file is None
    assert by_flag[("--insecure-no-auth",)] == "off" and config.insecure_no_auth is False
