"""QR codes: the poster's code of the guide's step 1 ({public_base_url}/bind), as PNG, SVG or text."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Final, Literal

import segno

from config import Settings

QrKind = Literal["png", "svg"]

BIND_PATH: Final = "/bind"
# Medium error correction survives a poster's wear; a scale of 10 prints crisply at A4.
_ERROR: Final = "m"
_SCALE: Final = 10
_BORDER: Final = 4


class UnknownQrFormat(ValueError):
    """The output file's suffix names no format we write (.png or .svg)."""


def bind_url(settings: Settings) -> str:
    """The URL that the poster's QR code encodes: always from settings, never from a request."""
    return bind_url_under(settings.public_base_url)


def bind_url_under(public_base_url: str) -> str:
    """The poster's URL under a public base URL that settings validated."""
    return public_base_url + BIND_PATH


# The pages serve the same two or three codes over and over; drawing one costs ~9 ms of CPU.
@functools.lru_cache(maxsize=16)
def qr_image(url: str, kind: QrKind, *, scale: int = _SCALE) -> bytes:
    """The QR code of url as a PNG or an SVG document (each drawn once, then remembered)."""
    code = segno.make(url, error=_ERROR)
    out = io.BytesIO()
    if kind == "svg":
        code.save(out, kind="svg", scale=scale, border=_BORDER, xmldecl=True, title=url)
    else:
        code.save(out, kind="png", scale=scale, border=_BORDER)
    return out.getvalue()


def qr_text(url: str) -> str:
    """The QR code of url drawn with block characters, for a terminal (light modules as blocks)."""
    out = io.StringIO()
    segno.make(url, error=_ERROR).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def kind_of(path: Path) -> QrKind:
    """The format that a file name asks for, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return "png"
    if suffix == ".svg":
        return "svg"
    raise UnknownQrFormat(f"cannot write {path.name}: use a .png or .svg file name")


def write_bind_qr(url: str, path: Path) -> None:
    """Write the QR code of url (bind_url's) to path, as a .png or .svg file."""
    path.write_bytes(qr_image(url, kind_of(path)))
