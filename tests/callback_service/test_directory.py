"""The school directory import: encodings, both header spellings, a dry run, bad rows, all or nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callback_service.ops.cli import main
from callback_service.ops.directory import import_directory, parse_directory
from callback_service.store import open_store
from handlers.core.binding import DirectoryEntry
from handlers.usecases.contracts import Store
from tests.callback_service.test_qr import ENV

GOOD = (
    "学号,姓名,院系,手机\n"
    "2021001,张三,机械与汽车工程学院,138 0000 0001\n"
    "2021002,李四,电子电气工程学院,\n"
    '2021003,"王五, 小名",管理学院,+86-138-0000-0003\n'
)
EXPECTED = [
    DirectoryEntry("2021001", "张三", "机械与汽车工程学院", "13800000001"),
    DirectoryEntry("2021002", "李四", "电子电气工程学院", None),
    DirectoryEntry("2021003", "王五, 小名", "管理学院", "13800000003"),
]


async def _entries(store: Store) -> list[DirectoryEntry | None]:
    return [await store.directory_get(member_id) for member_id in ("2021001", "2021002", "2021003")]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (GOOD.encode("utf-8"), "UTF-8"),
        (b"\xef\xbb\xbf" + GOOD.encode("utf-8"), "UTF-8 (BOM)"),
        (GOOD.encode("gb18030"), "GB18030"),
        (GOOD.replace("\n", "\r\n").encode("gb18030"), "GB18030"),
    ],
)
async def test_imports_every_encoding_spreadsheets_save(sqlite_store: Store, data: bytes, encoding: str) -> None:
    report = await import_directory(sqlite_store, data)
    assert report.ok
    assert (report.encoding, report.rows, report.with_phone, report.written) == (encoding, 3, 2, 3)
    assert await _entries(sqlite_store) == EXPECTED


async def test_english_headers_in_any_order_and_extra_columns(sqlite_store: Store) -> None:
    data = (
        "Phone, Student ID ,Name,Department,班级\n"
        "13800000001,2021001,张三,机械与汽车工程学院,1班\n"
        ",2021002,李四,电子电气工程学院,2班\n"
        "13800000003,2021003,\"王五, 小名\",管理学院,3班\n"
    ).encode()
    report = await import_directory(sqlite_store, data)
    assert report.ok, report.problems
    assert await _entries(sqlite_store) == EXPECTED


async def test_a_dry_run_checks_and_writes_nothing(sqlite_store: Store) -> None:
    report = await import_directory(sqlite_store, GOOD.encode(), dry_run=True)
    assert report.ok
    assert report.rows == 3
    assert report.written == 0
    assert await sqlite_store.directory_count() == 0
    assert "试运行" in report.lines()[-1]


async def test_bad_rows_are_reported_by_line_and_nothing_is_imported(sqlite_store: Store) -> None:
    data = (
        "学号,姓名,院系,手机\n"  # line 1
        "2021001,张三,机械与汽车工程学院,13800000001\n"  # 2: good
        "2021002,李四,电子电气工程学院,12345\n"  # 3: bad phone
        '2021003,"王五\n第二行",管理学院,\n'  # 4-5: a quoted cell over a line break
        ",赵六,管理学院,\n"  # 6: no student id
        "\n"  # 7: blank, skipped
        "2021001,张三,机械与汽车工程学院,\n"  # 8: duplicate of line 2
        "2021009,,,\n"  # 9: no name, no department
        "bad id!,钱九,管理学院,\n"  # 10: id unusable in WeCom
    ).encode("gb18030")
    report = await import_directory(sqlite_store, data)
    assert not report.ok
    assert report.written == 0
    assert [(p.line, p.message[:4]) for p in report.problems] == [
        (3, "手机号格"),
        (4, "引号内的"),
        (6, "学号为空"),
        (8, "学号 2"),
        (9, "姓名为空"),
        (9, "院系为空"),
        (10, "学号只能"),
    ]
    assert "与第 2 行重复" in report.problems[3].message
    assert "到第 5 行" in report.problems[1].message
    assert "12345" not in "\n".join(report.lines())
    assert str(report.problems[0]).startswith("第 3 行：")
    assert "未导入任何记录" in report.lines()[-1]
    assert await sqlite_store.directory_count() == 0


async def test_an_import_replaces_entries_by_student_id(sqlite_store: Store) -> None:
    await import_directory(sqlite_store, GOOD.encode())
    again = "学号,姓名,院系,手机\n2021002,李四,电子电气工程学院,13800000002\n".encode()
    assert (await import_directory(sqlite_store, again)).written == 1
    assert await sqlite_store.directory_get("2021002") == DirectoryEntry(
        "2021002", "李四", "电子电气工程学院", "13800000002"
    )
    assert await sqlite_store.directory_count() == 3


STRAY_QUOTE = (
    "学号,姓名,院系,手机\n"
    '2021821,甲,"机械学院,13800001821\n'
    "2021822,乙,机械学院,13800001822\n"
)


async def test_a_stray_quote_is_refused_with_its_line_and_nothing_is_imported(sqlite_store: Store) -> None:
    report = await import_directory(sqlite_store, STRAY_QUOTE.encode())
    assert not report.ok
    assert [p.line for p in report.problems] == [2]
    assert "直到文件末尾" in report.problems[0].message
    assert "13800001821" not in "\n".join(report.lines())
    assert "13800001822" not in "\n".join(report.lines())
    assert report.written == 0
    assert await sqlite_store.directory_count() == 0


async def test_a_stray_quote_closed_rows_later_is_refused(sqlite_store: Store) -> None:
    data = (
        "学号,姓名,院系,手机\n"
        '2021821,甲,"机械学院,13800001821\n'
        '2021822,乙,机械学院",13800001822\n'
        "2021823,丙,机械学院,13800001823\n"
    ).encode()
    report = await import_directory(sqlite_store, data)
    assert [p.line for p in report.problems] == [2]
    assert "到第 3 行" in report.problems[0].message
    assert await sqlite_store.directory_count() == 0


@pytest.mark.parametrize(
    ("row", "cells"),
    [
        ("2021821,甲,机械学院", 3),
        ("2021821,甲,机械学院,13800001821,多余", 5),
        ("2021821", 1),
    ],
)
async def test_a_row_with_more_or_fewer_cells_than_the_header_is_refused(
    sqlite_store: Store, row: str, cells: int
) -> None:
    data = f"学号,姓名,院系,手机\n2021820,乙,机械学院,13800001820\n{row}\n".encode()
    report = await import_directory(sqlite_store, data)
    assert [(p.line, p.message) for p in report.problems] == [(3, f"该行有 {cells} 个单元格，表头有 4 列")]
    assert await sqlite_store.directory_count() == 0


@pytest.mark.parametrize(
    ("name", "department", "where", "code"),
    [
        ("张\x00三", "机械学院", "姓名", "U+0000"),
        ("张三\x07", "机械学院", "姓名", "U+0007"),
        ("张三", "机械\x1b学院", "院系", "U+001B"),
        ("张三", "机械\x85学院", "院系", "U+0085"),
        ("\u202e三张", "机械学院", "姓名", "U+202E"),
        ("张三", "\u202a机械学院", "院系", "U+202A"),
        ("张三", "机械\u2066学院\u2069", "院系", "U+2066"),
    ],
)
async def test_control_and_bidi_characters_in_names_are_refused(
    sqlite_store: Store, name: str, department: str, where: str, code: str
) -> None:
    data = f"学号,姓名,院系,手机\n2021820,乙,机械学院,\n2021821,{name},{department},\n".encode()
    report = await import_directory(sqlite_store, data)
    assert [p.line for p in report.problems] == [3]
    assert report.problems[0].message.startswith(f"{where}含有控制字符 {code}")
    assert await sqlite_store.directory_count() == 0


SHARED = (
    "学号,姓名,院系,手机\n"
    "2021001,张三,机械学院,13800000001\n"
    "2021002,李四,机械学院,\n"
    "2021003,王五,管理学院,+86 138 0000 0001\n"
)


async def test_two_students_sharing_a_phone_are_refused_naming_both_lines(sqlite_store: Store) -> None:
    report = await import_directory(sqlite_store, SHARED.encode())
    assert not report.ok
    assert [p.line for p in report.problems] == [4]
    message = report.problems[0].message
    assert "138****0001" in message
    assert "第 2 行" in message
    assert "2021001" in message
    assert "13800000001" not in "\n".join(report.lines())
    assert await sqlite_store.directory_count() == 0


async def test_shared_phones_are_allowed_with_a_warning(sqlite_store: Store) -> None:
    report = await import_directory(sqlite_store, SHARED.encode(), allow_shared_phones=True)
    assert report.ok
    assert report.written == 3
    assert [w.line for w in report.warnings] == [4]
    assert any(line.startswith("警告：第 4 行") and "138****0001" in line for line in report.lines())
    assert await sqlite_store.directory_count() == 3


async def test_full_width_phones_are_stored_as_ascii_and_other_scripts_refused(sqlite_store: Store) -> None:
    data = (
        "学号,姓名,院系,手机\n"
        "2021001,张三,机械学院,１３８０００００００１\n"
        "2021002,李四,机械学院,13800000٠٠2\n"
    ).encode()
    report = await import_directory(sqlite_store, data)
    assert [(p.line, p.message[:5]) for p in report.problems] == [(3, "手机号格式")]
    fixed = data.decode().replace("13800000٠٠2", "13８00000001").encode()
    report = await import_directory(sqlite_store, fixed)
    assert [p.line for p in report.problems] == [3]
    assert "与第 2 行" in report.problems[0].message  # the same phone, in another width
    report = await import_directory(sqlite_store, data.decode().replace("13800000٠٠2", "").encode())
    assert report.ok
    assert await sqlite_store.directory_get("2021001") == DirectoryEntry("2021001", "张三", "机械学院", "13800000001")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "文件为空"),
        ("学号,姓名,手机\n2021001,张三,\n".encode(), "表头缺少列：院系/department"),
        ("学号,姓名,院系,手机\n\n".encode(), "没有学生记录"),
        (b"\xff\xfe\x00\x00\x81\x30", "编码无法识别"),
    ],
)
def test_files_that_are_not_a_directory(data: bytes, message: str) -> None:
    parsed = parse_directory(data)
    assert parsed.entries == ()
    assert len(parsed.problems) == 1
    assert message in parsed.problems[0].message


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WECOM_BIND_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("WECOM_BIND_STORE_URL", url)
    return url


async def _count(url: str) -> int:
    store = await open_store(url)
    try:
        return await store.directory_count()
    finally:
        await store.close()


def test_the_command_imports_dry_runs_and_reports(
    settings_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.csv"
    good.write_bytes(GOOD.encode("gb18030"))
    assert main(["directory", "import", str(good), "--dry-run"]) == 0
    assert "试运行" in capsys.readouterr().out
    assert asyncio.run(_count(settings_env)) == 0
    assert main(["directory", "import", str(good)]) == 0
    assert "已导入 3 条记录" in capsys.readouterr().out
    assert asyncio.run(_count(settings_env)) == 3

    bad = tmp_path / "bad.csv"
    bad.write_text("学号,姓名,院系,手机\n2021005,周八,管理学院,1234\n", encoding="utf-8")
    assert main(["directory", "import", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "第 2 行：手机号格式不正确" in out
    assert asyncio.run(_count(settings_env)) == 3

    shared = tmp_path / "shared.csv"
    shared.write_text(SHARED, encoding="utf-8")
    assert main(["directory", "import", str(shared)]) == 1
    assert "第 4 行：手机号 138****0001 与第 2 行" in capsys.readouterr().out
    assert main(["directory", "import", str(shared), "--allow-shared-phones"]) == 0
    out = capsys.readouterr().out
    assert "警告：第 4 行" in out
    assert "已导入 3 条记录" in out

    assert main(["directory", "import", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
