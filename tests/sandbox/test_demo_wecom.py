"""The demo's emulated WeCom: today's, and the app's events and change_contact each go to their own endpoint."""

from __future__ import annotations

from pathlib import Path

from config import Settings
from sandbox.demo import demo_settings, wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_PUSHER, WECOM_SANDBOX_STATE


def test_the_demo_pushes_change_contact_to_the_contacts_endpoint(tmp_path: Path) -> None:
    settings = demo_settings(host="127.0.0.1", port=8090, data_dir=tmp_path)
    assert settings.contacts_token is not None
    pusher = wecom_sandbox(settings)[WECOM_SANDBOX_PUSHER]
    assert pusher.target_urls == {
        "app": "http://127.0.0.1:8090/wecom/callback",
        "contacts": "http://127.0.0.1:8090/wecom/contacts-callback",
    }


def test_without_the_contacts_settings_the_demo_has_no_contacts_target(tmp_path: Path) -> None:
    values = demo_settings(host="127.0.0.1", port=8090, data_dir=tmp_path).model_dump()
    settings = Settings.model_validate(values | {"contacts_token": None, "contacts_encoding_aes_key": None})
    assert wecom_sandbox(settings)[WECOM_SANDBOX_PUSHER].target_urls == {
        "app": "http://127.0.0.1:8090/wecom/callback",
    }


def test_the_demos_wecom_is_todays_an_assistant_that_may_not_read_and_an_app_that_sees_no_mobile(
    tmp_path: Path,
) -> None:
    state = wecom_sandbox(demo_settings(host="127.0.0.1", port=8090, data_dir=tmp_path))[WECOM_SANDBOX_STATE]
    assert (state.contacts_reads_details, state.app_sees_sensitive) == (False, False)
