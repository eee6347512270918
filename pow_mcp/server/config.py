"""Server configuration: the SPEC's environment variables, overridable by CLI flags."""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from pow_mcp.pow.plan import AUTO, TargetStart
from pow_mcp.pow.pool import default_workers
from pow_mcp.server.auth import TokenError, Tokens, is_loopback
from pow_mcp.server.settings import DEFAULTS
from pow_mcp.store import StoreConfigError, StoreSettings


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message names it."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


RECOVERY_POLICIES = ("fail", "resume")
LOCAL_DATA_DIR = Path("data/jobs")

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """`./data/jobs`, unless it cannot be created here (a desktop client may start the
    server in a read-only directory): then `jobs` in the per-user data directory.

    Probes by creating (and at once removing) a file where `./data/jobs` would go, so it
    leaves nothing behind and asks the OS itself, whatever its permission model.
    """
    here = LOCAL_DATA_DIR.absolute()
    probe = here
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a directory")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        import platformdirs  # only for this fallback

        fallback = Path(platformdirs.user_data_dir("pow-mcp")) / "jobs"
        log.info(
            "JOBS_DATA_DIR is unset and %s cannot be created (%s); the default data "
            "directory is %s",
            here,
            exc.strerror or exc,
            fallback,
        )
        return fallback
    return LOCAL_DATA_DIR


@dataclass(frozen=True)
class OAuthSettings:
    """HTTP as an OAuth 2.1 resource server: access tokens from `issuer`, for `resource`."""

    issuer: str  # POW_MCP_OAUTH_ISSUER
    resource: str  # POW_MCP_RESOURCE_URL: this server's public URL, the tokens' audience
    jwks_url: str | None = None  # POW_MCP_OAUTH_JWKS_URL: instead of the issuer's metadata
    admin_scope: str = "pow:admin"  # POW_MCP_OAUTH_ADMIN_SCOPE: sees every principal's jobs
    client_id: str | None = None  # POW_MCP_OAUTH_CLIENT_ID: for introspecting opaque tokens
    client_secret: str | None = field(default=None, repr=False)  # never printed


@dataclass(frozen=True)
class Config:
    data_dir: Path = LOCAL_DATA_DIR
    persist: bool = True
    database_url: str | None = None
    lease_seconds: float = 15.0
    recovery: str = "fail"
    max_recoveries: int = 3
    workers: int = default_workers()
    retention_seconds: float = 3600.0
    save_debounce_seconds: float = 1.0
    block_height_url: str | None = None
    block_time_seconds: float = 5.0
    block_height_grace_seconds: float = 300.0
    target_start: TargetStart = AUTO  # TARGET_DIFFICULTY_START
    kernel: str | None = None
    cluster: str | None = None  # POW_CLUSTER: None (local pool), "local" or tcp://HOST:PORT
    cluster_timeout_seconds: float = 300.0
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)  # POW_MCP_TOKEN: the principal `default`
    token_file: Path | None = None  # --token-file: name:token lines
    insecure_no_auth: bool = False  # --insecure-no-auth: serve off loopback without tokens
    allowed_hosts: tuple[str, ...] = ()  # --allowed-host, POW_MCP_ALLOWED_HOSTS
    max_active_jobs: int = 1000  # POW_MAX_ACTIVE_JOBS, per principal
    oauth: OAuthSettings | None = None  # POW_MCP_OAUTH_ISSUER and the rest

    def tokens(self) -> Tokens | None:
        """The HTTP bearer tokens, None if there are none."""
        try:
            if self.token_file is not None:
                return Tokens.from_file(self.token_file)
            if self.token is not None:
                return Tokens.single(self.token)
        except TokenError as exc:
            raise ConfigError(str(exc)) from None
        return None

    @property
    def jobs_file(self) -> Path:
        return self.data_dir.resolve() / "jobs.json"

    @property
    def store(self) -> StoreSettings:
        return StoreSettings(
            self.data_dir,
            persist=self.persist,
            database_url=self.database_url,
            lease_seconds=self.lease_seconds,
        )

    def with_overrides(self, **changes: object) -> Config:
        """Apply CLI flags that were given (None means not given)."""
        given = {key: value for key, value in changes.items() if value is not None}
        for name in ("data_dir", "token_file"):
            if name in given:
                given[name] = Path(str(given[name]))
        if "allowed_hosts" in given:
            given["allowed_hosts"] = self.allowed_hosts + tuple(given["allowed_hosts"])  # type: ignore[arg-type]
        updated = replace(self, **given)  # type: ignore[arg-type]
        _check(updated)
        return updated


