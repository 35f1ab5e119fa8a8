"""The service's settings: parsed once from WECOM_BIND_* variables and an optional TOML file, then frozen."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX: Final = "WECOM_BIND_"
CONFIG_ENV: Final = "WECOM_BIND_CONFIG"
DEFAULT_STORE_URL: Final = "sqlite:///data/wecom-bind.db"
DEFAULT_WECOM_API_BASE: Final = "https://qyapi.weixin.qq.com"
DEFAULT_SCHOOL_NAME: Final = "上海工程技术大学"
DOMAIN_VERIFY_NAME: Final = re.compile(r"WW_verify_[A-Za-z0-9]{1,64}\.txt")
"""The name of WeCom's trusted-domain verification file, as its console hands it out."""
_CAS_ATTRIBUTE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,63}\Z")
_ADMIN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}\Z")

ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(Exception):
    """The settings are missing or invalid; `problems` holds one line per problem, naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_HOST_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _http_url(value: str, name: str) -> str:
    """Validate an http(s) URL and return it normalised: scheme and host lower-cased, the default port
    and a trailing slash dropped; every reader of a setting sees this one form."""
    text = value.strip()
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError(f"{name} must not contain spaces or control characters")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL")
    if "?" in text or "#" in text:
        raise ValueError(f"{name} must not carry a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not carry a user name or password")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{name} must have a port from 1 to 65535")
    host = _host(parts.hostname or "", name)
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _listed(value: object, what: str) -> object:
    """A list setting as the environment gives it (a JSON list or comma-separated text), else as is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"must be a JSON list or comma-separated {what}") from None
    return [item for item in text.split(",") if item.strip()]


def _host(host: str, name: str) -> str:
    """A host name (IDN as punycode), an IPv4 or a bracketed IPv6 address, lower-cased."""
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            raise ValueError(f"{name} has an invalid IPv6 address") from None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.removesuffix(".").split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{name} must name a valid host")
    return ascii_host


class StoreUrl(SecretStr):
    """The store URL, shown everywhere with its password masked (redis://:***@host:6379/0)."""

    def _display(self) -> str:
        return mask_url_password(self.get_secret_value())


def mask_url_password(url: str) -> str:
    """The URL with the password of its user part and of a password= parameter replaced by ***."""
    parts = urlsplit(url)
    masked = url
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        masked = masked.replace(f"//{parts.netloc}", f"//{user.partition(':')[0]}:***@{host}", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower() == "password" for key, _ in pairs):
        hidden = [(key, "***" if key.lower() == "password" else item) for key, item in pairs]
        query = urlencode(hidden, safe=":*")
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


