"""The poster's QR code of step 1: its URL from settings, PNG and SVG files, the command."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import segno

from callback_service import qr
from callback_service.ops.cli import main
from tests.support.world import world_settings

BASE = "https://bind.example.edu.cn"
ENV = {
    "WECOM_BIND_CORP_ID": "ww1436e0e65a779aee",
    "WECOM_BIND_TOKEN": "token",
    "WECOM_BIND_ENCODING_AES_KEY": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "WECOM_BIND_AGENT_ID": "1000002",
    "WECOM_BIND_APP_SECRET": "app-secret",
    "WECOM_BIND_CONTACTS_SECRET": "contacts-secret",
    "WECOM_BIND_PUBLIC_BASE_URL": BASE + "/",
    "WECOM_BIND_CAS_BASE_URL": "https://cas.example.edu.cn/cas",
    "WECOM_BIND_SESSION_SECRET": "s" * 40,
}


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WECOM_BIND_CONFIG", raising=False)


def test_the_code_encodes_bind_under_the_public_url() -> None:
    assert qr.bind_url(world_settings(public_base_url=BASE + "/")) == BASE + "/bind"


def test_png_is_a_square_image_of_the_code() -> None:
    png = qr.qr_image(BASE + "/bind", "png", scale=10)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    modules = segno.make(BASE + "/bind", error="m").symbol_size(scale=10, border=4)
    assert (width, height) == modules


def test_svg_is_an_svg_document_titled_with_the_url() -> None:
    svg = qr.qr_image(BASE + "/bind", "svg").decode()
    assert svg.startswith("<?xml")
    assert "<svg" in svg
    assert f"<title>{BASE}/bind</title>" in svg


@pytest.mark.parametrize(("name", "kind"), [("a.png", "png"), ("b.PNG", "png"), ("poster.svg", "svg")])
def test_the_file_suffix_picks_the_format(name: str, kind: str) -> None:
    assert qr.kind_of(Path(name)) == kind


@pytest.mark.parametrize("name", ["a.jpg", "a", "a.png.txt"])
def test_other_suffixes_are_refused(name: str) -> None:
    with pytest.raises(qr.UnknownQrFormat):
        qr.kind_of(Path(name))


@pytest.mark.usefixtures("settings_env")
@pytest.mark.parametrize("name", ["poster.png", "poster.svg"])
def test_the_command_writes_the_file(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / name
    assert main(["qrcode", "--out", str(out)]) == 0
    assert out.read_bytes() == qr.qr_image(BASE + "/bind", qr.kind_of(out))
    assert BASE + "/bind" in capsys.readouterr().out


@pytest.mark.usefixtures("settings_env")
def test_the_command_prints_the_code_and_its_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qrcode"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(BASE + "/bind")
    assert "█" in printed


@pytest.mark.usefixtures("settings_env")
def test_the_command_refuses_an_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qrcode", "--out", str(tmp_path / "poster.jpg")]) == 2
    assert ".png or .svg" in capsys.readouterr().err
    assert not (tmp_path / "poster.jpg").exists()
