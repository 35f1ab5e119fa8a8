"""The school directory (学校通讯录系统) import: a CSV of 学号, 姓名, 院系 and 手机, all or nothing.

Spreadsheets in China save CSV as UTF-8 (with or without a BOM) or as GB18030 (Excel's "CSV" on
a Chinese Windows); both are read, and the encoding is decided once for the whole file, strictly:
UTF-8 when all of it decodes as UTF-8; GB18030 when the operator says so, or when the file holds no
UTF-8 multi-byte character at all and all of it decodes as GB18030; otherwise the file is refused,
naming the first byte that does not decode. A file that is UTF-8 but for one byte is thus never
read as GB18030, which would import every name in it as mojibake (张三 as 寮犱笁).
Every bad row is reported with its line number and nothing is
written unless every row is good; the store's bulk upsert then writes them in one transaction.
A row is one line with as many cells as the header: a quoted cell that runs over a line break is
a stray quote that would swallow the rows after it. Phones are checked and stored as their 11
digits, never echoed in a report (masked when a report must name one), and one phone belongs to
one student unless the operator allows shared phones.

Every message of the import is written once, in both its wordings, in Wording: English for the
command line, Chinese for the administrators' console.
"""

from __future__ import annotations

import csv
import enum
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from handlers.core.binding import DirectoryEntry
from handlers.core.member import USERID
from handlers.core.phone import InvalidPhone, Phone, mask_phone
from handlers.usecases.contracts import Directory

COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "student_id": ("学号", "student id", "student_id", "studentid"),
    "name": ("姓名", "name"),
    "department": ("院系", "department"),
    "phone": ("手机", "手机号", "phone", "mobile"),
}
"""Each field and the header spellings accepted for it (compared without case or surrounding blanks)."""
_MAX_TEXT: Final = 64
UNDECIDED: Final = "undecided"
"""The encoding of a refused file."""
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode's control and format characters and line separators: each is invisible, or reorders how
a name shows (bidi marks, embeddings, isolates), or joins or splits it unseen (U+200B, U+FEFF)."""


Language = Literal["en", "zh"]
"""A message's wording: English (the command line) or Chinese (the console)."""


