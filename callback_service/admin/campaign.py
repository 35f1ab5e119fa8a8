"""The campaign as the console shows it, computed from what the store holds: where each student of
the directory stands, the counts overall and by 院系, who is stuck on which error, the bindings and
follows per day and per hour, and the lists to chase. Pure: the views read the store and call these."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from handlers.core.binding import AuditAction, AuditRecord, Binding, BindingState, DirectoryEntry
from handlers.core.member import MemberSeen, MemberStatus

_OFFSET: Final = dt.timedelta(hours=8)
CAMPUS_TZ: Final = dt.timezone(_OFFSET, "CST")
"""Days begin at midnight in China (no daylight saving), wherever the server's clock is set."""
REFUSAL_DAYS: Final = 7
"""How far back the console looks for refusals: a student refused earlier and not bound since has
most likely given up, and still shows as not joined."""
CHART_DAYS: Final = 14
CHART_HOURS: Final = 48


class Progress(enum.StrEnum):
    """How far a student of the directory has come in the campaign, the furthest step first (not the
    binding flow's Standing: where a student stands by WeCom's status at the login)."""

    JOINED = "joined"
    DISABLED = "disabled"
    BOUND = "bound"
    PENDING = "pending"
    REFUSED = "refused"
    NOT_STARTED = "not_started"

    @property
    def label(self) -> str:
        """The console's word for it."""
        return _PROGRESS_LABELS[self]


_PROGRESS_LABELS: Final = {
    Progress.JOINED: "已加入",
    Progress.DISABLED: "已禁用",
    Progress.BOUND: "已绑定，未加入",
    Progress.PENDING: "绑定处理中",
    Progress.REFUSED: "绑定被拒绝",
    Progress.NOT_STARTED: "未开始",
}


class Stuck(enum.StrEnum):
    """The error a refusal stopped a student on (the binding flow's '<refusal>: <why>' records)."""

    PHONE_TAKEN = "phone_taken"
    FOLLOWED = "account_followed"
    FOLLOWED_IN_WECOM = "account_followed_wecom"
    DISABLED = "disabled"
    QUIT = "quit"
    NOT_IN_DIRECTORY = "not_in_directory"
    MOBILE_REFUSED = "mobile_refused"
    OTHER = "other"

    @property
    def label(self) -> str:
        """The guide's section and words, or the console's."""
        return _STUCK_LABELS[self]


_STUCK_LABELS: Final = {
    Stuck.PHONE_TAKEN: "2.1 手机号已绑定其他账号",
    Stuck.FOLLOWED: "2.2 账号已被其他手机号绑定",
    Stuck.FOLLOWED_IN_WECOM: "2.2 账号已被其他手机号绑定（企业微信状态：已激活）",
    Stuck.DISABLED: "成员已禁用",
    Stuck.QUIT: "成员已退出企业",
    Stuck.NOT_IN_DIRECTORY: "不在学校通讯录中",
    Stuck.MOBILE_REFUSED: "手机号被企业微信拒绝",
    Stuck.OTHER: "其他",
}


def stuck_of(record: AuditRecord) -> Stuck | None:
    """The error of a conflict record written for a refusal; None for other conflicts (I4...)."""
    if record.action is not AuditAction.CONFLICT:
        return None
    reason, _, why = record.detail.partition(": ")
    if reason == "account_followed":
        return Stuck.FOLLOWED_IN_WECOM if why.startswith("wecom") else Stuck.FOLLOWED
    return _STUCK_REASONS.get(reason) or _older(reason)


def _older(reason: str) -> Stuck | None:
    # A conflict written before refusals carried their reason first.
    return Stuck.PHONE_TAKEN if reason.startswith("wecom 60104") else None


_STUCK_REASONS: Final = {
    "phone_taken": Stuck.PHONE_TAKEN,
    "member_joined": Stuck.FOLLOWED_IN_WECOM,
    "member_disabled": Stuck.DISABLED,
    "member_quit": Stuck.QUIT,
    "not_in_directory": Stuck.NOT_IN_DIRECTORY,
    "mobile_refused": Stuck.MOBILE_REFUSED,
}
"""The binding flow's refusals (handlers.usecases.binding_flow.Refusal's values) and their errors."""


