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
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from handlers.core.binding import DirectoryEntry
from handlers.core.phone import InvalidPhone, Phone, mask_phone
from handlers.usecases.contracts import Directory

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
UNDECIDED: Final = "undecided"
"""The encoding of a refused file."""
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode's control and format characters and line separators: each is invisible, or reorders how
a name shows (bidi marks, embeddings, isolates), or joins or splits it unseen (U+200B, U+FEFF)."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A bad row: its line number in the file (the header is line 1) and what is wrong with it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


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
        if self.encoding == UNDECIDED:
            out = [f"encoding {UNDECIDED}: the file is not read"]
        else:
            out = [f"encoding {self.encoding}: {self.rows} good row(s), {self.with_phone} with a phone"]
        out.extend(f"warning: {warning}" for warning in self.warnings)
        out.extend(str(problem) for problem in self.problems)
        if self.problems:
            out.append(f"{len(self.problems)} problem(s): nothing imported; fix the file and import it again")
        elif self.dry_run:
            out.append(f"dry run: the file is good, {self.rows} row(s) would be imported; nothing written")
        else:
            out.append(f"{self.written} row(s) imported")
        return out


FileEncoding = Literal["auto", "utf-8", "gb18030"]
"""How the operator asks a file to be read: decided from the file (auto), or one encoding."""
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_NAME_TEXT: Final = re.compile(r"[^\x00-\x7f\d]+")
"""A run of text that is not ASCII and holds no digit (so never a phone), to show how a file reads."""


class UndecodableFile(ValueError):
    """The file is refused as a whole: a byte does not decode in the encoding decided for it."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


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
        raise UndecodableFile(line, f"{where} does not decode as UTF-8")
    if encoding == "gb18030" and bom:
        raise UndecodableFile(1, "the file starts with UTF-8's byte order mark: it is not GB18030")
    try:
        gb_text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        gb_line, gb_where = _where(data, exc.start)
        if encoding == "gb18030":
            raise UndecodableFile(gb_line, f"{gb_where} does not decode as GB18030") from None
        raise UndecodableFile(
            min(line, gb_line),
            f"the file is neither UTF-8 ({where}, line {line}, does not decode) nor GB18030"
            f" ({gb_where}, line {gb_line}, does not decode)",
        ) from None
    utf8_char = _first_utf8_char(data)
    if encoding == "gb18030" or utf8_char is None:
        return gb_text, "GB18030"
    # Some of it is UTF-8 and some is not: reading it all as GB18030 would garble the UTF-8 part.
    sample = _NAME_TEXT.search(gb_text)
    seen = f" (read so, it begins {sample.group()[:16]})" if sample else ""
    raise UndecodableFile(
        line,
        f"{where} does not decode as UTF-8, though {utf8_char} decode as a UTF-8 character: the file"
        f" may mix two encodings, and is read as neither. Save it as UTF-8 again; or, if all of it is"
        f" GB18030{seen}, import it with --encoding gb18030",
    )


def _first_utf8_char(data: bytes) -> str | None:
    """The first multi-byte character that a UTF-8 reader finds in data, described for a message;
    each byte that does not decode is skipped (it reads as a lone surrogate)."""
    offset = 0
    for char in data.decode("utf-8", "surrogateescape"):
        if "\udc80" <= char <= "\udcff" or char < "\x80":
            offset += 1
            continue
        line, _ = _where(data, offset)
        size = len(char.encode("utf-8"))
        return f"bytes {offset} to {offset + size - 1} (line {line})"
    return None


def _where(data: bytes, offset: int) -> tuple[int, str]:
    """The line (from 1) of the byte at offset, and the byte described for a message."""
    return data.count(b"\n", 0, offset) + 1, f"byte {offset} of the file (0x{data[offset]:02X})"


def parse_directory(
    data: bytes, *, allow_shared_phones: bool = False, encoding: FileEncoding = "auto"
) -> ParsedDirectory:
    """Read a directory CSV; each bad row becomes a RowProblem (a shared phone a warning, if allowed)."""
    try:
        text, decided = decode(data, encoding)
    except UndecodableFile as exc:
        return ParsedDirectory(UNDECIDED, (), (RowProblem(exc.line, str(exc)),))
    reader = csv.reader(io.StringIO(text, newline=""))
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    try:
        header = next(reader)
    except StopIteration:
        return ParsedDirectory(decided, (), (RowProblem(1, "the file is empty"),))
    except csv.Error as exc:
        return ParsedDirectory(decided, (), (RowProblem(1, f"the header cannot be read ({exc})"),))
    positions, missing = _columns(header)
    if missing:
        names = ", ".join("/".join(COLUMNS[field][:2]) for field in missing)
        return ParsedDirectory(decided, (), (RowProblem(1, f"the header lacks the column(s) {names}"),))
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
            problems.append(RowProblem(start, f"cannot be read ({exc})"))
            break
        end = reader.line_num
        if end > start:
            problems.append(RowProblem(start, _spans_lines(start, end, last=last_line)))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            cells_text = f"{len(row)} cell(s), but the header has {len(header)} columns"
            problems.append(RowProblem(start, cells_text))
            continue
        cells = {field: row[index].strip() for field, index in positions.items()}
        entry, wrong = _entry(cells)
        if entry is not None and entry.member_id in first_line:
            wrong = [*wrong, f"student id {entry.member_id} is already on line {first_line[entry.member_id]}"]
        shared: str | None = None
        if entry is not None and entry.phone and entry.phone in phone_line:
            other_line, other_id = phone_line[entry.phone]
            shared = (
                f"phone {mask_phone(entry.phone)} is also on line {other_line} (student id {other_id}):"
                " one phone binds one student"
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
        problems.append(RowProblem(1, "the file holds no student"))
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


def _spans_lines(start: int, end: int, *, last: int) -> str:
    where = "to the end of the file" if end >= last else f"to line {end}"
    return (
        f"a quoted cell runs from this line {where}, swallowing the lines after it:"
        ' look for a missing or extra double quote (") on this line'
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


def _entry(cells: Mapping[str, str]) -> tuple[DirectoryEntry | None, list[str]]:
    wrong: list[str] = []
    member_id, name, department = cells["student_id"], cells["name"], cells["department"]
    if not member_id:
        wrong.append("no student id (学号)")
    elif not _STUDENT_ID.match(member_id):
        wrong.append(
            "the student id (学号) may hold only letters, digits and _-@. (64 at most), as a WeCom userid"
        )
    for title, text in (("name (姓名)", name), ("department (院系)", department)):
        control = _control(text)
        if not text:
            wrong.append(f"no {title}")
        elif len(text) > _MAX_TEXT:
            wrong.append(f"the {title} is longer than {_MAX_TEXT} characters")
        elif control is not None:
            wrong.append(
                f"the {title} holds the character {control}, which is invisible or changes how the text"
                " shows (a control, format or direction mark): delete it and import again"
            )
    phone: Phone | None = None
    if cells["phone"]:
        try:
            phone = Phone.parse(cells["phone"])
        except InvalidPhone:
            wrong.append(
                "the phone (手机) is not a mainland mobile number (11 digits; +86, spaces, dashes are fine)"
            )
    if wrong:
        return (DirectoryEntry(member_id, name, department, None) if member_id else None), wrong
    return DirectoryEntry(member_id, name, department, phone), []
