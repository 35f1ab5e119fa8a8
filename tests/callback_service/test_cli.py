"""The command line as an operator meets it: bad arguments, a missing store, a closed pipe, an unknown
student, the poster's settings and serve's output; each a real `wecom-bind` process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callback_service.store import open_store
from handlers.core.binding import Actor, AuditAction, DirectoryEntry
from handlers.core.phone import Phone
from tests.support.processes import free_port, run_command, start_service, stop, wait_healthy
from tests.support.world import service_env

STUDENT = Actor(who="2021001", source="127.0.0.1")
ADMIN = Actor(who="admin:ops", source="cli: ticket 42")


def _cli(store_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_command(service_env(9, store_url=store_url), *args, stdin=stdin)


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    """A store where 2021001 is in the directory and bound."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(url)
    try:
        await store.directory_upsert([DirectoryEntry("2021001", "张三", "管理学院", Phone("13800000001"))])
        await store.commit_claim(await store.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT))
    finally:
        await store.close()
    return url


async def _audit_count(url: str) -> int:
    store = await open_store(url)
    try:
        return len(await store.audit_list(limit=10_000))
    finally:
        await store.close()


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_audit_limit_below_one_is_a_clear_error(store_url: str, limit: str) -> None:
    result = _cli(store_url, "audit", "--limit", limit)
    assert result.returncode == 2
    assert "argument --limit" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("student", "export", "2021001\n2026-01-01 00:00:00Z  delete         member 2021002"),
        ("student", "erase", "2021001\r"),
        ("student", "erase", "2021001\u2028x"),
        ("student", "export", "2021001\x1b[2K"),
        ("binding", "show", "2021001\n"),
        ("binding", "release", "2021001\n", "--reason", "x"),
        ("audit", "--member", "2021001\n"),
        ("student", "export", "2021001", "--reason", "ticket 7\n2026-01-01 00:00:00Z  erase"),
    ],
)
async def test_ids_and_reasons_with_control_characters_are_refused_and_nothing_is_audited(
    store_url: str, args: tuple[str, ...]
) -> None:
    before = await _audit_count(store_url)
    result = _cli(store_url, *args)
    assert result.returncode == 2
    assert "not a member id" in result.stderr or "one line of printable text" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert await _audit_count(store_url) == before


async def test_audit_output_escapes_what_the_store_holds(store_url: str) -> None:
    # A record written before ids were checked, or by another path: it still prints as one line.
    store = await open_store(store_url)
    try:
        await store.audit_note(
            "x\n2026-01-01 00:00:00Z  delete         member 2021002", AuditAction.EXPORT, "a\rb", actor=ADMIN
        )
        records = len(await store.audit_list(limit=10_000))
    finally:
        await store.close()
    result = _cli(store_url, "audit")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == records
    assert "member x\\n2026-01-01 00:00:00Z  delete         member 2021002" in lines[0]
    assert lines[0].endswith("a\\rb")


@pytest.mark.parametrize(
    "args",
    [
        ("binding", "show", "2021001"),
        ("binding", "phone", "13800000001"),
        ("binding", "release", "2021001", "--reason", "x"),
        ("audit",),
        ("audit", "prune", "--before", "2000-01-01"),
        ("student", "export", "2021001"),
        ("student", "erase", "2021001"),
        ("inbox", "status"),
        ("inbox", "retry-dead"),
        ("reconcile",),
    ],
)
def test_a_command_on_a_store_file_that_does_not_exist_fails_naming_it_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    path = tmp_path / "typo" / "store.db"
    url = f"sqlite:///{path}"
    result = _cli(url, *args)
    assert result.returncode == 3
    assert f"no store at {url}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not path.exists()
    assert not path.parent.exists()


