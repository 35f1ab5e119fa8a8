"""The demo: the service beside the WeCom and CAS emulators on one port, with seeded students.

Its settings are made up at each start (fresh random secrets, nothing from the repository), and
its store is the embedded SQLite file under data/. The emulators are mounted here and nowhere
else: no production configuration can reach them.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from callback_service.admin import setup_admin
from callback_service.callbacks import endpoint as callback_endpoint
from callback_service.compose import SMS_CLOCK
from callback_service.logs import configure_logging
from callback_service.ops.processes import run_app
from callback_service.store import STORE
from callback_service.web.app import create_app
from callback_service.web.pages.config import PAGES_CONFIG, PagesConfig
from config import Settings, env_name
from handlers.core.binding import DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import StoreUnavailable
from sandbox.cas import CasUser, create_cas_sandbox
from sandbox.sms import SMS_SANDBOX_STATE, SmsAccount, create_sms_sandbox
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_members import MembersFileError, Organisation, read_members
from sandbox.wecom_push import CallbackTarget
from sandbox.wecom_state import APP, CONTACTS

DEMO_CORP_ID: Final = "wwdemo0000000000ce"
DEMO_AGENT_ID: Final = 1000002
DEMO_PASSWORD: Final = "demo1234"  # noqa: S105 - the emulated CAS accounts of the demo, shown on its start page
DEMO_ADMIN: Final = "admin"
"""The demo's administrator: a CAS account (工号) listed in WECOM_BIND_ADMINS, for the console at /admin."""
CAS_MOUNT: Final = "/sandbox/cas"
SMS_MOUNT: Final = "/sandbox/sms"
DEMO_SMS_TIMEOUT: Final = 2.0
"""Seconds the demo's service waits for its SMS emulator (tests make the emulator hang longer)."""
WECOM_MOUNT: Final = "/sandbox/wecom"


@dataclass(frozen=True, slots=True)
class DemoStudent:
    """A seeded student: the directory entry, the CAS account and the phone of their own WeChat."""

    member_id: str
    name: str
    department: str
    directory_phone: str | None
    cas_mobile: str | None
    wechat_phone: str
    walks: str


DEMO_STUDENTS: Final = (
    DemoStudent("2021001", "张三", "机械与汽车工程学院", "13800000001", None, "13800000001",
                "步骤 1–5：微信手机号与绑定的一致，免验证直接关注（图 1-4、1-7）；关注后可演示 2.2、2.4"),
    DemoStudent("2021002", "李四", "电子电气工程学院", "13800000002", None, "13900000002",
                "步骤 1–5：微信手机号不同，关注时验证身份、填短信验证码（图 1-5～1-7）"),
    DemoStudent("2021003", "王五", "管理学院", None, "13800000003", "13800000003",
                "目录无手机号：由统一身份认证的 mobile 属性预填；可改填其他手机号"),
    DemoStudent("2021004", "赵六", "化学化工学院", None, None, "13800000004",
                "目录无手机号：页面手机号为空，需自行输入"),
    DemoStudent("2021005", "孙七", "城市轨道交通学院", "13800000001", None, "13800000005",
                "目录手机号与张三相同：张三绑定后再绑定，出现 2.1；改填 13800000005 即可绑定"),
)

DEMO_OUTSIDER: Final = ("2020999", "周八")
"""A CAS account (学号, name) in neither the directory nor WeCom: the page of a student nobody knows."""

DEMO_VISITOR_NAME: Final = "访客"
DEMO_VISITOR_PHONE: Final = "13700000000"
"""A simulated WeChat whose phone is in no member's record: the follow of errors 2.3 and 2.4."""


def demo_settings(*, host: str, port: int, data_dir: Path) -> Settings:
    """Settings for a demo on host:port, with secrets made up for this run only."""
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    return Settings.model_validate(
        {
            "corp_id": DEMO_CORP_ID,
            "token": secrets.token_urlsafe(24),
            "encoding_aes_key": base64.b64encode(secrets.token_bytes(32)).decode()[:43],
            "contacts_token": secrets.token_urlsafe(24),
            "contacts_encoding_aes_key": base64.b64encode(secrets.token_bytes(32)).decode()[:43],
            "agent_id": DEMO_AGENT_ID,
            "app_secret": secrets.token_urlsafe(24),
            "contacts_secret": secrets.token_urlsafe(24),
            "public_base_url": base,
            "store_url": f"sqlite:///{data_dir / 'demo.db'}",
            "cas_base_url": base + CAS_MOUNT,
            "wecom_api_base": base + WECOM_MOUNT,
            "follow_url": base + WECOM_MOUNT + "/follow",
            "session_secret": secrets.token_urlsafe(32),
            "log_level": "INFO",
            "admins": [DEMO_ADMIN],
            # A typed phone that is not the directory's is proved by a code from the SMS emulator.
            "sms_provider": "tencent",
            "sms_key_id": "AKID" + secrets.token_hex(16),
            "sms_key_secret": secrets.token_urlsafe(24),
            "sms_sign_name": DEMO_SCHOOL_SIGN,
            "sms_template_id": "2100001",
            "sms_app_id": "1400000021",
            "sms_api_base": base + SMS_MOUNT + "/tencent",
            "sms_timeout": DEMO_SMS_TIMEOUT,
            "sms_verify": "changed",
            "sms_code_secret": secrets.token_urlsafe(32),
        }
    )