class Wording(enum.Enum):
    """Each message of the import, as (English, Chinese) format strings: the one place for its words."""

    # An offset counts from 0, which 第 N 字节 (an ordinal, from 1) would misread: 偏移量 says offset.
    BYTE = ("byte {offset} of the file (0x{byte})", "文件中偏移量 {offset} 处的字节（0x{byte}）")
    NOT_UTF8 = ("{where} does not decode as UTF-8", "{where}不是有效的 UTF-8 编码")
    NOT_GB18030 = ("{where} does not decode as GB18030", "{where}不是有效的 GB18030 编码")
    BOM_NOT_GB18030 = (
        "the file starts with UTF-8's byte order mark: it is not GB18030",
        "文件以 UTF-8 的字节顺序标记（BOM）开头，不是 GB18030 编码",
    )
    NEITHER = (
        "the file is neither UTF-8 ({where}, line {line}, does not decode) nor GB18030 ({gb_where}, line"
        " {gb_line}, does not decode)",
        "文件既不是 UTF-8 编码（第 {line} 行的{where}无法解码），"
        "也不是 GB18030 编码（第 {gb_line} 行的{gb_where}无法解码）",
    )
    MIXED = (
        "{where} does not decode as UTF-8, though bytes {first} to {last} (line {first_line}) decode as a"
        " UTF-8 character: the file may mix two encodings, and is read as neither. Save it as UTF-8 again;"
        " or, if all of it is GB18030{sample}, import it with --encoding gb18030",
        "{where}不是有效的 UTF-8 编码，但偏移量 {first} 至 {last} 的字节（第 {first_line} 行）是一个"
        " UTF-8 字符：文件可能混用了两种编码，两种都无法正确读取{sample}。"
        "请用 Excel 或 WPS 把文件另存为“CSV UTF-8”后重新上传；若整个文件是 GB18030 编码（Excel 默认的"
        "“CSV（逗号分隔）”），且上面按 GB18030 读出的文字正确，请在上传时把“文件编码”选为 GB18030",
    )
    SAMPLE = (" (read so, it begins {text})", "（若按 GB18030 读取，开头是“{text}”）")
    NOTHING = ("", "")
    EMPTY = ("the file is empty", "文件是空的")
    HEADER_UNREADABLE = ("the header cannot be read ({error})", "无法读取表头（{error}）")
    HEADER_LACKS = ("the header lacks the column(s) {names}", "表头缺少以下列：{names}")
    UNREADABLE = ("cannot be read ({error})", "无法读取（{error}）")
    SPANS_TO_END = (
        "a quoted cell runs from this line to the end of the file, swallowing the lines after it: look"
        ' for a missing or extra double quote (") on this line',
        "一个带引号的单元格从本行一直延续到文件末尾，吞掉了后面各行："
        "请检查本行是否少了或多了一个双引号（\"）",
    )
    SPANS_TO_LINE = (
        "a quoted cell runs from this line to line {end}, swallowing the lines after it: look for a"
        ' missing or extra double quote (") on this line',
        "一个带引号的单元格从本行一直延续到第 {end} 行，吞掉了后面各行："
        "请检查本行是否少了或多了一个双引号（\"）",
    )
    CELLS = (
        "{cells} cell(s), but the header has {columns} columns",
        "本行有 {cells} 个单元格，但表头有 {columns} 列",
    )
    DUPLICATE_ID = (
        "student id {member_id} is already on line {other}",
        "学号 {member_id} 已在第 {other} 行出现",
    )
    SHARED_PHONE = (
        "phone {phone} is also on line {other} (student id {other_id}): one phone binds one student",
        "手机号 {phone} 也在第 {other} 行出现（学号 {other_id}）：一个手机号只能绑定一名学生",
    )
    NO_STUDENT = ("the file holds no student", "文件中没有学生记录")
    NO_ID = ("no student id (学号)", "缺少学号")
    BAD_ID = (
        "the student id (学号) may hold only letters, digits and _-@. (64 at most), as a WeCom userid",
        "学号只能由字母、数字和 _-@. 组成（最多 64 个字符），因为它要用作企业微信的账号（UserID）",
    )
    NAME = ("name (姓名)", "姓名")
    DEPARTMENT = ("department (院系)", "院系")
    NO_FIELD = ("no {field}", "缺少{field}")
    TOO_LONG = ("the {field} is longer than {most} characters", "{field}超过 {most} 个字符")
    INVISIBLE = (
        "the {field} holds the character {char}, which is invisible or changes how the text shows (a"
        " control, format or direction mark): delete it and import again",
        "{field}中含有字符 {char}，它不可见或会改变文字的显示方式（控制符、格式符或方向标记）："
        "请删除后重新导入",
    )
    BAD_PHONE = (
        "the phone (手机) is not a mainland mobile number (11 digits; +86, spaces, dashes are fine)",
        "手机号不是中国大陆的手机号码（11 位数字；可带 +86、空格或短横线）",
    )
    AT_LINE = ("line {line}: {text}", "第 {line} 行：{text}")
    WARNING = ("warning: {text}", "警告：{text}")
    NOT_READ = ("encoding {encoding}: the file is not read", "编码 {encoding}：文件未读取")
    READ = (
        "encoding {encoding}: {rows} good row(s), {with_phone} with a phone",
        "编码 {encoding}：有效记录 {rows} 条，其中有手机号 {with_phone} 条",
    )
    NOTHING_IMPORTED = (
        "{count} problem(s): nothing imported; fix the file and import it again",
        "发现 {count} 处错误：没有导入任何记录；请修正文件后重新导入",
    )
    DRY_RUN = (
        "dry run: the file is good, {rows} row(s) would be imported; nothing written",
        "试运行：文件无误，可以导入 {rows} 条记录；没有写入任何内容",
    )
    IMPORTED = ("{written} row(s) imported", "已导入 {written} 条记录")

    def __call__(self, **values: str | int | Phrase) -> Phrase:
        """This message with its values filled in (rendered in either language later)."""
        return Phrase(self, tuple(values.items()))


@dataclass(frozen=True, slots=True)
class Phrase:
    """A message and its values, not yet worded: a value may be a phrase of its own."""

    wording: Wording
    values: tuple[tuple[str, str | int | Phrase], ...] = ()

    def text(self, language: Language = "en") -> str:
        """The message in the language's wording."""
        template = self.wording.value[0 if language == "en" else 1]
        worded = {name: v.text(language) if isinstance(v, Phrase) else v for name, v in self.values}
        return template.format(**worded)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A bad row: its line number in the file (the header is line 1) and what is wrong with it."""

    line: int
    phrase: Phrase

    @property
    def message(self) -> str:
        """What is wrong, in English (the command line)."""
        return self.phrase.text("en")

    @property
    def chinese(self) -> str:
        """What is wrong, in Chinese (the console)."""
        return self.phrase.text("zh")

    def text(self, language: Language = "en") -> str:
        """The line number and what is wrong, in the language's wording."""
        return Wording.AT_LINE(line=self.line, text=self.phrase).text(language)

    def __str__(self) -> str:
        return self.text("en")