def holder_of(record: AuditRecord) -> str | None:
    """Who held the phone when 2.1 refused it, as the refusal's record names them."""
    _, found, holder = record.detail.partition(", held by ")
    return holder.strip() or None if found else None


@dataclass(frozen=True, slots=True)
class StuckStudent:
    """A student refused lately on one error: when first and last, how often, the phone masked and,
    for 2.1, who held the phone then."""

    member_id: str
    stuck: Stuck
    first_at: float
    last_at: float
    times: int
    phone_masked: str | None
    holder: str | None


def stuck_students(refusals: Iterable[AuditRecord], bindings: Mapping[str, Binding]) -> list[StuckStudent]:
    """The students refused (oldest record first given), by error, who have not bound since; the
    most recent first."""
    grouped: dict[tuple[str, Stuck], list[AuditRecord]] = defaultdict(list)
    for record in refusals:
        stuck = stuck_of(record)
        if stuck is not None:
            grouped[(record.member_id, stuck)].append(record)
    found = []
    for (member_id, stuck), records in grouped.items():
        binding = bindings.get(member_id)
        last = records[-1]
        if binding is not None and binding.state is not BindingState.PENDING and binding.updated_at > last.at:
            continue  # bound (or followed) since: no longer stuck
        found.append(
            StuckStudent(
                member_id=member_id,
                stuck=stuck,
                first_at=records[0].at,
                last_at=last.at,
                times=len(records),
                phone_masked=last.phone_masked,
                holder=holder_of(last),
            )
        )
    return sorted(found, key=lambda student: (-student.last_at, student.member_id))


@dataclass(frozen=True, slots=True)
class StudentRow:
    """One student of the directory and where they stand; last_error: the latest refusal's words."""

    member_id: str
    name: str
    department: str
    progress: Progress
    last_error: str | None


def progress_of(
    binding: Binding | None, seen: MemberSeen | None, refused: StuckStudent | None, now: float
) -> Progress:
    """Where one student stands: WeCom's word first (activated, disabled), then the binding."""
    followed = binding is not None and binding.state is BindingState.FOLLOWED
    if followed or (seen is not None and seen.status is MemberStatus.ACTIVATED):
        return Progress.JOINED
    if seen is not None and seen.status is MemberStatus.DISABLED:
        return Progress.DISABLED
    if binding is not None and binding.state is BindingState.BOUND:
        return Progress.BOUND
    if binding is not None and binding.state is BindingState.PENDING:
        if not binding.lease_expired(now):
            return Progress.PENDING
        if binding.previous_phone is not None:
            return Progress.BOUND
    if refused is not None:
        return Progress.REFUSED
    return Progress.NOT_STARTED


def student_rows(
    directory: Sequence[DirectoryEntry],
    bindings: Mapping[str, Binding],
    seen: Mapping[str, MemberSeen],
    stuck: Sequence[StuckStudent],
    now: float,
) -> list[StudentRow]:
    """Every student of the directory, where they stand and their latest refusal."""
    latest: dict[str, StuckStudent] = {}
    for student in stuck:
        if student.member_id not in latest or latest[student.member_id].last_at < student.last_at:
            latest[student.member_id] = student
    rows = []
    for entry in directory:
        refused = latest.get(entry.member_id)
        progress = progress_of(bindings.get(entry.member_id), seen.get(entry.member_id), refused, now)
        rows.append(
            StudentRow(
                member_id=entry.member_id,
                name=entry.name,
                department=entry.department,
                progress=progress,
                last_error=refused.stuck.label if refused is not None else None,
            )
        )
    return rows


@dataclass(slots=True)
class Tally:
    """The counts of one 院系 (or all): students of the directory, members in WeCom, and where they stand."""

    name: str
    students: int = 0
    members: int = 0
    bound: int = 0
    joined: int = 0
    pending: int = 0
    refused: int = 0
    disabled: int = 0

    def percent(self, count: int) -> int:
        """count as a whole percentage of the students (0 when there are none)."""
        return round(100 * count / self.students) if self.students else 0

    @property
    def not_joined(self) -> int:
        """Students who have not joined yet: the ones to chase."""
        return self.students - self.joined


