"""An existing organisation for the WeCom emulator: members read from a CSV export.

The header is `userid,name,department,mobile,status` (in any order; other columns ignored). status
is user/get's (document/path/90196): 1 已激活, 2 已禁用, 4 未激活, 5 退出企业. department is a WeCom
department id (several separated by `;`); mobile may be empty. A member with status 1 is played as
one activated through the WeCom app: no WeChat of the emulator follows as it, so
user/convert_to_openid answers 41054 for it, as WeCom does for a member who never followed the
WeChat plugin.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sandbox.wecom_rules import InvalidMobile, wecom_mobile
from sandbox.wecom_state import STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, STATUS_QUIT, Member

COLUMNS: Final = ("userid", "name", "department", "mobile", "status")
STATUSES: Final = frozenset({STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, STATUS_QUIT})


class MembersFileError(ValueError):
    """The members file cannot be loaded; the message names the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Organisation:
    """Members read from a file, and every department id they name."""

    members: tuple[Member, ...]
    departments: frozenset[int]


def read_members(path: Path) -> Organisation:
    """Read a members CSV (UTF-8, with or without a BOM); MembersFileError on the first bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MembersFileError(f"{path}: cannot be read as UTF-8 text ({type(exc).__name__})") from None
    return parse_members(text, source=str(path))


def parse_members(text: str, *, source: str = "members") -> Organisation:
    """Parse a members CSV's text; MembersFileError naming the line of the first problem."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    header = [name.strip() for name in reader.fieldnames or ()]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise MembersFileError(f"{source}: the header lacks {', '.join(missing)} (want {','.join(COLUMNS)})")
    reader.fieldnames = header
    members: list[Member] = []
    userids: set[str] = set()
    mobiles: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            members.append(_member(row, line, source, userids, mobiles))
    except csv.Error as exc:
        raise MembersFileError(f"{source}, line {reader.line_num}: {exc}") from None
    departments = frozenset(d for member in members for d in member.department)
    return Organisation(members=tuple(members), departments=departments)


def _member(
    row: dict[str, str | None], line: int, source: str, userids: set[str], mobiles: dict[str, int]
) -> Member:
    def field(name: str) -> str:
        return (row.get(name) or "").strip()

    where = f"{source}, line {line}"
    userid, name = field("userid"), field("name")
    if not userid or not name:
        raise MembersFileError(f"{where}: userid and name are required")
    if userid.casefold() in userids:
        raise MembersFileError(f"{where}: userid {userid!r} appears twice")
    userids.add(userid.casefold())
    try:
        departments = [int(part) for part in field("department").split(";") if part.strip()]
    except ValueError:
        raise MembersFileError(f"{where}: department must be WeCom department ids (e.g. 2 or 2;5)") from None
    if not departments or any(d < 1 for d in departments):
        raise MembersFileError(f"{where}: department must be WeCom department ids (e.g. 2 or 2;5)")
    status_text = field("status")
    if not status_text.isdigit() or int(status_text) not in STATUSES:
        raise MembersFileError(f"{where}: status must be 1, 2, 4 or 5 (已激活, 已禁用, 未激活, 退出企业)")
    mobile: str | None = None
    if field("mobile"):
        try:
            mobile = wecom_mobile(field("mobile"))
        except InvalidMobile:
            raise MembersFileError(f"{where}: the mobile is not a mainland mobile number") from None
        if mobile in mobiles:
            raise MembersFileError(f"{where}: the mobile is the same as line {mobiles[mobile]}'s")
        mobiles[mobile] = line
    status = int(status_text)
    return Member(
        userid=userid,
        name=name,
        department=departments,
        mobile=mobile,
        status=status,
        uses_wecom_app=status == STATUS_ACTIVE,
    )