def encoding_name(encoding: str, language: Language = "en") -> str:
    """An encoding decided for a file, as a reader of the language reads it."""
    if language == "zh":
        return {UNDECIDED: "无法判断", "UTF-8 (BOM)": "UTF-8（带 BOM）"}.get(encoding, encoding)
    return encoding


@dataclass(frozen=True, slots=True)
class ParsedDirectory:
    """The good entries of a file, the problems of its bad rows, and warnings that do not stop it."""

    encoding: str
    entries: tuple[DirectoryEntry, ...]
    problems: tuple[RowProblem, ...]
    warnings: tuple[RowProblem, ...] = ()

    @property
    def encoding_zh(self) -> str:
        """The encoding, for the console."""
        return encoding_name(self.encoding, "zh")


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

    def lines(self, language: Language = "en") -> list[str]:
        """The report, one line each: in English for the command line, in Chinese for the console."""
        encoding = encoding_name(self.encoding, language)
        if self.encoding == UNDECIDED:
            out = [Wording.NOT_READ(encoding=encoding)]
        else:
            out = [Wording.READ(encoding=encoding, rows=self.rows, with_phone=self.with_phone)]
        out.extend(Wording.WARNING(text=Wording.AT_LINE(line=w.line, text=w.phrase)) for w in self.warnings)
        out.extend(Wording.AT_LINE(line=problem.line, text=problem.phrase) for problem in self.problems)
        if self.problems:
            out.append(Wording.NOTHING_IMPORTED(count=len(self.problems)))
        elif self.dry_run:
            out.append(Wording.DRY_RUN(rows=self.rows))
        else:
            out.append(Wording.IMPORTED(written=self.written))
        return [phrase.text(language) for phrase in out]


FileEncoding = Literal["auto", "utf-8", "gb18030"]
"""How the operator asks a file to be read: decided from the file (auto), or one encoding."""
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_NAME_TEXT: Final = re.compile(r"[^\x00-\x7f\d]+")
"""A run of text that is not ASCII and holds no digit (so never a phone), to show how a file reads."""


class UndecodableFile(ValueError):
    """The file is refused as a whole: a byte does not decode in the encoding decided for it."""

    def __init__(self, line: int, phrase: Phrase) -> None:
        super().__init__(phrase.text("en"))
        self.line = line
        self.phrase = phrase


def decode(data: bytes, encoding: FileEncoding = "auto") -> tuple[str, str]:
    """Return the text and the encoding of a CSV file, decided for the whole file as the module says;
    UndecodableFile when it cannot be."""
    bom = data.startswith(_UTF8_BOM)
    try:
        text = data[len(_UTF8_BOM) :].decode("utf-8") if bom else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        not_utf8 = exc.start + (len(_UTF8_BOM) if bom else 0)
    else:
        return text, "UTF-8 (BOM)" if bom else "UTF-8"
    line, where = _where(data, not_utf8)
    if encoding == "utf-8":
        raise UndecodableFile(line, Wording.NOT_UTF8(where=where))
    if encoding == "gb18030" and bom:
        raise UndecodableFile(1, Wording.BOM_NOT_GB18030())
    try:
        gb_text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        gb_line, gb_where = _where(data, exc.start)
        if encoding == "gb18030":
            raise UndecodableFile(gb_line, Wording.NOT_GB18030(where=gb_where)) from None
        raise UndecodableFile(
            min(line, gb_line), Wording.NEITHER(where=where, line=line, gb_where=gb_where, gb_line=gb_line)
        ) from None
    utf8_char = _first_utf8_char(data)
    if encoding == "gb18030" or utf8_char is None:
        return gb_text, "GB18030"
    # Some of it is UTF-8 and some is not: reading it all as GB18030 would garble the UTF-8 part.
    sample = _NAME_TEXT.search(gb_text)
    seen = Wording.SAMPLE(text=sample.group()[:16]) if sample else Wording.NOTHING()
    first, last, first_line = utf8_char
    raise UndecodableFile(
        line, Wording.MIXED(where=where, first=first, last=last, first_line=first_line, sample=seen)
    )


def _first_utf8_char(data: bytes) -> tuple[int, int, int] | None:
    """The first multi-byte character that a UTF-8 reader finds in data (its first and last byte's
    offsets and its line); each byte that does not decode is skipped (it reads as a lone surrogate)."""
    offset = 0
    for char in data.decode("utf-8", "surrogateescape"):
        if "\udc80" <= char <= "\udcff" or char < "\x80":
            offset += 1
            continue
        line, _ = _where(data, offset)
        size = len(char.encode("utf-8"))
        return offset, offset + size - 1, line
    return None