@dataclass(frozen=True, slots=True)
class Overview:
    """The campaign at a glance: all students, then each 院系, the furthest behind first."""

    overall: Tally
    departments: list[Tally] = field(default_factory=list)


def overview(
    rows: Sequence[StudentRow], bindings: Mapping[str, Binding], seen: Mapping[str, MemberSeen]
) -> Overview:
    """Count the students overall and by 院系."""
    # One Counter of (院系, what) pairs, then the tallies: a campus is tens of thousands of rows.
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        binding = bindings.get(row.member_id)
        member = seen.get(row.member_id)
        department = row.department
        counts[(department, "students")] += 1
        counts[(department, f"progress {row.progress.value}")] += 1
        if member is not None and member.status is not None and member.status is not MemberStatus.QUIT:
            counts[(department, "members")] += 1
        if row.progress is Progress.JOINED or (
            binding is not None and binding.state is not BindingState.PENDING
        ):
            counts[(department, "bound")] += 1
    overall = Tally("全部")
    by_department: dict[str, Tally] = {}
    for (department, what), number in counts.items():
        tally = by_department.setdefault(department, Tally(department))
        name = _TALLIED.get(what)
        if name is not None:
            for counted in (overall, tally):
                setattr(counted, name, getattr(counted, name) + number)
    departments = sorted(by_department.values(), key=lambda t: (t.percent(t.joined), t.name))
    return Overview(overall, departments)


_TALLIED: Final = {
    "students": "students",
    "members": "members",
    "bound": "bound",
    f"progress {Progress.JOINED.value}": "joined",
    f"progress {Progress.PENDING.value}": "pending",
    f"progress {Progress.REFUSED.value}": "refused",
    f"progress {Progress.DISABLED.value}": "disabled",
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One period of the chart: its label, bindings and follows."""

    label: str
    bindings: int
    follows: int


def activity(records: Iterable[AuditRecord], now: float, *, hourly: bool) -> list[Bar]:
    """Bindings and follows per day (the last CHART_DAYS days) or per hour (the last CHART_HOURS),
    in campus time, oldest first."""
    # Periods counted in whole seconds of campus time (no daylight saving): no datetime per record.
    period = 3600 if hourly else 24 * 3600
    count = CHART_HOURS if hourly else CHART_DAYS
    offset = int(_OFFSET.total_seconds())
    latest = (int(now) + offset) // period
    first = latest - count + 1
    bindings: Counter[int] = Counter()
    follows: Counter[int] = Counter()
    for record in records:
        index = (int(record.at) + offset) // period
        if index < first:
            continue
        if record.action is AuditAction.BIND:
            bindings[index] += 1
        elif record.action is AuditAction.FOLLOW:
            follows[index] += 1
    label = "%H时" if hourly else "%m-%d"
    bars = []
    for index in range(first, latest + 1):
        start = dt.datetime.fromtimestamp(index * period - offset, CAMPUS_TZ)
        bars.append(Bar(start.strftime(label), bindings[index], follows[index]))
    return bars


CHASE_COLUMNS: Final = ("学号", "姓名", "院系", "状态", "最近错误")


def chase_csv(rows: Iterable[StudentRow], department: str | None) -> bytes:
    """The students of a 院系 (or all) who have not joined, as CSV in UTF-8 with a BOM (so that
    Excel on a Chinese Windows opens it as Chinese); no phones."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CHASE_COLUMNS)
    for row in rows:
        if row.progress is Progress.JOINED or (department is not None and row.department != department):
            continue
        writer.writerow(
            [
                _cell(row.member_id),
                _cell(row.name),
                _cell(row.department),
                row.progress.label,
                row.last_error or "",
            ]
        )
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _cell(text: str) -> str:
    # A cell that a spreadsheet would read as a formula is kept as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
