"""An existing organisation: members read from a CSV, by the stand-alone emulator and the demo."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sandbox.wecom_members import MembersFileError, parse_members, read_members
from sandbox.wecom_state import STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, STATUS_QUIT
from tests.support.processes import free_port, start_service, stop, wait_healthy

ORGANISATION = Path(__file__).resolve().parents[1] / "data" / "organisation.csv"
HEADER = "userid,name,department,mobile,status\n"


def test_members_are_read_with_their_status_departments_and_mobiles() -> None:
    organisation = read_members(ORGANISATION)
    by_id = {m.userid: m for m in organisation.members}
    assert [by_id[u].status for u in ("2019001", "2019002", "2019003", "2019004", "2019005")] == [
        STATUS_ACTIVE, STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, STATUS_QUIT
    ]
    assert by_id["2019002"].mobile is None
    assert by_id["T0001"].department == [4, 2]
    assert organisation.departments == {2, 3, 4}
    # An activated member of an export is played as one who joined through the WeCom app.
    assert by_id["2019001"].uses_wecom_app
    assert not by_id["2019004"].uses_wecom_app


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ("a,甲,2,,3\n", "line 2: status must be 1, 2, 4 or 5"),
        ("a,甲,2,,1\nA,乙,2,,1\n", "line 3: userid 'A' appears twice"),
        ("a,甲,x,,1\n", "line 2: department must be WeCom department ids"),
        ("a,甲,2,12345,1\n", "line 2: the mobile is not a mainland mobile number"),
        ("a,甲,2,13900000001,1\nb,乙,2,139 0000 0001,4\n", "line 3: the mobile is the same as line 2's"),
        (",甲,2,,1\n", "line 2: userid and name are required"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_loaded(rows: str, problem: str) -> None:
    with pytest.raises(MembersFileError, match=problem):
        parse_members(HEADER + rows)


def test_a_missing_column_is_named() -> None:
    with pytest.raises(MembersFileError, match="lacks status"):
        parse_members("userid,name,department,mobile\na,甲,2,\n")


def _json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _token(base: str, secret: str) -> str:
    token: str = _json(f"{base}/cgi-bin/gettoken?corpid=wwrehearsal&corpsecret={secret}")["access_token"]
    return token


def _wait_listening(base: str, process: Any) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the emulator exited with {process.returncode}")
        try:
            _json(f"{base}/_sandbox/state")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise AssertionError("the emulator did not listen in time")


def test_the_stand_alone_emulator_plays_the_organisation_of_a_file() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(
        ["--port", str(port), "--corp-id", "wwrehearsal", "--agent-id", "1000002",
         "--app-secret", "app-secret-rehearsal", "--contacts-secret", "contacts-secret-rehearsal",
         "--members", str(ORGANISATION), "--hidden-as-empty"],
        {}, command=(sys.executable, "-m", "sandbox.wecom"),
    )
    try:
        _wait_listening(base, process)
        contacts = _token(base, "contacts-secret-rehearsal")
        listed = _json(f"{base}/cgi-bin/user/list_id?access_token={contacts}", {"limit": 100})
        assert {row["userid"] for row in listed["dept_user"]} == {
            "2019001", "2019002", "2019003", "2019004", "2019005", "T0001"
        }
        app = _token(base, "app-secret-rehearsal")
        disabled = _json(f"{base}/cgi-bin/user/get?access_token={app}&userid=2019003")
        assert (disabled["status"], disabled["mobile"]) == (STATUS_DISABLED, "")  # hidden, answered ""
        joined_by_app = _json(f"{base}/cgi-bin/user/convert_to_openid?access_token={app}", {"userid": "2019001"})
        assert joined_by_app["errcode"] == 41054
    finally:
        stop(process)


def test_the_stand_alone_emulator_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "members.csv"
    bad.write_text(HEADER + "a,甲,2,,3\n", encoding="utf-8")
    process = start_service(
        ["--port", str(free_port()), "--corp-id", "ww", "--agent-id", "1", "--app-secret", "a",
         "--contacts-secret", "c", "--members", str(bad)],
        {}, command=(sys.executable, "-m", "sandbox.wecom"),
    )
    process.wait(timeout=20)
    _, stderr = stop(process)
    assert process.returncode != 0
    assert "line 2: status must be 1, 2, 4 or 5" in stderr
    assert "Traceback" not in stderr


def test_the_demo_plays_an_existing_organisation(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(
        ["demo", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path),
         "--wecom-members", str(ORGANISATION)], {},
    )
    try:
        wait_healthy(base, process)
        state = _json(base + "/sandbox/wecom/_sandbox/state")
    finally:
        stop(process)
    statuses = {m["userid"]: m["status"] for m in state["members"]}
    assert statuses["2019001"] == STATUS_ACTIVE
    assert statuses["2019005"] == STATUS_QUIT


def test_the_demo_refuses_a_bad_members_file(tmp_path: Path) -> None:
    bad = tmp_path / "members.csv"
    bad.write_text(HEADER + "a,甲,2,,3\n", encoding="utf-8")
    process = start_service(
        ["demo", "--port", str(free_port()), "--data-dir", str(tmp_path), "--wecom-members", str(bad)], {}
    )
    process.wait(timeout=20)
    _, stderr = stop(process)
    assert process.returncode == 2
    assert "--wecom-members" in stderr
    assert "line 2: status must be 1, 2, 4 or 5" in stderr