def test_the_directory_import_creates_the_store(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store.db"
    csv = tmp_path / "students.csv"
    csv.write_text("学号,姓名,院系,手机\n2021001,张三,管理学院,13800000001\n", encoding="utf-8")
    result = _cli(f"sqlite:///{path}", "directory", "import", str(csv))
    assert result.returncode == 0, result.stderr
    assert "1 row(s) imported" in result.stdout
    assert path.is_file()


async def test_export_and_erase_of_an_unknown_id_fail_and_audit_nothing(store_url: str) -> None:
    before = await _audit_count(store_url)
    for command in ("export", "erase"):
        result = _cli(store_url, "student", command, "2021009")
        assert result.returncode == 1
        assert "student 2021009: the store holds nothing about this id" in result.stderr
        assert result.stdout == ""
    assert await _audit_count(store_url) == before
    # A known student is still exported and erased, and then known by the audit records kept.
    assert _cli(store_url, "student", "erase", "2021001").returncode == 0
    again = _cli(store_url, "student", "export", "2021001")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["binding"] is None


async def _many_audit_records(url: str) -> None:
    store = await open_store(url)
    try:
        for n in range(400):
            await store.audit_note("2021001", AuditAction.EXPORT, f"data request {n}: " + "x" * 200, actor=ADMIN)
    finally:
        await store.close()


def test_export_into_a_pipe_closed_early_ends_without_a_traceback(store_url: str) -> None:
    # Enough audit records that the export outgrows the pipe's buffer: the reader's exit breaks it.
    asyncio.run(_many_audit_records(store_url))
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    env = clean | service_env(9, store_url=store_url)
    with subprocess.Popen(
        [sys.executable, "-m", "callback_service", "student", "export", "2021001"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline() == "{\n"  # as `| head -1` reads it
        process.stdout.close()
        stderr = process.stderr.read()
        code = process.wait(60)
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr
    assert stderr == ""
    assert code == 141  # as a command that SIGPIPE ends


def test_qrcode_needs_only_the_public_base_url(tmp_path: Path) -> None:
    env = {"WECOM_BIND_PUBLIC_BASE_URL": "https://bind.example.edu.cn/"}
    result = run_command(env, "qrcode")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("https://bind.example.edu.cn/bind")
    poster = tmp_path / "poster.svg"
    assert run_command(env, "qrcode", "--out", str(poster)).returncode == 0
    assert "https://bind.example.edu.cn/bind" in poster.read_text()
    # From the config file as well, the environment winning over it.
    config = tmp_path / "wecom-bind.toml"
    config.write_text('[wecom_bind]\npublic_base_url = "https://file.example.edu.cn"\n', encoding="utf-8")
    assert run_command({"WECOM_BIND_CONFIG": str(config)}, "qrcode").stdout.rstrip().endswith(
        "https://file.example.edu.cn/bind"
    )
    assert run_command({"WECOM_BIND_CONFIG": str(config)} | env, "qrcode").stdout.rstrip().endswith(
        "https://bind.example.edu.cn/bind"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WECOM_BIND_PUBLIC_BASE_URL: required setting is missing"),
        ({"WECOM_BIND_PUBLIC_BASE_URL": "bind.example.edu.cn"}, "WECOM_BIND_PUBLIC_BASE_URL: the public base URL"),
    ],
)
def test_qrcode_without_a_good_public_base_url_names_the_variable(env: dict[str, str], message: str) -> None:
    result = run_command(env, "qrcode")
    assert result.returncode == 2
    assert message in result.stderr
    assert "WECOM_BIND_TOKEN" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_serve_with_json_logs_prints_only_json_lines(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(port, store_url=f"sqlite:///{tmp_path / 'store.db'}") | {"WECOM_BIND_LOG_FORMAT": "json"}
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", process)
    finally:
        stdout, stderr = stop(process)
    assert stdout == ""
    lines = [json.loads(line) for line in stderr.splitlines()]  # each one JSON, or this fails
    assert any(line["message"] == f"serving on http://127.0.0.1:{port}" for line in lines)
    assert (tmp_path / "store.db").is_file()  # serve creates its store
