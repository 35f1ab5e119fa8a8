"""The SMS settings: off by default, each one a provider needs named when missing, secrets hidden."""

from __future__ import annotations

import os

import pytest

from config import SettingsError, load_settings
from tests.config.test_settings import REQUIRED

TENCENT = {
    "WECOM_BIND_SMS_PROVIDER": "tencent",
    "WECOM_BIND_SMS_KEY_ID": "AKIDexample",
    "WECOM_BIND_SMS_KEY_SECRET": "the-sms-key-secret",
    "WECOM_BIND_SMS_SIGN_NAME": "上海工程技术大学",
    "WECOM_BIND_SMS_TEMPLATE_ID": "1234567",
    "WECOM_BIND_SMS_APP_ID": "1400123456",
    "WECOM_BIND_SMS_CODE_SECRET": "c" * 40,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("WECOM_BIND_"):
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_without_a_provider_no_code_is_asked(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.sms_provider is None
    assert settings.sms_verify_mode == "never"


def test_with_a_provider_a_changed_phone_is_proved_by_default(env: pytest.MonkeyPatch) -> None:
    for name, value in TENCENT.items():
        env.setenv(name, value)
    settings = load_settings()
    assert settings.sms_verify_mode == "changed"
    text = repr(settings) + str(settings)
    assert "the-sms-key-secret" not in text
    assert "c" * 40 not in text


def test_always_can_be_asked_for(env: pytest.MonkeyPatch) -> None:
    for name, value in TENCENT.items():
        env.setenv(name, value)
    env.setenv("WECOM_BIND_SMS_VERIFY", "always")
    assert load_settings().sms_verify_mode == "always"


def test_each_setting_a_provider_needs_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("WECOM_BIND_SMS_PROVIDER", "tencent")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    named = {line.split(":")[0] for line in caught.value.problems}
    assert named == set(TENCENT) - {"WECOM_BIND_SMS_PROVIDER"}


def test_alibaba_needs_no_app_id(env: pytest.MonkeyPatch) -> None:
    for name, value in TENCENT.items():
        env.setenv(name, value)
    env.setenv("WECOM_BIND_SMS_PROVIDER", "aliyun")
    env.delenv("WECOM_BIND_SMS_APP_ID")
    assert load_settings().sms_provider == "aliyun"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("WECOM_BIND_SMS_PROVIDER", "twilio", "WECOM_BIND_SMS_PROVIDER"),
        ("WECOM_BIND_SMS_VERIFY", "sometimes", "WECOM_BIND_SMS_VERIFY"),
        ("WECOM_BIND_SMS_CODE_SECRET", "short", "WECOM_BIND_SMS_CODE_SECRET: must be at least 32"),
        ("WECOM_BIND_SMS_API_BASE", "ftp://sms", "WECOM_BIND_SMS_API_BASE"),
    ],
)
def test_a_wrong_value_is_named(env: pytest.MonkeyPatch, name: str, value: str, problem: str) -> None:
    for key, text in TENCENT.items():
        env.setenv(key, text)
    env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert any(line.startswith(problem) for line in caught.value.problems)


def test_a_code_asked_for_without_a_provider_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("WECOM_BIND_SMS_VERIFY", "changed")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == ["WECOM_BIND_SMS_VERIFY: changed needs WECOM_BIND_SMS_PROVIDER"]