DEMO_SCHOOL_SIGN: Final = "上海工程技术大学"


def sms_sandbox(settings: Settings) -> web.Application:
    """The emulated SMS provider of the demo, knowing the account its settings were made up with."""
    secret = settings.sms_key_secret
    return create_sms_sandbox(
        SmsAccount(
            key_id=settings.sms_key_id or "",
            key_secret=secret.get_secret_value() if secret is not None else "",
            sign_name=settings.sms_sign_name or "",
            template_id=settings.sms_template_id or "",
            app_id=settings.sms_app_id or "",
        )
    )


def cas_users(
    students: Sequence[DemoStudent] = DEMO_STUDENTS, organisation: Organisation | None = None
) -> dict[str, CasUser]:
    """The emulated CAS accounts of the demo students, and of the members of an existing organisation."""
    users = {}
    for existing in organisation.members if organisation is not None else ():
        users[existing.userid] = CasUser(
            member_id=existing.userid, password=DEMO_PASSWORD, name=existing.name,
            attributes={"department": _department_name(existing.department[0])},
        )
    for student in students:
        attributes = {"department": student.department}
        if student.cas_mobile:
            attributes["mobile"] = student.cas_mobile
        users[student.member_id] = CasUser(
            member_id=student.member_id, password=DEMO_PASSWORD, name=student.name, attributes=attributes
        )
    outsider, outsider_name = DEMO_OUTSIDER
    users[outsider] = CasUser(member_id=outsider, password=DEMO_PASSWORD, name=outsider_name, attributes={})
    users[DEMO_ADMIN] = CasUser(member_id=DEMO_ADMIN, password=DEMO_PASSWORD, name="管理员", attributes={})
    return users


_START_PAGE: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("sandbox", "templates"), autoescape=True
)


def _start_page(settings: Settings) -> Handler:
    async def start(request: web.Request) -> web.Response:
        html = _START_PAGE.get_template("demo/start.html").render(
            base=settings.public_base_url,
            cas=CAS_MOUNT,
            wecom=WECOM_MOUNT,
            sms=SMS_MOUNT,
            students=DEMO_STUDENTS,
            student={s.member_id: s for s in DEMO_STUDENTS},
            visitor=(DEMO_VISITOR_NAME, DEMO_VISITOR_PHONE),
            outsider=DEMO_OUTSIDER,
            password=DEMO_PASSWORD,
            admin=DEMO_ADMIN,
        )
        return web.Response(text=html, content_type="text/html")

    return start


