"""The guide's chapter 2 is carried word for word where the product explains an error."""

from __future__ import annotations

from handlers.core.guide import GUIDE, RULES, STEPS, ErrorCode
from tests.support.reference import GUIDE_TEXT


def test_every_code_has_an_entry_in_order() -> None:
    assert [GUIDE[code].section for code in ErrorCode] == ["2.1", "2.2", "2.3", "2.4"]


def test_titles_and_causes_are_the_guides_words() -> None:
    guide = GUIDE_TEXT.read_text(encoding="utf-8")
    for entry in GUIDE.values():
        assert entry.title in guide
        for cause in entry.causes:
            # The guide spells the contacts 通信录 once; we correct it to 通讯录.
            assert cause.replace("通讯录", "通信录") in guide or cause in guide


def test_the_first_two_remedies_are_verbatim() -> None:
    guide = GUIDE_TEXT.read_text(encoding="utf-8")
    assert GUIDE[ErrorCode.PHONE_TAKEN].remedies[0] in guide
    assert GUIDE[ErrorCode.ACCOUNT_FOLLOWED].remedies[0] in guide


def test_the_rules_of_1_2_are_verbatim() -> None:
    guide = GUIDE_TEXT.read_text(encoding="utf-8")
    assert len(RULES) == 3
    for rule in RULES:
        assert rule in guide


def test_the_steps_of_1_3_are_the_guides() -> None:
    guide = GUIDE_TEXT.read_text(encoding="utf-8")
    assert [step.number for step in STEPS] == [1, 2, 3, 4, 5]
    # Step 2 word for word; the others name the school the settings name.
    assert STEPS[1].title in guide
    assert STEPS[0].title.format(school="上海工程技术大学").rstrip("。") in guide
    for step in STEPS:
        assert f"步骤{step.number}" in guide
