"""WECOM_BIND_ADMINS: who may enter the admin console, read from a variable or the TOML file."""

from __future__ import annotations

import os

import pytest

from config import SettingsError, load_settings
from tests.support.world import service_env


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("WECOM_BIND_"):
            monkeypatch.delenv(name)
    for name, value in service_env(8080).items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_no_administrators_by_default(environment: pytest.MonkeyPatch) -> None:
    assert load_settings().admins == frozenset()


@pytest.mark.parametrize(
    ("value", "admins"),
    [
        ("T0001", {"T0001"}),
        (" T0001 , 2021003,,", {"T0001", "2021003"}),
        ('["T0001", "a.b@campus"]', {"T0001", "a.b@campus"}),
        ("", set()),
    ],
)
def test_administrators_from_a_list_or_json(
    environment: pytest.MonkeyPatch, value: str, admins: set[str]
) -> None:
    environment.setenv("WECOM_BIND_ADMINS", value)
    assert load_settings().admins == frozenset(admins)


@pytest.mark.parametrize("value", ["T0001 T0002", "[1, 2]", "<script>", "[", "x" * 65])
def test_an_id_that_no_cas_would_send_stops_the_start(environment: pytest.MonkeyPatch, value: str) -> None:
    environment.setenv("WECOM_BIND_ADMINS", value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert any(problem.startswith("WECOM_BIND_ADMINS: ") for problem in raised.value.problems)


def test_from_the_toml_file(environment: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    path = f"{tmp_path}/wecom-bind.toml"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('admins = ["T0001", "T0002"]\n')
    assert load_settings(path).admins == frozenset({"T0001", "T0002"})
