"""The console's arithmetic, without I/O: where a student stands, who is stuck on what, the counts,
the chart's periods in campus time, and the chase list's CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

from callback_service.admin import campaign
from callback_service.admin.campaign import Progress, Stuck
from callback_service.admin.chart import NARROW, lay_out
from handlers.core.binding import AuditAction, AuditRecord, Binding, BindingState, DirectoryEntry
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import Phone

NOW = dt.datetime(2026, 12, 7, 10, 30, tzinfo=campaign.CAMPUS_TZ).timestamp()


def record(member_id: str, action: AuditAction, detail: str = "", *, at: float = NOW - 60) -> AuditRecord:
    return AuditRecord(1, at, member_id, "bind-page 10.0.0.1", action, member_id, "138****0001", detail)


def binding(
    member_id: str, state: BindingState, *, updated_at: float = NOW - 3600, lease: float | None = None
) -> Binding:
    return Binding(member_id, Phone.parse("13800000001"), state, None, lease, None, updated_at)


def test_the_error_of_each_refusal_record() -> None:
    cases = {
        "phone_taken: store I1, held by 2021001": Stuck.PHONE_TAKEN,
        "phone_taken: wecom 60104: mobile belongs to another member": Stuck.PHONE_TAKEN,
        "wecom 60104: mobile belongs to another member": Stuck.PHONE_TAKEN,
        "account_followed: store I3": Stuck.FOLLOWED,
        "member_joined: wecom: the member is activated (status 1)": Stuck.FOLLOWED_IN_WECOM,
        "not_in_directory: member in neither WeCom nor the directory": Stuck.NOT_IN_DIRECTORY,
        "member_disabled: wecom: the member's status is 2": Stuck.DISABLED,
        "member_quit: wecom: the member's status is 5": Stuck.QUIT,
        "mobile_refused: wecom 60103: mobile refused": Stuck.MOBILE_REFUSED,
        "I4: member followed by another openid": None,
    }
    for detail, stuck in cases.items():
        assert campaign.stuck_of(record("m", AuditAction.CONFLICT, detail)) is stuck, detail
    assert campaign.stuck_of(record("m", AuditAction.BIND, "phone_taken: x")) is None
    assert (
        campaign.holder_of(record("m", AuditAction.CONFLICT, "phone_taken: store I1, held by 2021001"))
        == "2021001"
    )
    assert campaign.holder_of(record("m", AuditAction.CONFLICT, "phone_taken: wecom 60104")) is None


def test_a_student_bound_since_the_refusal_is_no_longer_stuck() -> None:
    refusals = [
        record("a", AuditAction.CONFLICT, "phone_taken: store I1, held by z", at=NOW - 500),
        record("a", AuditAction.CONFLICT, "phone_taken: store I1, held by z", at=NOW - 400),
        record("b", AuditAction.CONFLICT, "account_followed: store I3", at=NOW - 300),
        record("c", AuditAction.CONFLICT, "not_in_directory: x", at=NOW - 200),
    ]
    bindings = {
        "b": binding("b", BindingState.FOLLOWED, updated_at=NOW - 9000),  # followed before: still stuck
        "c": binding("c", BindingState.BOUND, updated_at=NOW - 100),  # bound after: not stuck
    }
    stuck = campaign.stuck_students(refusals, bindings)
    assert [(s.member_id, s.stuck, s.times, s.holder) for s in stuck] == [
        ("b", Stuck.FOLLOWED, 1, None),
        ("a", Stuck.PHONE_TAKEN, 2, "z"),
    ]
    assert (stuck[1].first_at, stuck[1].last_at) == (NOW - 500, NOW - 400)


def test_where_each_student_stands_wecoms_word_first() -> None:
    activated = MemberSeen("m", MemberStatus.ACTIVATED, NOW, "sync")
    disabled = MemberSeen("m", MemberStatus.DISABLED, NOW, "sync")
    assert campaign.progress_of(None, activated, None, NOW) is Progress.JOINED
    assert campaign.progress_of(binding("m", BindingState.FOLLOWED), None, None, NOW) is Progress.JOINED
    assert campaign.progress_of(binding("m", BindingState.BOUND), disabled, None, NOW) is Progress.DISABLED
    assert campaign.progress_of(binding("m", BindingState.BOUND), None, None, NOW) is Progress.BOUND
    live = binding("m", BindingState.PENDING, lease=NOW + 10)
    assert campaign.progress_of(live, None, None, NOW) is Progress.PENDING
    expired = binding("m", BindingState.PENDING, lease=NOW - 10)
    assert campaign.progress_of(expired, None, None, NOW) is Progress.NOT_STARTED
    refused = campaign.StuckStudent("m", Stuck.PHONE_TAKEN, NOW, NOW, 1, None, None)
    assert campaign.progress_of(None, None, refused, NOW) is Progress.REFUSED


def test_counts_overall_and_by_department_the_furthest_behind_first() -> None:
    directory = [
        DirectoryEntry("a", "甲", "管理学院", None),
        DirectoryEntry("b", "乙", "管理学院", None),
        DirectoryEntry("c", "丙", "化学学院", None),
    ]
    bindings = {"a": binding("a", BindingState.FOLLOWED), "c": binding("c", BindingState.BOUND)}
    seen = {
        "a": MemberSeen("a", MemberStatus.ACTIVATED, NOW, "sync"),
        "b": MemberSeen("b", MemberStatus.QUIT, NOW, "sync"),
        "c": MemberSeen("c", MemberStatus.NOT_ACTIVATED, NOW, "sync"),
        "x": MemberSeen("x", MemberStatus.ACTIVATED, NOW, "sync"),  # not in the directory
    }
    rows = campaign.student_rows(directory, bindings, seen, [], NOW)
    overview = campaign.overview(rows, bindings, seen)
    o = overview.overall
    assert (o.students, o.members, o.bound, o.joined, o.not_joined) == (3, 2, 2, 1, 2)
    assert o.percent(o.joined) == 33
    assert [(t.name, t.joined, t.students) for t in overview.departments] == [
        ("化学学院", 0, 1),
        ("管理学院", 1, 2),
    ]


def test_bindings_and_follows_per_day_and_per_hour_in_campus_time() -> None:
    # 23:30 UTC on the 6th is 07:30 on the 7th in China: today, not yesterday.
    late = dt.datetime(2026, 12, 6, 23, 30, tzinfo=dt.UTC).timestamp()
    records = [
        record("a", AuditAction.BIND, at=late),
        record("a", AuditAction.FOLLOW, at=late + 60),
        record("b", AuditAction.BIND, at=NOW - 25 * 3600),
        record("c", AuditAction.BIND, at=NOW - 40 * 24 * 3600),  # outside the chart
    ]
    daily = campaign.activity(records, NOW, hourly=False)
    assert len(daily) == campaign.CHART_DAYS
    assert (daily[-1].label, daily[-1].bindings, daily[-1].follows) == ("12-07", 1, 1)
    assert (daily[-2].label, daily[-2].bindings) == ("12-06", 1)
    assert sum(bar.bindings for bar in daily) == 2
    hourly = campaign.activity(records, NOW, hourly=True)
    assert len(hourly) == campaign.CHART_HOURS
    assert hourly[-1].label == "10时"
    assert [bar.label for bar in hourly if bar.bindings] == ["09时", "07时"]


def test_the_chart_scales_to_a_round_top_and_labels_the_latest_period() -> None:
    bars = [campaign.Bar(f"{day:02d}", day, 0) for day in range(1, 15)]
    chart = lay_out(bars)
    assert [g.value for g in chart.gridlines] == [0, 5, 10, 15, 20]
    tallest = chart.columns[-1]
    assert tallest.bind_y < chart.columns[0].bind_y
    assert tallest.label == "14"
    assert tallest.bind_height == round(chart.baseline - tallest.bind_y, 1)
    narrow = lay_out(bars, width=NARROW)
    assert sum(1 for c in narrow.columns if c.label) < sum(1 for c in chart.columns if c.label)
    assert lay_out([]).columns == []


def test_the_chase_list_is_utf8_with_a_bom_without_the_joined_or_formulas() -> None:
    rows = [
        campaign.StudentRow("a", "甲", "管理学院", Progress.JOINED, None),
        campaign.StudentRow("b", '=HYPERLINK("x")', "管理学院", Progress.REFUSED, Stuck.PHONE_TAKEN.label),
        campaign.StudentRow("c", "丙", "化学学院", Progress.NOT_STARTED, None),
    ]
    body = campaign.chase_csv(rows, "管理学院")
    assert body.startswith(b"\xef\xbb\xbf")
    parsed = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    assert parsed == [
        ["学号", "姓名", "院系", "状态", "最近错误"],
        ["b", '\'=HYPERLINK("x")', "管理学院", "绑定被拒绝", "2.1 手机号已绑定其他账号"],
    ]
    assert len(list(csv.reader(io.StringIO(campaign.chase_csv(rows, None)[3:].decode())))) == 3