def _where(data: bytes, offset: int) -> tuple[int, Phrase]:
    """The line (from 1) of the byte at offset, and the byte described for a message."""
    return data.count(b"\n", 0, offset) + 1, Wording.BYTE(offset=offset, byte=f"{data[offset]:02X}")


def parse_directory(
    data: bytes, *, allow_shared_phones: bool = False, encoding: FileEncoding = "auto"
) -> ParsedDirectory:
    """Read a directory CSV; each bad row becomes a RowProblem (a shared phone a warning, if allowed)."""
    try:
        text, decided = decode(data, encoding)
    except UndecodableFile as exc:
        return ParsedDirectory(UNDECIDED, (), (RowProblem(exc.line, exc.phrase),))
    reader = csv.reader(io.StringIO(text, newline=""))
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    try:
        header = next(reader)
    except StopIteration:
        return ParsedDirectory(decided, (), (RowProblem(1, Wording.EMPTY()),))
    except csv.Error as exc:
        return ParsedDirectory(decided, (), (RowProblem(1, Wording.HEADER_UNREADABLE(error=str(exc))),))
    positions, missing = _columns(header)
    if missing:
        names = ", ".join("/".join(COLUMNS[field][:2]) for field in missing)
        return ParsedDirectory(decided, (), (RowProblem(1, Wording.HEADER_LACKS(names=names)),))
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
            problems.append(RowProblem(start, Wording.UNREADABLE(error=str(exc))))
            break
        end = reader.line_num
        if end > start:
            spans = Wording.SPANS_TO_END() if end >= last_line else Wording.SPANS_TO_LINE(end=end)
            problems.append(RowProblem(start, spans))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(RowProblem(start, Wording.CELLS(cells=len(row), columns=len(header))))
            continue
        cells = {field: row[index].strip() for field, index in positions.items()}
        entry, wrong = _entry(cells)
        if entry is not None and entry.member_id in first_line:
            other = first_line[entry.member_id]
            wrong = [*wrong, Wording.DUPLICATE_ID(member_id=entry.member_id, other=other)]
        shared: Phrase | None = None
        if entry is not None and entry.phone and entry.phone in phone_line:
            other_line, other_id = phone_line[entry.phone]
            shared = Wording.SHARED_PHONE(phone=mask_phone(entry.phone), other=other_line, other_id=other_id)
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
        problems.append(RowProblem(1, Wording.NO_STUDENT()))
    return ParsedDirectory(decided, tuple(entries), tuple(problems), tuple(warnings))


async def import_directory(
    store: Directory,
    data: bytes,
    *,
    dry_run: bool = False,
    allow_shared_phones: bool = False,
    encoding: FileEncoding = "auto",
) -> ImportReport:
    """Check a directory CSV and, unless dry_run or any row is bad, write every entry at once."""
    parsed = parse_directory(data, allow_shared_phones=allow_shared_phones, encoding=encoding)
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


def _control(text: str) -> str | None:
    """The first control, format or line-separator character in text, as U+XXXX, or None."""
    for char in text:
        if unicodedata.category(char) in _INVISIBLE:
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


_FIELD_WORDING: Final = (("name", Wording.NAME), ("department", Wording.DEPARTMENT))


def _entry(cells: Mapping[str, str]) -> tuple[DirectoryEntry | None, list[Phrase]]:
    wrong: list[Phrase] = []
    member_id, name, department = cells["student_id"], cells["name"], cells["department"]
    if not member_id:
        wrong.append(Wording.NO_ID())
    elif not USERID.match(member_id):  # a student id must be usable as a WeCom userid
        wrong.append(Wording.BAD_ID())
    for field, title in _FIELD_WORDING:
        text = cells[field]
        control = _control(text)
        if not text:
            wrong.append(Wording.NO_FIELD(field=title()))
        elif len(text) > _MAX_TEXT:
            wrong.append(Wording.TOO_LONG(field=title(), most=_MAX_TEXT))
        elif control is not None:
            wrong.append(Wording.INVISIBLE(field=title(), char=control))
    phone: Phone | None = None
    if cells["phone"]:
        try:
            phone = Phone.parse(cells["phone"])
        except InvalidPhone:
            wrong.append(Wording.BAD_PHONE())
    if wrong:
        return (DirectoryEntry(member_id, name, department, None) if member_id else None), wrong
    return DirectoryEntry(member_id, name, department, phone), []
