"""Settings of wecom-bind: the WECOM_BIND_* variables and the optional TOML file."""

from config.settings import (
    CONFIG_ENV,
    DEFAULT_STORE_URL,
    DEFAULT_WECOM_API_BASE,
    Settings,
    SettingsError,
    env_name,
    load_public_base_url,
    load_settings,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_STORE_URL",
    "DEFAULT_WECOM_API_BASE",
    "Settings",
    "SettingsError",
    "env_name",
    "load_public_base_url",
    "load_settings",
]
