"""The school directory (学校通讯录系统) import: a CSV of 学号, 姓名, 院系 and 手机, all or nothing.

Spreadsheets in China save CSV as UTF-8 (with or without a BOM) or as GB18030 (Excel's "CSV" on
a Chinese Windows); both are read. Every bad row is reported with its line number and nothing is
written unless every row is good; the store's bulk upsert then writes them in one transaction.
A row is one line with as many cells as the header: a quoted cell that runs over a line break is
a stray quote that would swallow the rows after it. Phones are checked and stored as their 11
digits, never echoed in a report (masked when a report must name one), and one phone belongs to
one student unless the operator allows shared phones.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from handlers.core.binding import DirectoryEntry
from handlers.core.phone import InvalidPhone, Phone, mask_phone
from handlers.usecases.contracts import Store

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
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Embeddings, overrides and isolates: they reorder how a name shows on the pages."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A bad row: its line number in the file (the header is line 1) and what is wrong with it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"第 {self.line} 行：{self.message}"


@dataclass(frozen=True, slots=True)
class ParsedDirectory:
    """The good entries of a file, the problems of its bad rows, and warnings that do not stop it."""

    encoding: str
    entries: tuple[DirectoryEntry, ...]
    problems: tuple[RowProblem, ...]
    warnings: tuple[RowProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import read and wrote; written is 0 on a dry run or when any row is bad."""

    encoding: str
    rows: int
    with_phone: int
    written: int
    dry_run: bool
    problems: tuple[RowProblem, ...]
    warnings: tuple[RowProblem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every row was good."""
        return not self.problems

    def lines(self) -> list[str]:
        """The report, one line each, for the command line."""
        out = [f"编码 {self.encoding}，有效记录 {self.rows} 条（其中有手机号 {self.with_phone} 条）"]
        out.extend(f"警告：{warning}" for warning in self.warnings)
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


def parse_directory(data: bytes, *, allow_shared_phones: bool = False) -> ParsedDirectory:
    """Read a directory CSV; each bad row becomes a RowProblem (a shared phone a warning, if allowed)."""
    try:
        text, encoding = decode(data)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = RowProblem(line, "文件编码无法识别，请另存为 UTF-8 或 GB18030 编码的 CSV 文件")
        return ParsedDirectory("unknown", (), (problem,))
    reader = csv.reader(io.StringIO(text, newline=""))
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
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
    warnings: list[RowProblem] = []
    first_line: dict[str, int] = {}
    phone_line: dict[str, tuple[int, str]] = {}
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
        if end > start:
            problems.append(RowProblem(start, _spans_lines(start, end, last=last_line)))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(RowProblem(start, f"该行有 {len(row)} 个单元格，表头有 {len(header)} 列"))
            continue
        cells = {field: row[index].strip() for field, index in positions.items()}
        entry, wrong = _entry(cells)
        if entry is not None and entry.member_id in first_line:
            wrong = [*wrong, f"学号 {entry.member_id} 与第 {first_line[entry.member_id]} 行重复"]
        shared: str | None = None
        if entry is not None and entry.phone and entry.phone in phone_line:
            other_line, other_id = phone_line[entry.phone]
            shared = (
                f"手机号 {mask_phone(entry.phone)} 与第 {other_line} 行（学号 {other_id}）相同："
                "一个手机号只能绑定一名学生"
            )
            if not allow_shared_phones:
                wrong = [*wrong, shared]
        if wrong or entry is None:
            problems.extend(RowProblem(start, message) for message in wrong)
            continue
        if shared is not None:
            warnings.append(RowProblem(start, shared))
        first_line[entry.member_id] = start
        if entry.phone:
            phone_line.setdefault(entry.phone, (start, entry.member_id))
        entries.append(entry)
    if not entries and not problems:
        problems.append(RowProblem(1, "文件中没有学生记录"))
    return ParsedDirectory(encoding, tuple(entries), tuple(problems), tuple(warnings))


async def import_directory(
    store: Store, data: bytes, *, dry_run: bool = False, allow_shared_phones: bool = False
) -> ImportReport:
    """Check a directory CSV and, unless dry_run or any row is bad, write every entry at once."""
    parsed = parse_directory(data, allow_shared_phones=allow_shared_phones)
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
        warnings=parsed.warnings,
    )


def _spans_lines(start: int, end: int, *, last: int) -> str:
    where = "直到文件末尾" if end >= last else f"到第 {end} 行"
    return (
        f"引号内的单元格从本行一直延续{where}，后面的行被并入了这一行。"
        "请检查本行是否多了或少了一个英文双引号（\"）"
    )


def _control(text: str) -> str | None:
    """The first control or bidi character in text, as U+XXXX, or None."""
    for char in text:
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            return f"U+{ord(char):04X}"
    return None


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
    member_id, name, department = cells["student_id"], cells["name"], cells["department"]
    if not member_id:
        wrong.append("学号为空")
    elif not _STUDENT_ID.match(member_id):
        wrong.append("学号只能包含字母、数字和 _-@.，且不超过 64 个字符")
    for title, text in (("姓名", name), ("院系", department)):
        control = _control(text)
        if not text:
            wrong.append(f"{title}为空")
        elif len(text) > _MAX_TEXT:
            wrong.append(f"{title}超过 {_MAX_TEXT} 个字符")
        elif control is not None:
            wrong.append(f"{title}含有控制字符 {control}（不可见字符或文字方向控制符），请删除后重新导入")
    phone: Phone | None = None
    if cells["phone"]:
        try:
            phone = Phone.parse(cells["phone"])
        except InvalidPhone:
            wrong.append("手机号格式不正确（应为 11 位大陆手机号，可带 +86、空格或短横线）")
    if wrong:
        return (DirectoryEntry(member_id, name, department, None) if member_id else None), wrong
    return DirectoryEntry(member_id, name, department, phone), []
