"""WeCom's trusted-domain check: GET /WW_verify_<code>.txt answers the downloaded file's exact content."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.pages.conftest import MakeEnv
from tests.support.world import world_settings

CONTENT = b"Kq3xT0e9ZbWvN2Lh"  # as WeCom's console hands it out: no newline


@pytest.fixture
def verify_file(tmp_path: Path) -> Path:
    path = tmp_path / "WW_verify_Kq3xT0e9ZbWvN2Lh.txt"
    path.write_bytes(CONTENT)
    return path


async def test_the_verification_file_is_served_exactly_as_text(make_env: MakeEnv, verify_file: Path) -> None:
    env = await make_env(domain_verify_file=str(verify_file))
    response = await env.client.get("/WW_verify_Kq3xT0e9ZbWvN2Lh.txt")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.read() == CONTENT
    # The file was read once, at start: a later change on disk is not served.
    _change(verify_file)
    assert await (await env.client.get("/WW_verify_Kq3xT0e9ZbWvN2Lh.txt")).read() == CONTENT


def _change(path: Path) -> None:
    path.write_bytes(b"changed")


async def test_any_other_verification_name_is_not_found(make_env: MakeEnv, verify_file: Path) -> None:
    env = await make_env(domain_verify_file=str(verify_file))
    for path in ("/WW_verify_other0000000000.txt", "/WW_verify_.txt", "/WW_verify_Kq3xT0e9ZbWvN2Lh.txt/x"):
        assert (await env.client.get(path)).status == 404, path


async def test_without_the_setting_there_is_no_such_route(make_env: MakeEnv) -> None:
    env = await make_env()
    assert (await env.client.get("/WW_verify_Kq3xT0e9ZbWvN2Lh.txt")).status == 404


def test_a_missing_file_fails_the_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="domain_verify_file"):
        world_settings(domain_verify_file=str(tmp_path / "WW_verify_Kq3xT0e9ZbWvN2Lh.txt"))


def test_a_file_not_named_as_wecom_names_it_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "verify.txt"
    other.write_bytes(CONTENT)
    with pytest.raises(ValidationError, match="WW_verify"):
        world_settings(domain_verify_file=str(other))