class Settings(BaseModel):
    """Everything the service reads from outside, validated at start; secrets never show in a repr.

    Built from a mapping it reads no environment, so tests and the demo construct it purely with
    `Settings.model_validate({...})`; `load_settings` is what reads the environment and the file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    corp_id: str = Field(min_length=1, description="WeCom corp id (企业ID); also the callback receive id")
    token: SecretStr = Field(description="callback Token from the app's 接收消息 settings")
    encoding_aes_key: SecretStr = Field(description="callback EncodingAESKey: 43 characters")
    contacts_token: SecretStr | None = Field(
        default=None, description="Token of the contacts-sync (通讯录同步) event server; None: none"
    )
    contacts_encoding_aes_key: SecretStr | None = Field(
        default=None, description="EncodingAESKey of the contacts-sync event server: 43 characters"
    )
    agent_id: int = Field(description="the app's AgentId")
    app_secret: SecretStr = Field(description="the app's Secret: messages, user/convert_to_openid")
    contacts_secret: SecretStr = Field(
        description="the contacts-sync Secret: user create/update/delete/get, 二次验证"
    )
    public_base_url: str = Field(description="the URL students reach the service at")
    port: int = Field(
        default=8080, ge=1, le=65535,
        description="the port `serve` listens on (--port overrides); the image's health check asks it",
    )
    store_url: StoreUrl = Field(
        default=StoreUrl(DEFAULT_STORE_URL),
        description="sqlite:///path or redis://host:port/db; secret: it may hold the Redis password",
    )
    redis_allow_volatile: bool = Field(
        default=False, description="run on a Redis without persistence (acknowledged events lost on restart)"
    )
    cas_base_url: str = Field(description="the CAS server, e.g. https://cas.example.edu.cn/cas")
    cas_validate_path: str = Field(default="/p3/serviceValidate", description="CAS ticket validation path")
    cas_mobile_attribute: str = Field(default="mobile", description="the CAS attribute that holds the phone")
    cas_name_attribute: str = Field(default="name", description="the CAS attribute that holds the name")
    wecom_api_base: str = Field(default=DEFAULT_WECOM_API_BASE, description="WeCom API host")
    follow_url: str | None = Field(
        default=None, description="the link the follow QR (关注二维码) encodes; shown after binding"
    )
    session_secret: SecretStr = Field(description="signs session cookies: at least 32 characters")
    timestamp_window: int = Field(default=600, ge=1, le=86400, description="callback timestamp tolerance, s")
    callback_max_bytes: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024)
    workers: int = Field(default=4, ge=1, le=64, description="inbox worker pool size")
    wecom_calls_per_minute: int = Field(
        default=10_000, ge=1, le=10_000,
        description="this process's calls per WeCom API a minute (WeCom's limit, document/path/90312)",
    )
    wecom_calls_per_hour: int = Field(
        default=150_000, ge=1, le=150_000,
        description="this process's calls per WeCom API an hour (WeCom's limit: 150,000)",
    )
    inbox_lease: float = Field(
        default=60.0, ge=1.0, le=3600.0, description="seconds a worker holds an event, then others may"
    )
    second_verification: bool = Field(default=False, description="WeCom's 二次验证 admission gate")
    tfa_mode: Literal["authsucc", "tfa"] = Field(
        default="tfa",
        description="二次验证's API: auth/get_tfa_info then user/tfa_succ, or user/authsucc",
    )
    help_contact: str = Field(
        default="学校信息中心", min_length=1, max_length=120,
        description="whom a disabled or departed member asks (e.g. 辅导员, or the IT office with a phone)",
    )
    domain_verify_file: Path | None = Field(
        default=None,
        description="the WW_verify_*.txt file of WeCom's trusted domain (可信域名), served at the root",
    )
    departments: dict[str, int] = Field(
        default_factory=dict, description="院系 name -> WeCom department id, for members created on binding"
    )
    school_name: str = Field(
        default=DEFAULT_SCHOOL_NAME, min_length=1, max_length=64, description="the school, as pages name it"
    )
    trusted_proxies: Annotated[tuple[ProxyNetwork, ...], NoDecode] = Field(
        default=(), description="reverse proxies (IPs or CIDR networks) whose X-Forwarded-For is believed"
    )
    submits_per_address: int = Field(
        default=200, ge=1, le=1_000_000,
        description="binding submits one client address may make in 10 minutes (a campus NAT holds hundreds)",
    )
    log_level: str = Field(default="INFO")
    audit_retention_days: int = Field(
        default=365, ge=1, le=36500,
        description="days the audit log is kept: audit prune and student erase keep anything younger",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="the bearer token /metrics asks for; unset, /metrics answers 404"
    )
    log_format: Literal["json", "text"] | None = Field(
        default=None, description="json (one object per line) or text; serve defaults to json, demo to text"
    )
    admins: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), description="the CAS ids (学号/工号) let into /admin; empty: no console (404)"
    )
    sms_provider: Literal["tencent", "aliyun"] | None = Field(
        default=None, description="the SMS provider that sends codes proving a typed phone; None: no SMS"
    )
    sms_key_id: str | None = Field(default=None, description="Tencent's SecretId or Alibaba's AccessKeyId")
    sms_key_secret: SecretStr | None = Field(
        default=None, description="Tencent's SecretKey or Alibaba's AccessKeySecret"
    )
    sms_sign_name: str | None = Field(default=None, description="the approved 签名 the messages carry")
    sms_template_id: str | None = Field(
        default=None, description="the approved code template: Tencent's TemplateId or Alibaba's TemplateCode"
    )
    sms_app_id: str | None = Field(default=None, description="Tencent's SmsSdkAppId (Tencent only)")
    sms_region: str | None = Field(
        default=None, description="the provider's region; None: ap-guangzhou (Tencent), cn-hangzhou (Alibaba)"
    )
    sms_api_base: str | None = Field(
        default=None, description="the provider's API host; None: its public one (the demo: its emulator)"
    )
    sms_timeout: float = Field(default=5.0, gt=0, le=30, description="seconds one SendSms may take")
    sms_verify: Literal["changed", "always", "never"] | None = Field(
        default=None,
        description="when a code proves the phone: changed (not the directory's), always, never;"
        " None: changed with a provider, never without",
    )
    sms_code_secret: SecretStr | None = Field(
        default=None, description="keys the hashes codes are kept as: at least 32 characters"
    )

    @field_validator("encoding_aes_key", "contacts_encoding_aes_key")
    @classmethod
    def _check_aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        try:
            key = base64.b64decode(raw + "=", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(raw) != 43 or len(key) != 32:
            raise ValueError("must be 43 characters that decode to 32 bytes")
        return value

    @field_validator("session_secret")
    @classmethod
    def _check_session_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("token", "contacts_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _check_contacts_pair(self) -> Settings:
        # The contacts-sync event server has both or neither: a Token without its key verifies nothing.
        if (self.contacts_token is None) != (self.contacts_encoding_aes_key is None):
            raise ValueError(
                f"{env_name('contacts_token')} and {env_name('contacts_encoding_aes_key')}"
                " are set together or not at all"
            )
        return self

    @model_validator(mode="after")
    def _check_sms(self) -> Settings:
        if self.sms_provider is None:
            if self.sms_verify not in (None, "never"):
                verify, provider = env_name("sms_verify"), env_name("sms_provider")
                raise ValueError(f"{verify}: {self.sms_verify} needs {provider}")
            return self
        needed = ["sms_key_id", "sms_key_secret", "sms_sign_name", "sms_template_id", "sms_code_secret"]
        if self.sms_provider == "tencent":
            needed.append("sms_app_id")
        problems = [f"{env_name(name)}: required with {env_name('sms_provider')}={self.sms_provider}"
                    for name in needed if not getattr(self, name)]
        if problems:
            raise ValueError("\n".join(problems))
        secret = self.sms_code_secret
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError(f"{env_name('sms_code_secret')}: must be at least 32 characters")
        return self

    @property
    def sms_verify_mode(self) -> Literal["changed", "always", "never"]:
        """When a code proves the phone, the default resolved: changed with a provider, never without."""
        if self.sms_verify is not None:
            return self.sms_verify
        return "changed" if self.sms_provider is not None else "never"

    @field_validator("public_base_url")
    @classmethod
    def _check_public_base_url(cls, value: str) -> str:
        return _http_url(value, "the public base URL")

    @field_validator("cas_base_url")
    @classmethod
    def _check_cas_base_url(cls, value: str) -> str:
        return _http_url(value, "the CAS base URL")

    @field_validator("wecom_api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        return _http_url(value, "the WeCom API base")

    @field_validator(
        "sms_provider", "sms_key_id", "sms_key_secret", "sms_sign_name", "sms_template_id", "sms_app_id",
        "sms_region", "sms_api_base", "sms_verify", "sms_code_secret", mode="before",
    )
    @classmethod
    def _empty_sms_is_unset(cls, value: object) -> object:
        # The example file and an environment list them empty: unset, as metrics_token.
        return None if value == "" else value

    @field_validator("sms_api_base")
    @classmethod
    def _check_sms_api_base(cls, value: str | None) -> str | None:
        return None if not value else _http_url(value, "the SMS API base")

    @field_validator("follow_url")
    @classmethod
    def _check_follow_url(cls, value: str | None) -> str | None:
        return None if not value else _http_url(value, "the follow URL")

    @field_validator("cas_validate_path")
    @classmethod
    def _check_validate_path(cls, value: str) -> str:
        if value not in ("/p3/serviceValidate", "/serviceValidate"):
            raise ValueError("must be /p3/serviceValidate or /serviceValidate")
        return value

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: StoreUrl) -> StoreUrl:
        if urlsplit(value.get_secret_value()).scheme not in ("sqlite", "redis", "rediss", "unix"):
            raise ValueError("must start with sqlite:/// or redis://")
        return value

    @field_validator("domain_verify_file", mode="before")
    @classmethod
    def _check_domain_verify_file(cls, raw: object) -> Path | None:
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str | Path):
            raise ValueError("must be the path of the WW_verify_<code>.txt file")
        value = Path(raw)
        if not DOMAIN_VERIFY_NAME.fullmatch(value.name):
            raise ValueError("must name the WW_verify_<code>.txt file downloaded from WeCom's console")
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("departments")
    @classmethod
    def _check_departments(cls, value: dict[str, int]) -> dict[str, int]:
        if any(not name.strip() or ident < 1 for name, ident in value.items()):
            raise ValueError("each 院系 name must be non-empty and map to a department id of 1 or more")
        return value

    @field_validator("cas_mobile_attribute", "cas_name_attribute")
    @classmethod
    def _check_cas_attribute(cls, value: str) -> str:
        if not _CAS_ATTRIBUTE.match(value):
            raise ValueError("must be an XML name of letters, digits, '.', '_' or '-'")
        return value

    @field_validator("school_name")
    @classmethod
    def _check_school_name(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _read_trusted_proxies(cls, value: object) -> tuple[ProxyNetwork, ...]:
        value = _listed(value, "IPs or networks")
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of IPs or networks")
        networks: dict[ProxyNetwork, None] = {}
        for item in value:
            try:
                if not isinstance(item, str | ipaddress.IPv4Network | ipaddress.IPv6Network):
                    raise ValueError(item)
                networks[ipaddress.ip_network(item.strip() if isinstance(item, str) else item)] = None
            except ValueError:
                raise ValueError(f"{str(item)[:64]!r} is not an IP address or a CIDR network") from None
        return tuple(networks)

    @field_validator("admins", mode="before")
    @classmethod
    def _read_admins(cls, value: object) -> frozenset[str]:
        value = _listed(value, "ids")
        if not isinstance(value, list | tuple | set | frozenset):
            raise ValueError("must be a list of ids")
        admins = set()
        for item in value:
            member_id = item.strip() if isinstance(item, str) else None
            if member_id == "":
                continue
            if member_id is None or not _ADMIN_ID.match(member_id):
                raise ValueError(f"{str(item)[:64]!r} is not a CAS id (letters, digits and _-@. only)")
            admins.add(member_id)
        return frozenset(admins)

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @property
    def is_https(self) -> bool:
        """Whether students reach the service over https (cookies are then Secure)."""
        return self.public_base_url.startswith("https://")


class _EnvironmentSettings(Settings, BaseSettings):
    """Settings read by pydantic-settings from WECOM_BIND_* variables over the TOML file's values."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the TOML file, which reaches us as init arguments.
        return (env_settings, init_settings)


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    return ENV_PREFIX + field.upper()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError([f"{CONFIG_ENV}: config file not found: {path}"]) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError([f"{CONFIG_ENV}: cannot read config file {path}: {exc}"]) from None
    # A [wecom_bind] table or top-level keys are both accepted.
    table = data.get("wecom_bind", data)
    if not isinstance(table, dict):
        raise SettingsError([f"{CONFIG_ENV}: [wecom_bind] must be a table in {path}"])
    return {str(key).lower(): value for key, value in table.items()}


