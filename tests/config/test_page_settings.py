"""The pages' settings: trusted proxies, the CAS attribute names and the school's name."""

from __future__ import annotations

import ipaddress

import pytest

from config import SettingsError, load_settings
from tests.config.test_settings import REQUIRED, clean_env

__all__ = ["clean_env"]


def _env(clean_env: pytest.MonkeyPatch, **values: str) -> pytest.MonkeyPatch:
    for name, value in {**REQUIRED, **values}.items():
        clean_env.setenv(name, value)
    return clean_env


def test_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    _env(clean_env)
    settings = load_settings()
    assert settings.trusted_proxies == ()
    assert (settings.cas_mobile_attribute, settings.cas_name_attribute) == ("mobile", "name")
    assert settings.school_name == "上海工程技术大学"


@pytest.mark.parametrize("value", ["10.0.0.1, 192.168.0.0/16,::1", '["10.0.0.1", "192.168.0.0/16", "::1"]'])
def test_trusted_proxies_as_a_list_or_json(clean_env: pytest.MonkeyPatch, value: str) -> None:
    _env(clean_env, WECOM_BIND_TRUSTED_PROXIES=value)
    assert load_settings().trusted_proxies == (
        ipaddress.ip_network("10.0.0.1"),
        ipaddress.ip_network("192.168.0.0/16"),
        ipaddress.ip_network("::1"),
    )


@pytest.mark.parametrize("value", ["10.0.0.300", "10.0.0.1/8", "[1", "proxy.example.edu", '[5]'])
def test_a_bad_trusted_proxy_is_named(clean_env: pytest.MonkeyPatch, value: str) -> None:
    _env(clean_env, WECOM_BIND_TRUSTED_PROXIES=value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith("WECOM_BIND_TRUSTED_PROXIES: ")


def test_cas_attribute_names_and_the_school(clean_env: pytest.MonkeyPatch) -> None:
    _env(
        clean_env,
        WECOM_BIND_CAS_MOBILE_ATTRIBUTE="telephoneNumber",
        WECOM_BIND_CAS_NAME_ATTRIBUTE="cn",
        WECOM_BIND_SCHOOL_NAME="某某大学",
    )
    settings = load_settings()
    assert (settings.cas_mobile_attribute, settings.cas_name_attribute) == ("telephoneNumber", "cn")
    assert settings.school_name == "某某大学"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WECOM_BIND_CAS_MOBILE_ATTRIBUTE", "cas:mobile"),
        ("WECOM_BIND_CAS_NAME_ATTRIBUTE", ""),
        ("WECOM_BIND_SCHOOL_NAME", "   "),
        ("WECOM_BIND_SCHOOL_NAME", "大学\u202e"),
    ],
)
def test_bad_names_are_refused(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    _env(clean_env, **{name: value})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith(f"{name}: ")
