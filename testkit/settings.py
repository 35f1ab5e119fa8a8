"""The settings of a test service: the one source for the settings objects, and the environment of
the processes, that the tests and the benchmarks make."""

from __future__ import annotations

from config import Settings, env_name
from testkit.callbacks import AES_KEY, AGENT_ID, CORP_ID, TOKEN

APP_SECRET = "app-secret"
CONTACTS_SECRET = "contacts-secret"
# Nothing listens on port 9: a test that forgets to name its emulator never reaches WeCom's real host.
CLOSED_PORT_URL = "http://127.0.0.1:9"


def service_values(
    *, port: int = 8080, wecom_api_base: str = CLOSED_PORT_URL, store_url: str = ""
) -> dict[str, object]:
    """The settings of a test service on port, talking to WeCom at wecom_api_base: the one source
    for the settings objects, and the environment of the processes, that tests make."""
    values: dict[str, object] = {
        "corp_id": CORP_ID,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        "agent_id": AGENT_ID,
        "app_secret": APP_SECRET,
        "contacts_secret": CONTACTS_SECRET,
        "public_base_url": f"http://127.0.0.1:{port}",
        "cas_base_url": f"http://127.0.0.1:{port}/sandbox/cas",
        "wecom_api_base": wecom_api_base,
        "session_secret": "x" * 40,
    }
    if store_url:
        values["store_url"] = store_url
    return values


def world_settings(
    *, port: int = 8080, wecom_api_base: str = CLOSED_PORT_URL, store_url: str = "", **overrides: object
) -> Settings:
    """Settings of a service on port, talking to the emulator at wecom_api_base; overrides win."""
    values = service_values(port=port, wecom_api_base=wecom_api_base, store_url=store_url)
    return Settings.model_validate(values | overrides)


def service_env(port: int, *, wecom_api_base: str = CLOSED_PORT_URL, store_url: str = "") -> dict[str, str]:
    """The same settings as WECOM_BIND_* variables, for a `wecom-bind` process."""
    values = service_values(port=port, wecom_api_base=wecom_api_base, store_url=store_url)
    return {env_name(field): str(value) for field, value in values.items()}
