"""Settings: names, validation, precedence, secrecy, and the CLI's start-up failure."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings
from tests.store.support import RedisServer, require_redis_server
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import service_env

AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
REQUIRED = {
    "WECOM_BIND_CORP_ID": "ww1436e0e65a779aee",
    "WECOM_BIND_TOKEN": "token-secret-value",
    "WECOM_BIND_ENCODING_AES_KEY": AES_KEY,
    "WECOM_BIND_AGENT_ID": "1000002",
    "WECOM_BIND_APP_SECRET": "app-secret-value",
    "WECOM_BIND_CONTACTS_SECRET": "contacts-secret-value",
    "WECOM_BIND_PUBLIC_BASE_URL": "https://bind.example.edu.cn/",
    "WECOM_BIND_CAS_BASE_URL": "https://cas.example.edu.cn/cas",
    "WECOM_BIND_SESSION_SECRET": "s" * 40,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("WECOM_BIND_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_loads_from_environment_with_defaults(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.corp_id == "ww1436e0e65a779aee"
    assert settings.agent_id == 1000002
    assert settings.public_base_url == "https://bind.example.edu.cn"
    assert settings.store_url.get_secret_value() == "sqlite:///data/wecom-bind.db"
    assert settings.wecom_api_base == "https://qyapi.weixin.qq.com"
    assert settings.timestamp_window == 600
    assert settings.is_https


def test_every_missing_setting_is_named(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    named = {line.split(":")[0] for line in caught.value.problems}
    assert named == set(REQUIRED)


@pytest.mark.parametrize(
    "bad_key",
    [AES_KEY[:-1], AES_KEY + "A", "!" * 43, "A" * 42 + "="],
)
def test_aes_key_must_decode_to_32_bytes(clean_env: pytest.MonkeyPatch, bad_key: str) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("WECOM_BIND_ENCODING_AES_KEY", bad_key)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == [
        "WECOM_BIND_ENCODING_AES_KEY: must be 43 characters that decode to 32 bytes"
    ]
    assert bad_key not in str(caught.value)


@pytest.mark.parametrize("bad_port", ["0", "65536", "http"])
def test_the_port_is_read_from_its_variable_and_checked(clean_env: pytest.MonkeyPatch, bad_port: str) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    assert load_settings().port == 8080
    clean_env.setenv("WECOM_BIND_PORT", "18600")
    assert load_settings().port == 18600
    clean_env.setenv("WECOM_BIND_PORT", bad_port)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line.split(":")[0] for line in caught.value.problems] == ["WECOM_BIND_PORT"]


def test_environment_wins_over_the_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "wecom-bind.toml"
    lines = [f'{name.removeprefix("WECOM_BIND_").lower()} = "{value}"' for name, value in REQUIRED.items()]
    config.write_text("[wecom_bind]\n" + "\n".join(lines) + "\ntimestamp_window = 30\n", encoding="utf-8")
    clean_env.setenv("WECOM_BIND_CONFIG", str(config))
    clean_env.setenv("WECOM_BIND_TIMESTAMP_WINDOW", "45")
    settings = load_settings()
    assert settings.timestamp_window == 45
    assert settings.corp_id == REQUIRED["WECOM_BIND_CORP_ID"]


def test_unknown_file_key_is_named(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('corp_idd = "x"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert "WECOM_BIND_CORP_IDD: unknown setting 'corp_idd' in the config file" in caught.value.problems


def test_missing_file_is_reported(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "absent.toml")


def test_example_file_is_valid(clean_env: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "example.toml"
    settings = load_settings(example)
    documented = {line.split("=")[0].strip() for line in example.read_text("utf-8").splitlines()
                  if "=" in line and not line.startswith("#")}
    assert documented == set(Settings.model_fields)
    assert settings.cas_validate_path == "/p3/serviceValidate"


def test_secrets_never_show_in_repr(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    text = repr(load_settings()) + str(load_settings())
    for secret in ("token-secret-value", AES_KEY, "app-secret-value", "contacts-secret-value", "s" * 40):
        assert secret not in text


def test_model_validate_reads_no_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WECOM_BIND_CORP_ID", "from-the-environment")
    values = {name.removeprefix("WECOM_BIND_").lower(): value for name, value in REQUIRED.items()}
    assert Settings.model_validate(values).corp_id == REQUIRED["WECOM_BIND_CORP_ID"]


def test_serve_with_bad_settings_exits_naming_each_variable(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    env.update(REQUIRED)
    del env["WECOM_BIND_TOKEN"]
    env["WECOM_BIND_ENCODING_AES_KEY"] = "short"
    result = subprocess.run(
        [sys.executable, "-m", "callback_service", "serve", "--host", "127.0.0.1", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "wecom-bind: WECOM_BIND_TOKEN: required setting is missing",
        "wecom-bind: WECOM_BIND_ENCODING_AES_KEY: must be 43 characters that decode to 32 bytes",
    ]


def test_departments_from_the_environment_as_json(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("WECOM_BIND_DEPARTMENTS", '{"管理学院": 3, "化学化工学院": 5}')
    assert load_settings().departments == {"管理学院": 3, "化学化工学院": 5}
    clean_env.setenv("WECOM_BIND_DEPARTMENTS", '{"管理学院": 0}')
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith("WECOM_BIND_DEPARTMENTS: ")


def test_contacts_callback_settings_are_optional_and_paired(clean_env: pytest.MonkeyPatch) -> None:
    values = {name.removeprefix("WECOM_BIND_").lower(): value for name, value in REQUIRED.items()}
    assert Settings.model_validate(values).contacts_token is None
    both = Settings.model_validate(values | {"contacts_token": "t", "contacts_encoding_aes_key": AES_KEY})
    assert both.contacts_encoding_aes_key is not None
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("WECOM_BIND_CONTACTS_TOKEN", "contacts-token")
    with pytest.raises(SettingsError, match="WECOM_BIND_CONTACTS_ENCODING_AES_KEY"):
        load_settings()
    clean_env.setenv("WECOM_BIND_CONTACTS_ENCODING_AES_KEY", "short")
    with pytest.raises(SettingsError, match="WECOM_BIND_CONTACTS_ENCODING_AES_KEY: must be 43"):
        load_settings()
    clean_env.setenv("WECOM_BIND_CONTACTS_ENCODING_AES_KEY", AES_KEY)
    assert "contacts-token" not in repr(load_settings())


def _with(clean_env: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    for name, value in values.items():
        clean_env.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("HTTPS://Bind.Example.edu.cn/", "https://bind.example.edu.cn"),
        ("https://bind.example.edu.cn:443/", "https://bind.example.edu.cn"),
        ("http://BIND.example.edu.cn:8080/wecom/", "http://bind.example.edu.cn:8080/wecom"),
        (" https://bind.example.edu.cn ", "https://bind.example.edu.cn"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
        ("https://绑定.example.edu.cn", "https://xn--mbt723f.example.edu.cn"),
    ],
)
def test_the_public_url_is_normalised_once(clean_env: pytest.MonkeyPatch, given: str, normalised: str) -> None:
    settings = _with(clean_env, WECOM_BIND_PUBLIC_BASE_URL=given)
    assert settings.public_base_url == normalised
    assert settings.is_https == normalised.startswith("https://")


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("https://bind example.edu", "must not contain spaces"),
        ("https://bind.example.edu:99999", "port from 1 to 65535"),
        ("https://bind.example.edu:0", "port from 1 to 65535"),
        ("https://bind.example.edu:https", "port from 1 to 65535"),
        ("ftp://bind.example.edu", "http(s) URL"),
        ("https://", "http(s) URL"),
        ("https://bind.example.edu/?a=1", "query or fragment"),
        ("https://bind.example.edu/#top", "query or fragment"),
        ("https://bind.example.edu?", "query or fragment"),
        ("https://user:pw@bind.example.edu", "user name or password"),
        ("https://-bind.example.edu", "valid host"),
        ("https://bind..example.edu", "valid host"),
        ("https://bind_example.edu", "valid host"),
        ("https://bind.\texample.edu", "must not contain"),
    ],
)
def test_a_bad_public_url_is_refused_naming_the_setting(
    clean_env: pytest.MonkeyPatch, given: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _with(clean_env, WECOM_BIND_PUBLIC_BASE_URL=given)
    [line] = caught.value.problems
    assert line.startswith("WECOM_BIND_PUBLIC_BASE_URL: ")
    assert problem in line


def test_the_other_urls_are_normalised_the_same_way(clean_env: pytest.MonkeyPatch) -> None:
    settings = _with(
        clean_env,
        WECOM_BIND_CAS_BASE_URL="HTTPS://CAS.example.edu.cn/cas/",
        WECOM_BIND_WECOM_API_BASE="HTTPS://qyapi.weixin.qq.com:443",
        WECOM_BIND_FOLLOW_URL="https://Work.Weixin.qq.com/follow/",
    )
    assert settings.cas_base_url == "https://cas.example.edu.cn/cas"
    assert settings.wecom_api_base == "https://qyapi.weixin.qq.com"
    assert settings.follow_url == "https://work.weixin.qq.com/follow"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2-redis-pw@10.0.0.5:6379/0?prefix=wb:", "redis://:***@10.0.0.5:6379/0?prefix=wb:"),
        ("rediss://wecom:hunter2-redis-pw@redis.example.edu.cn:6380/1", "rediss://wecom:***@redis.example.edu.cn:6380/1"),
        ("redis://10.0.0.5:6379/0?password=hunter2-redis-pw", "redis://10.0.0.5:6379/0?password=***"),
        ("sqlite:///data/wecom-bind.db", "sqlite:///data/wecom-bind.db"),
    ],
)
def test_the_store_url_is_a_secret_in_every_repr(clean_env: pytest.MonkeyPatch, url: str, shown: str) -> None:
    settings = _with(clean_env, WECOM_BIND_STORE_URL=url)
    assert settings.store_url.get_secret_value() == url
    for text in (repr(settings), str(settings), repr(settings.store_url), str(settings.store_url),
                 repr(settings.model_dump()), settings.model_dump_json()):
        assert "hunter2-redis-pw" not in text
    assert str(settings.store_url) == shown


def test_no_log_line_at_start_shows_the_store_password(tmp_path: Path) -> None:
    server = RedisServer(require_redis_server(), tmp_path, appendfsync="no",
                         extra=("--requirepass", "hunter2-redis-pw"))
    server.start()
    port = free_port()
    env = service_env(port, store_url=server.url.replace("redis://", "redis://:hunter2-redis-pw@"))
    env["WECOM_BIND_LOG_LEVEL"] = "DEBUG"
    # /ready names its checks to the metrics bearer only.
    env["WECOM_BIND_METRICS_TOKEN"] = "the-monitoring-bearer-0123456789abcdef"
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        ready = urllib.request.Request(
            f"http://127.0.0.1:{port}/ready",
            headers={"Authorization": "Bearer the-monitoring-bearer-0123456789abcdef"},
        )
        try:
            with urllib.request.urlopen(ready, timeout=10) as response:  # noqa: S310 (http on loopback)
                body = response.read()
        except urllib.error.HTTPError as refused:  # 503: no WeCom here; the store's part is what counts
            body = refused.read()
        assert b'"store": "up"' in body
    finally:
        stdout, stderr = stop(process)
        server.kill()
    assert "DEBUG" in stderr  # the lines were there to be read
    assert "hunter2-redis-pw" not in stdout + stderr


def test_redis_allow_volatile_is_a_setting(clean_env: pytest.MonkeyPatch) -> None:
    assert not _with(clean_env).redis_allow_volatile
    assert _with(clean_env, WECOM_BIND_REDIS_ALLOW_VOLATILE="true").redis_allow_volatile