def directory_seeder(
    students: Sequence[DemoStudent] = DEMO_STUDENTS, organisation: Organisation | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that puts the students, and the members of an existing organisation, into
    the school directory when the app starts."""

    async def seed_directory(app: web.Application) -> AsyncIterator[None]:
        existing = organisation.members if organisation is not None else ()
        await app[STORE].directory_upsert(
            [
                DirectoryEntry(
                    member_id=member.userid,
                    name=member.name,
                    department=_department_name(member.department[0]),
                    phone=Phone.parse_or_none(member.mobile),
                )
                for member in existing
            ]
            + [
                DirectoryEntry(
                    member_id=student.member_id,
                    name=student.name,
                    department=student.department,
                    phone=Phone.parse_or_none(student.directory_phone),
                )
                for student in students
            ]
        )
        yield

    return seed_directory


def demo_departments(students: Sequence[DemoStudent] = DEMO_STUDENTS) -> dict[str, int]:
    """The demo's 院系, each a WeCom department under the root (1)."""
    names = sorted({student.department for student in students})
    return {name: 2 + number for number, name in enumerate(names)}


def _department_name(department: int) -> str:
    names = {ident: name for name, ident in demo_departments().items()}
    return names.get(department, f"部门{department}")


def wecom_sandbox(
    settings: Settings,
    students: Sequence[DemoStudent] = DEMO_STUDENTS,
    organisation: Organisation | None = None,
) -> web.Application:
    """The emulated WeCom of the demo, pushing its callbacks to the service beside it.

    The app's events go to /wecom/callback; change_contact (for changes made in the emulated admin
    console, /_sandbox/console) to the contacts-sync endpoint /wecom/contacts-callback, when the
    settings carry its Token and key. Each demo student has a simulated WeChat with its own phone, to
    pick on the follow page, and so has a visitor who is in no record. An existing organisation's
    members (read from a file) are WeCom's members from the start.
    """
    departments = {1: settings.school_name} | {
        ident: name for name, ident in demo_departments(students).items()
    }
    if organisation is not None:
        departments |= {d: _department_name(d) for d in organisation.departments if d not in departments}
    app = create_wecom_sandbox(
        corp_id=settings.corp_id,
        secrets={
            settings.app_secret.get_secret_value(): APP,
            settings.contacts_secret.get_secret_value(): CONTACTS,
        },
        agent_id=settings.agent_id,
        callback=CallbackTarget(
            url=settings.public_base_url + callback_endpoint.PATH,
            token=settings.token.get_secret_value(),
            encoding_aes_key=settings.encoding_aes_key.get_secret_value(),
        ),
        contacts_callback=_contacts_target(settings),
        departments=departments,
        help_url=settings.public_base_url + "/help",
        corp_name=settings.school_name,
        members=organisation.members if organisation is not None else (),
    )
    state = app[WECOM_SANDBOX_STATE]
    # The name is the WeChat's nickname: the emulator's pages say "张三的微信" themselves.
    for student in students:
        state.add_wechat(student.name, student.wechat_phone)
    state.add_wechat(DEMO_VISITOR_NAME, DEMO_VISITOR_PHONE)
    return app


def _contacts_target(settings: Settings) -> CallbackTarget | None:
    if settings.contacts_token is None or settings.contacts_encoding_aes_key is None:
        return None
    return CallbackTarget(
        url=settings.public_base_url + callback_endpoint.CONTACTS_PATH,
        token=settings.contacts_token.get_secret_value(),
        encoding_aes_key=settings.contacts_encoding_aes_key.get_secret_value(),
    )


def create_demo_app(
    *, host: str, port: int, data_dir: Path, wecom_members: Path | None = None
) -> web.Application:
    """The service with both emulators mounted, the directory seeded, and the start page at /.

    The emulated WeCom lives in memory, so the demo's store starts afresh at each start too.
    wecom_members: a CSV (userid,name,department,mobile,status) of an existing organisation, whose
    members are in WeCom from the start, in the directory and in CAS (password as the demo's);
    MembersFileError when it cannot be loaded.
    """
    organisation = read_members(wecom_members) if wecom_members is not None else None
    settings = demo_settings(host=host, port=port, data_dir=data_dir)
    for stale in data_dir.glob("demo.db*"):
        stale.unlink()
    app = create_app(settings)
    setup_admin(app)
    app[PAGES_CONFIG] = PagesConfig(departments=demo_departments())
    app.cleanup_ctx.append(directory_seeder(organisation=organisation))
    app.router.add_get("/", _start_page(settings), name="demo-start")
    cas = create_cas_sandbox(
        users=cas_users(organisation=organisation), show_accounts=True, school=settings.school_name
    )
    app.add_subapp(CAS_MOUNT, cas)
    app.add_subapp(WECOM_MOUNT, wecom_sandbox(settings, organisation=organisation))
    sms = sms_sandbox(settings)
    # The service's SMS step keeps the emulator's time, which a test may move on to expire a code.
    app[SMS_CLOCK] = sms[SMS_SANDBOX_STATE].clock
    app.add_subapp(SMS_MOUNT, sms)
    return app


def build_parser() -> argparse.ArgumentParser:
    """The demo's command line (`python -m sandbox`, `wecom-bind-demo`)."""
    parser = argparse.ArgumentParser(
        prog="wecom-bind-demo", description="The service beside its WeCom, CAS and SMS emulators, seeded."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", default="data", help="where the demo's SQLite file lives")
    parser.add_argument("--wecom-members", metavar="FILE",
                        help="an existing organisation: CSV userid,name,department,mobile,status")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    # The demo makes up its own settings; only the log format comes from the environment.
    log_format = os.environ.get(env_name("log_format"), "text")
    if log_format not in ("json", "text"):
        print(f"wecom-bind-demo: {env_name('log_format')}: must be json or text", file=sys.stderr)
        return 2
    configure_logging("INFO", "json" if log_format == "json" else "text")
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    members = Path(args.wecom_members) if args.wecom_members else None
    try:
        app = create_demo_app(host=args.host, port=args.port, data_dir=data_dir, wecom_members=members)
    except MembersFileError as exc:
        print(f"wecom-bind-demo: --wecom-members: {exc}", file=sys.stderr)
        return 2
    try:
        run_app(app, host=args.host, port=args.port)
    except StoreUnavailable as exc:
        print(f"wecom-bind-demo: the store is unavailable: {exc}", file=sys.stderr)
        return 3
    return 0