def _bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={text!r} is not a boolean; use true or false")


def _number(name: str, text: str, *, minimum: float, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}={text!r} is not {kind}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={text!r} must be at least {minimum:g}")
    return value


def _check(config: Config) -> None:
    try:
        config.store.check()
    except StoreConfigError as exc:
        raise ConfigError(str(exc)) from None
    if config.recovery not in RECOVERY_POLICIES:
        raise ConfigError(f"JOBS_RECOVERY={config.recovery!r} must be fail or resume")
    if config.workers < 1:
        raise ConfigError(f"POW_WORKERS must be at least 1, got {config.workers}")
    if config.block_time_seconds <= 0:
        raise ConfigError("BLOCK_TIME_SECONDS must be greater than 0")
    if config.block_height_url is not None:
        url = urlparse(config.block_height_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(
                f"BLOCK_HEIGHT_URL={config.block_height_url!r} must be an http:// or https:// URL"
            )
    if config.cluster is not None and not _is_cluster(config.cluster):
        raise ConfigError(
            f"POW_CLUSTER={config.cluster!r} must be local (a Dask cluster of POW_WORKERS "
            "processes here) or tcp://HOST:PORT (a Dask scheduler); unset, jobs hash in the "
            "local worker pool"
        )
    if config.transport not in ("stdio", "http"):
        raise ConfigError(f"--transport must be stdio or http, got {config.transport!r}")
    if config.transport == "http":
        _check_http(config)
    if not 0 < config.port < 65536:
        raise ConfigError(f"--port must be 1..65535, got {config.port}")


def _is_cluster(value: str) -> bool:
    if value == "local":
        return True
    url = urlparse(value)
    try:
        port = url.port
    except ValueError:
        return False
    return url.scheme == "tcp" and bool(url.hostname) and port is not None and not url.path


def _target_start(text: str) -> TargetStart:
    try:
        return TargetStart.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_http(config: Config) -> None:
    if config.oauth is not None and (config.token is not None or config.token_file is not None):
        static = "POW_MCP_TOKEN" if config.token is not None else "--token-file"
        raise ConfigError(
            f"POW_MCP_OAUTH_ISSUER and {static} are both set, and a server takes one kind of "
            f"token: unset {static} to take the issuer's access tokens, or unset "
            "POW_MCP_OAUTH_ISSUER to keep the static tokens"
        )
    if config.oauth is not None:
        return
    open_to_all = config.tokens() is None and not is_loopback(config.host)
    if open_to_all and not config.insecure_no_auth:
        raise ConfigError(
            f"--host {config.host} is reachable from other machines, and no token is set: "
            "set POW_MCP_TOKEN (or --token-file FILE, or POW_MCP_OAUTH_ISSUER for an identity "
            "provider's tokens), or bind 127.0.0.1; --insecure-no-auth serves it open to "
            "anyone who can reach it"
        )


# Scope tokens (RFC 6749 3.3): printable ASCII without space, `"` or `\`.
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def _oauth(env: Mapping[str, str]) -> OAuthSettings | None:
    """POW_MCP_OAUTH_* and POW_MCP_RESOURCE_URL; None when no issuer is set."""
    issuer = env.get("POW_MCP_OAUTH_ISSUER", "").strip()
    resource = env.get("POW_MCP_RESOURCE_URL", "").strip()
    jwks_url = env.get("POW_MCP_OAUTH_JWKS_URL", "").strip()
    client_id = env.get("POW_MCP_OAUTH_CLIENT_ID", "").strip()
    secret = env.get("POW_MCP_OAUTH_CLIENT_SECRET", "").strip()
    secret_file = env.get("POW_MCP_OAUTH_CLIENT_SECRET_FILE", "").strip()
    if not issuer:
        named = {
            "POW_MCP_RESOURCE_URL": resource,
            "POW_MCP_OAUTH_JWKS_URL": jwks_url,
            "POW_MCP_OAUTH_CLIENT_ID": client_id,
            "POW_MCP_OAUTH_CLIENT_SECRET": secret,
            "POW_MCP_OAUTH_CLIENT_SECRET_FILE": secret_file,
        }
        given = [name for name, value in named.items() if value]
        if given:
            raise ConfigError(
                f"{given[0]} is set but POW_MCP_OAUTH_ISSUER is not: set the issuer too (the "
                "identity provider's issuer URL), or unset it"
            )
        return None
    if secret and secret_file:
        raise ConfigError(
            "POW_MCP_OAUTH_CLIENT_SECRET and POW_MCP_OAUTH_CLIENT_SECRET_FILE are both set; "
            "keep one"
        )
    settings = OAuthSettings(
        issuer=issuer,
        resource=resource,
        jwks_url=jwks_url or None,
        admin_scope=env.get("POW_MCP_OAUTH_ADMIN_SCOPE", "").strip()
        or DEFAULTS["POW_MCP_OAUTH_ADMIN_SCOPE"],
        client_id=client_id or None,
        client_secret=(_read_secret(secret_file) if secret_file else secret) or None,
    )
    _check_oauth(settings)
    return settings


def _check_oauth(settings: OAuthSettings) -> None:
    if not settings.resource:
        raise ConfigError(
            "POW_MCP_OAUTH_ISSUER is set, so POW_MCP_RESOURCE_URL is needed: this server's "
            "URL as clients reach it, e.g. https://pow.example.com/mcp (tokens must be issued "
            "for it)"
        )
    if (settings.client_id is None) != (settings.client_secret is None):
        raise ConfigError(
            "POW_MCP_OAUTH_CLIENT_ID and a client secret (POW_MCP_OAUTH_CLIENT_SECRET or "
            "POW_MCP_OAUTH_CLIENT_SECRET_FILE) go together: they let this server ask the "
            "issuer about opaque tokens; set both, or neither"
        )
    for name, url in (
        ("POW_MCP_OAUTH_ISSUER", settings.issuer),
        ("POW_MCP_RESOURCE_URL", settings.resource),
        ("POW_MCP_OAUTH_JWKS_URL", settings.jwks_url),
    ):
        if url is not None:
            _check_oauth_url(name, url)
    admin = settings.admin_scope
    if not _SCOPE.match(admin) or admin in ("pow:read", "pow:write"):
        raise ConfigError(
            f"POW_MCP_OAUTH_ADMIN_SCOPE={admin!r} must be one scope name, other than "
            "pow:read and pow:write (default pow:admin)"
        )


def _read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"POW_MCP_OAUTH_CLIENT_SECRET_FILE={path}: cannot read it ({reason})"
        ) from None
    if not secret:
        raise ConfigError(f"POW_MCP_OAUTH_CLIENT_SECRET_FILE={path} is empty")
    return secret


