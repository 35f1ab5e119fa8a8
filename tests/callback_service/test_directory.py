"""The school directory import: encodings, both header spellings, a dry run, bad rows, all or nothing."""

from __future__ import annotations

import asyncio
import re
import string
from pathlib import Path

import pytest

from callback_service.directory import Wording, import_directory, parse_directory
from callback_service.ops.cli import main
from callback_service.store import open_store
from handlers.core.binding import DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.callback_service.test_qr import ENV

GOOD = (
    "学号,姓名,院系,手机\n"
    "2021001,张三,机械与汽车工程学院,138 0000 0001\n"
    "2021002,李四,电子电气工程学院,\n"
    '2021003,"王五, 小名",管理学院,+86-138-0000-0003\n'
)
EXPECTED = [
    DirectoryEntry("2021001", "张三", "机械与汽车工程学院", Phone("13800000001")),
    DirectoryEntry("2021002", "李四", "电子电气工程学院", None),
    DirectoryEntry("2021003", "王五, 小名", "管理学院", Phone("13800000003")),
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
    # GB18030 as the operator names it: 学号 and 学院 in GB18030 happen to hold UTF-8 multi-byte sequences.
    report = await import_directory(sqlite_store, data, encoding="gb18030" if encoding == "GB18030" else "auto")
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
    assert report.lines()[-1].startswith("dry run")


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
    report = await import_directory(sqlite_store, data, encoding="gb18030")
    assert not report.ok
    assert report.written == 0
    assert [(p.line, p.message[:14]) for p in report.problems] == [
        (3, "the phone (手机)"),
        (4, "a quoted cell "),
        (6, "no student id "),
        (8, "student id 202"),
        (9, "no name (姓名)"),
        (9, "no department "),
        (10, "the student id"),
    ]
    assert "already on line 2" in report.problems[3].message
    assert "to line 5" in report.problems[1].message
    assert "12345" not in "\n".join(report.lines())
    assert str(report.problems[0]).startswith("line 3: ")
    assert "nothing imported" in report.lines()[-1]
    assert await sqlite_store.directory_count() == 0


async def test_an_import_replaces_entries_by_student_id(sqlite_store: Store) -> None:
    await import_directory(sqlite_store, GOOD.encode())
    again = "学号,姓名,院系,手机\n2021002,李四,电子电气工程学院,13800000002\n".encode()
    assert (await import_directory(sqlite_store, again)).written == 1
    assert await sqlite_store.directory_get("2021002") == DirectoryEntry(
        "2021002", "李四", "电子电气工程学院", Phone("13800000002")
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
    assert "to the end of the file" in report.problems[0].message
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
    assert "to line 3" in report.problems[0].message
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
    assert [(p.line, p.message) for p in report.problems] == [(3, f"{cells} cell(s), but the header has 4 columns")]
    assert await sqlite_store.directory_count() == 0


@pytest.mark.parametrize(
    ("name", "department", "where", "code"),
    [
        ("张\x00三", "机械学院", "name", "U+0000"),
        ("张三\x07", "机械学院", "name", "U+0007"),
        ("张三", "机械\x1b学院", "department", "U+001B"),
        ("张三", "机械\x85学院", "department", "U+0085"),
        ("\u202e三张", "机械学院", "name", "U+202E"),
        ("张三", "\u202a机械学院", "department", "U+202A"),
        ("张三", "机械\u2066学院\u2069", "department", "U+2066"),
        # Zero-width and bidi marks, a byte order mark inside a cell, and the rest of Unicode's Cf.
        ("张\u200b三", "机械学院", "name", "U+200B"),
        ("张三\u200f", "机械学院", "name", "U+200F"),
        ("张三", "\u061c机械学院", "department", "U+061C"),
        ("张\ufeff三", "机械学院", "name", "U+FEFF"),
        ("张\u200d三", "机械学院", "name", "U+200D"),
        ("张三\u00ad", "机械学院", "name", "U+00AD"),
        ("张三", "机械\U000e0041学院", "department", "U+E0041"),
        ("张三", "机械\u2028学院", "department", "U+2028"),
    ],
)
async def test_control_and_bidi_characters_in_names_are_refused(
    sqlite_store: Store, name: str, department: str, where: str, code: str
) -> None:
    data = f"学号,姓名,院系,手机\n2021820,乙,机械学院,\n2021821,{name},{department},\n".encode()
    report = await import_directory(sqlite_store, data)
    assert [p.line for p in report.problems] == [3]
    assert report.problems[0].message.startswith(f"the {where} ")
    assert f"character {code}," in report.problems[0].message
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
    assert "also on line 2" in message
    assert "2021001" in message
    assert "13800000001" not in "\n".join(report.lines())
    assert await sqlite_store.directory_count() == 0


async def test_shared_phones_are_allowed_with_a_warning(sqlite_store: Store) -> None:
    report = await import_directory(sqlite_store, SHARED.encode(), allow_shared_phones=True)
    assert report.ok
    assert report.written == 3
    assert [w.line for w in report.warnings] == [4]
    assert any(line.startswith("warning: line 4: ") and "138****0001" in line for line in report.lines())
    assert await sqlite_store.directory_count() == 3


async def test_full_width_phones_are_stored_as_ascii_and_other_scripts_refused(sqlite_store: Store) -> None:
    data = (
        "学号,姓名,院系,手机\n"
        "2021001,张三,机械学院,１３８０００００００１\n"
        "2021002,李四,机械学院,13800000٠٠2\n"
    ).encode()
    report = await import_directory(sqlite_store, data)
    assert [(p.line, p.message[:15]) for p in report.problems] == [(3, "the phone (手机) ")]
    fixed = data.decode().replace("13800000٠٠2", "13８00000001").encode()
    report = await import_directory(sqlite_store, fixed)
    assert [p.line for p in report.problems] == [3]
    assert "also on line 2" in report.problems[0].message  # the same phone, in another width
    report = await import_directory(sqlite_store, data.decode().replace("13800000٠٠2", "").encode())
    assert report.ok
    assert await sqlite_store.directory_get("2021001") == DirectoryEntry("2021001", "张三", "机械学院", Phone("13800000001"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        ("学号,姓名,手机\n2021001,张三,\n".encode(), "the header lacks the column(s) 院系/department"),
        ("学号,姓名,院系,手机\n\n".encode(), "holds no student"),
        (b"\xff\xfe\x00\x00\x81\x30", "neither UTF-8 (byte 0 of the file (0xFF), line 1"),
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
    assert main(["directory", "import", str(good), "--dry-run", "--encoding", "gb18030"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert asyncio.run(_count(settings_env)) == 0
    assert main(["directory", "import", str(good), "--encoding", "gb18030"]) == 0
    assert "3 row(s) imported" in capsys.readouterr().out
    assert asyncio.run(_count(settings_env)) == 3

    bad = tmp_path / "bad.csv"
    bad.write_text("学号,姓名,院系,手机\n2021005,周八,管理学院,1234\n", encoding="utf-8")
    assert main(["directory", "import", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "line 2: the phone (手机) is not a mainland mobile number" in out
    assert asyncio.run(_count(settings_env)) == 3

    shared = tmp_path / "shared.csv"
    shared.write_text(SHARED, encoding="utf-8")
    assert main(["directory", "import", str(shared)]) == 1
    assert "line 4: phone 138****0001 is also on line 2" in capsys.readouterr().out
    assert main(["directory", "import", str(shared), "--allow-shared-phones"]) == 0
    out = capsys.readouterr().out
    assert "warning: line 4: " in out
    assert "3 row(s) imported" in out

    assert main(["directory", "import", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


# A UTF-8 file but for one byte: the 0xA0 of a Windows-1252 no-break space in line 3. The whole file
# also decodes as GB18030, into 寮犱笁 for 张三: read so, it would be imported and sent to WeCom.
MIXED = (
    "学号,姓名,院系,手机\n"
    "2021001,张三,机械学院,13800000001\n"
).encode() + b"2021002,Li\xa0Ming,\xe6\x9c\xba\xe6\xa2\xb0\xe5\xad\xa6\xe9\x99\xa2,\n"
# GB18030 with no UTF-8 multi-byte sequence in it: English headers and departments, names that happen
# not to form any (学号 or 学院 would: their GB18030 bytes read as UTF-8 ѧ and Ժ).
GB_ONLY = (
    "student id,name,department,phone\n"
    "2021001,张三,Mechanical Engineering,13800000001\n"
    "2021002,李四,Management,\n"
).encode("gb18030")


def _import(tmp_path: Path, data: bytes, *args: str) -> int:
    path = tmp_path / "students.csv"
    path.write_bytes(data)
    return main(["directory", "import", str(path), *args])


def test_a_utf8_file_with_one_stray_byte_is_refused_naming_its_line_and_offset(
    settings_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert MIXED.decode("gb18030").count("寮犱笁") == 1  # the mojibake that main imported
    assert _import(tmp_path, MIXED) == 1
    out = capsys.readouterr().out
    offset = MIXED.index(b"Li\xa0") + 2
    assert f"line 3: byte {offset} of the file (0xA0) does not decode as UTF-8" in out
    assert "寮犱笁" not in out
    assert out.startswith("encoding undecided: the file is not read\n")
    assert "nothing imported" in out
    assert asyncio.run(_count(settings_env)) == 0
    # Forced to GB18030 it would read; the operator who forces it is shown what it reads as.
    assert "(read so, it begins 瀛﹀彿" in out


def test_gb18030_is_read_when_asked_and_refused_when_its_bytes_read_as_utf8(
    settings_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = GOOD.encode("gb18030")
    assert _import(tmp_path, data) == 1
    out = capsys.readouterr().out
    assert "line 1: byte 2 of the file (0xBA) does not decode as UTF-8, though bytes 0 to 1 (line 1)" in out
    assert "if all of it is GB18030 (read so, it begins 学号), import it with --encoding gb18030" in out
    assert asyncio.run(_count(settings_env)) == 0
    assert _import(tmp_path, data, "--encoding", "gb18030") == 0
    assert "encoding GB18030: 3 good row(s)" in capsys.readouterr().out
    assert asyncio.run(_entries_at(settings_env)) == EXPECTED


@pytest.mark.parametrize(
    ("data", "encoding"), [(GOOD.encode(), "UTF-8"), (b"\xef\xbb\xbf" + GOOD.encode(), "UTF-8 (BOM)")]
)
def test_utf8_files_with_and_without_a_bom_are_read_as_utf8(
    settings_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, encoding: str
) -> None:
    # Even when the operator says gb18030: a file that is UTF-8 throughout is UTF-8.
    for args in ((), ("--encoding", "gb18030")):
        assert _import(tmp_path, data, *args) == 0
        assert f"encoding {encoding}: 3 good row(s)" in capsys.readouterr().out
        assert asyncio.run(_entries_at(settings_env)) == EXPECTED


def test_gb18030_without_any_utf8_sequence_is_read_as_gb18030(
    settings_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(tmp_path, GB_ONLY) == 0
    assert "encoding GB18030: 2 good row(s)" in capsys.readouterr().out
    assert asyncio.run(_entries_at(settings_env))[:2] == [
        DirectoryEntry("2021001", "张三", "Mechanical Engineering", Phone("13800000001")),
        DirectoryEntry("2021002", "李四", "Management", None),
    ]


@pytest.mark.parametrize(
    ("data", "args", "message"),
    [
        # GB18030 forced: its first byte that does not decode.
        (GOOD.encode("gb18030") + b"2021009,\x81,Management,\n", ("--encoding", "gb18030"),
         f"line 5: byte {len(GOOD.encode('gb18030')) + 8} of the file (0x81) does not decode as GB18030"),
        # UTF-8 forced: a GB18030 file is refused, not guessed.
        (GB_ONLY, ("--encoding", "utf-8"), "line 2: byte 41 of the file (0xD5) does not decode as UTF-8"),
        # Neither: each encoding's first failure is named.
        (b"student id,name,department,phone\n2021001,\xff,x,\n", (),
         "line 2: the file is neither UTF-8 (byte 41 of the file (0xFF), line 2, does not decode)"
         " nor GB18030 (byte 41 of the file (0xFF), line 2"),
        # A UTF-8 byte order mark, then GB18030 forced: not GB18030.
        (b"\xef\xbb\xbf" + GOOD.encode("utf-8") + b"\xff", ("--encoding", "gb18030"),
         "line 1: the file starts with UTF-8's byte order mark"),
    ],
)
def test_files_that_do_not_decode_are_refused_with_line_and_offset(
    settings_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, args: tuple[str, ...],
    message: str,
) -> None:
    assert _import(tmp_path, data, *args) == 1
    assert message in capsys.readouterr().out
    assert asyncio.run(_count(settings_env)) == 0


async def _entries_at(url: str) -> list[DirectoryEntry | None]:
    store = await open_store(url)
    try:
        return await _entries(store)
    finally:
        await store.close()


def test_every_message_has_both_wordings_with_the_same_values() -> None:
    formatter = string.Formatter()
    for wording in Wording:
        english, chinese = wording.value
        fields = [{name for _, name, _, _ in formatter.parse(text) if name} for text in (english, chinese)]
        assert fields[0] == fields[1], wording
        assert bool(english) == bool(chinese), wording
        assert not re.search(r"[\u4e00-\u9fff]", english.replace("学号", "").replace("姓名", "")
                             .replace("院系", "").replace("手机", "")), wording
        assert not re.search(r"\b(the|a|is|of|no)\b", chinese), wording


async def test_a_report_reads_in_either_wording(sqlite_store: Store) -> None:
    data = "学号,姓名,院系,手机\n2021001,,管理学院,\n2021001,张三,管理学院,12345\n".encode()
    report = await import_directory(sqlite_store, data)
    assert report.lines() == [
        "encoding UTF-8: 0 good row(s), 0 with a phone",
        "line 2: no name (姓名)",
        "line 3: the phone (手机) is not a mainland mobile number (11 digits; +86, spaces, dashes are fine)",
        "2 problem(s): nothing imported; fix the file and import it again",
    ]
    assert report.lines("zh") == [
        "编码 UTF-8：有效记录 0 条，其中有手机号 0 条",
        "第 2 行：缺少姓名",
        "第 3 行：手机号不是中国大陆的手机号码（11 位数字；可带 +86、空格或短横线）",
        "发现 2 处错误：没有导入任何记录；请修正文件后重新导入",
    ]
    assert report.problems[0].chinese == "缺少姓名"


async def test_the_chinese_wording_names_a_byte_by_its_offset_not_as_an_ordinal(sqlite_store: Store) -> None:
    # Excel's GB18030 file read as UTF-8: 学 (D1 A7) reads as one UTF-8 character, 号 (BA C5) does not.
    report = await import_directory(sqlite_store, GOOD.encode("gb18030"))
    [problem] = report.problems
    assert problem.chinese.startswith("文件中偏移量 2 处的字节（0xBA）不是有效的 UTF-8 编码，但偏移量 0 至 1 的字节")
    assert "第 0" not in problem.chinese  # an ordinal from 0 reads as nonsense in Chinese
