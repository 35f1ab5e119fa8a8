"""The school directory (学校通讯录系统) import: a CSV of 学号, 姓名, 院系 and 手机, all or nothing.

Spreadsheets in China save CSV as UTF-8 (with or without a BOM) or as GB18030 (Excel's "CSV" on
a Chinese Windows); both are read. Every bad row is reported with its line number and nothing is
written unless every row is good; the store's bulk upsert then writes them in one transaction.
Phones are checked and stored as their 11 digits, and never echoed in a report.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from handlers.binding import DirectoryEntry
from handlers.contracts import Store
from handlers.phone import InvalidPhone, Phone

COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "student_id": ("学号", "student id", "student_id", "studentid"),
    "name": ("姓名", "name"),
    "department": ("院系", "department"),
    "phone": ("手机", "手机号", "phone", "mobile"),
}
"""Each field and the header spellings accepted for it (compared without case or surrounding blanks)."""
_STUDENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}\Z")
"""A student id must be usable as a WeCom userid."""
_MAX_TEXT: Final = 64


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A bad row: its line number in the file (the header is line 1) and what is wrong with it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"第 {self.line} 行：{self.message}"


@dataclass(frozen=True, slots=True)
class ParsedDirectory:
    """The good entries of a file and the problems of its bad rows."""

    encoding: str
    entries: tuple[DirectoryEntry, ...]
    problems: tuple[RowProblem, ...]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import read and wrote; written is 0 on a dry run or when any row is bad."""

    encoding: str
    rows: int
    with_phone: int
    written: int
    dry_run: bool
    problems: tuple[RowProblem, ...]

    @property
    def ok(self) -> bool:
        """True when every row was good."""
        return not self.problems

    def lines(self) -> list[str]:
        """The report, one line each, for the command line."""
        out = [f"编码 {self.encoding}，有效记录 {self.rows} 条（其中有手机号 {self.with_phone} 条）"]
        out.extend(str(problem) for problem in self.problems)
        if self.problems:
            out.append(f"发现 {len(self.problems)} 处错误：未导入任何记录，请修正后重新导入。")
        elif self.dry_run:
            out.append(f"试运行：文件无误，可导入 {self.rows} 条记录；未写入。")
        else:
            out.append(f"已导入 {self.written} 条记录。")
        return out


def decode(data: bytes) -> tuple[str, str]:
    """Return the text and the encoding of a CSV file: UTF-8 (BOM or not), else GB18030."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "UTF-8 (BOM)"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "GB18030"


def parse_directory(data: bytes) -> ParsedDirectory:
    """Read a directory CSV; each bad row becomes a RowProblem."""
    try:
        text, encoding = decode(data)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = RowProblem(line, "文件编码无法识别，请另存为 UTF-8 或 GB18030 编码的 CSV 文件")
        return ParsedDirectory("unknown", (), (problem,))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return ParsedDirectory(encoding, (), (RowProblem(1, "文件为空"),))
    except csv.Error as exc:
        return ParsedDirectory(encoding, (), (RowProblem(1, f"表头无法解析（{exc}）"),))
    positions, missing = _columns(header)
    if missing:
        names = "、".join("/".join(COLUMNS[field][:2]) for field in missing)
        return ParsedDirectory(encoding, (), (RowProblem(1, f"表头缺少列：{names}"),))
    entries: list[DirectoryEntry] = []
    problems: list[RowProblem] = []
    first_line: dict[str, int] = {}
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(RowProblem(start, f"无法解析（{exc}）"))
            break
        end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cells = {field: row[index].strip() if index < len(row) else "" for field, index in positions.items()}
        entry, wrong = _entry(cells)
        if entry is not None and entry.student_id in first_line:
            wrong = [*wrong, f"学号 {entry.student_id} 与第 {first_line[entry.student_id]} 行重复"]
        if wrong:
            problems.extend(RowProblem(start, message) for message in wrong)
            continue
        assert entry is not None
        first_line[entry.student_id] = start
        entries.append(entry)
    if not entries and not problems:
        problems.append(RowProblem(1, "文件中没有学生记录"))
    return ParsedDirectory(encoding, tuple(entries), tuple(problems))


async def import_directory(store: Store, data: bytes, *, dry_run: bool = False) -> ImportReport:
    """Check a directory CSV and, unless dry_run or any row is bad, write every entry at once."""
    parsed = parse_directory(data)
    written = 0
    if not parsed.problems and not dry_run:
        written = await store.directory_upsert(parsed.entries)
    return ImportReport(
        encoding=parsed.encoding,
        rows=len(parsed.entries),
        with_phone=sum(1 for entry in parsed.entries if entry.phone),
        written=written,
        dry_run=dry_run,
        problems=parsed.problems,
    )


def _columns(header: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    spelled = {spelling.casefold(): field for field, spellings in COLUMNS.items() for spelling in spellings}
    positions: dict[str, int] = {}
    for index, title in enumerate(header):
        field = spelled.get(" ".join(title.split()).casefold())
        if field is not None and field not in positions:
            positions[field] = index
    return positions, [field for field in COLUMNS if field not in positions]


def _entry(cells: Mapping[str, str]) -> tuple[DirectoryEntry | None, list[str]]:
    wrong: list[str] = []
    student_id, name, department = cells["student_id"], cells["name"], cells["department"]
    if not student_id:
        wrong.append("学号为空")
    elif not _STUDENT_ID.match(student_id):
        wrong.append("学号只能包含字母、数字和 _-@.，且不超过 64 个字符")
    if not name:
        wrong.append("姓名为空")
    elif len(name) > _MAX_TEXT:
        wrong.append(f"姓名超过 {_MAX_TEXT} 个字符")
    if not department:
        wrong.append("院系为空")
    elif len(department) > _MAX_TEXT:
        wrong.append(f"院系超过 {_MAX_TEXT} 个字符")
    phone: str | None = None
    if cells["phone"]:
        try:
            phone = Phone.parse(cells["phone"])
        except InvalidPhone:
            wrong.append("手机号格式不正确（应为 11 位大陆手机号，可带 +86、空格或短横线）")
    if wrong:
        return (DirectoryEntry(student_id, name, department, None) if student_id else None), wrong
    return DirectoryEntry(student_id, name, department, phone), []