def load_settings(config_file: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate the settings, or raise SettingsError listing every problem by variable name."""
    path = config_file or os.environ.get(CONFIG_ENV) or None
    file_values = _read_toml(Path(path)) if path else {}
    try:
        loaded = _EnvironmentSettings(**file_values)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None
    return Settings.model_validate(dict(loaded))


def load_public_base_url(config_file: str | os.PathLike[str] | None = None) -> str:
    """The public base URL alone, from where load_settings reads it and validated as it validates it,
    for a command that needs no other setting (qrcode); SettingsError naming the variable."""
    path = config_file or os.environ.get(CONFIG_ENV) or None
    name = env_name("public_base_url")
    value = os.environ.get(name, (_read_toml(Path(path)) if path else {}).get("public_base_url"))
    if value is None:
        raise SettingsError([f"{name}: required setting is missing"])
    try:
        return _http_url(str(value), "the public base URL")
    except ValueError as exc:
        raise SettingsError([f"{name}: {exc}"]) from None


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        if not error["loc"]:
            # A check across fields (model_validator) names its variables itself.
            problems.extend(str(error["msg"]).removeprefix("Value error, ").splitlines())
            continue
        field = str(error["loc"][0])
        name = env_name(field)
        if error["type"] == "missing":
            problems.append(f"{name}: required setting is missing")
        elif error["type"] == "extra_forbidden":
            problems.append(f"{name}: unknown setting {field!r} in the config file")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
    return problems