def _check_oauth_url(name: str, value: str) -> None:
    """https, or http to this machine (a test issuer); nothing a URL of the kind may not
    carry (RFC 8414 2, RFC 8707 2)."""
    url = urlparse(value)
    local = url.scheme == "http" and is_loopback(url.hostname or "")
    if (url.scheme != "https" and not local) or not url.hostname:
        raise ConfigError(
            f"{name}={value!r} must be an https:// URL (http:// only to this machine)"
        )
    if (
        url.fragment
        or url.username
        or url.password
        or (url.query and name != "POW_MCP_OAUTH_JWKS_URL")
    ):
        raise ConfigError(f"{name}={value!r} must have no query, fragment or user name")


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read the SPEC's environment variables; a bad value is a ConfigError naming it."""
    env = os.environ if env is None else env
    base = Config()
    # Each variable's name is written out where it is read, as the docs' tests find the
    # variables the server reads by that; the defaults come from the registry.
    config = Config(
        data_dir=Path(env["JOBS_DATA_DIR"]) if env.get("JOBS_DATA_DIR") else default_data_dir(),
        persist=_bool("PERSIST_JOBS", env.get("PERSIST_JOBS", DEFAULTS["PERSIST_JOBS"])),
        database_url=env.get("JOBS_DATABASE_URL") or None,
        lease_seconds=_number(
            "JOBS_LEASE_SECONDS",
            env.get("JOBS_LEASE_SECONDS", DEFAULTS["JOBS_LEASE_SECONDS"]),
            minimum=0.3,
        ),
        recovery=(env.get("JOBS_RECOVERY") or DEFAULTS["JOBS_RECOVERY"]).strip().lower(),
        max_recoveries=int(
            _number(
                "JOBS_MAX_RECOVERIES",
                env.get("JOBS_MAX_RECOVERIES", DEFAULTS["JOBS_MAX_RECOVERIES"]),
                minimum=0,
                integer=True,
            )
        ),
        workers=int(_number("POW_WORKERS", env["POW_WORKERS"], minimum=1, integer=True))
        if env.get("POW_WORKERS")
        else base.workers,
        retention_seconds=_number(
            "JOBS_RETENTION_SECONDS",
            env.get("JOBS_RETENTION_SECONDS", DEFAULTS["JOBS_RETENTION_SECONDS"]),
            minimum=0,
        ),
        save_debounce_seconds=_number(
            "JOBS_SAVE_DEBOUNCE_SECONDS",
            env.get("JOBS_SAVE_DEBOUNCE_SECONDS", DEFAULTS["JOBS_SAVE_DEBOUNCE_SECONDS"]),
            minimum=0,
        ),
        block_height_url=env.get("BLOCK_HEIGHT_URL") or None,
        block_time_seconds=_number(
            "BLOCK_TIME_SECONDS",
            env.get("BLOCK_TIME_SECONDS", DEFAULTS["BLOCK_TIME_SECONDS"]),
            minimum=0.001,
        ),
        block_height_grace_seconds=_number(
            "BLOCK_HEIGHT_GRACE_SECONDS",
            env.get("BLOCK_HEIGHT_GRACE_SECONDS", DEFAULTS["BLOCK_HEIGHT_GRACE_SECONDS"]),
            minimum=0,
        ),
        target_start=_target_start(
            env.get("TARGET_DIFFICULTY_START", DEFAULTS["TARGET_DIFFICULTY_START"])
        ),
        kernel=env.get("POW_KERNEL") or None,
        cluster=(env.get("POW_CLUSTER") or "").strip() or None,
        cluster_timeout_seconds=_number(
            "POW_CLUSTER_TIMEOUT_SECONDS",
            env.get("POW_CLUSTER_TIMEOUT_SECONDS", DEFAULTS["POW_CLUSTER_TIMEOUT_SECONDS"]),
            minimum=0,
        ),
        token=env.get("POW_MCP_TOKEN") or None,
        allowed_hosts=tuple(
            h.strip() for h in env.get("POW_MCP_ALLOWED_HOSTS", "").split(",") if h.strip()
        ),
        max_active_jobs=int(
            _number(
                "POW_MAX_ACTIVE_JOBS",
                env.get("POW_MAX_ACTIVE_JOBS", DEFAULTS["POW_MAX_ACTIVE_JOBS"]),
                minimum=1,
                integer=True,
            )
        ),
        oauth=_oauth(env),
    )
    _check(config)
    return config
