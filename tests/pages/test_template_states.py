"""The pages' and the console's templates compare states to members of the enums the views pass,
registered as the templates' globals (`binding.state == ViewState.BOUND`), never to string literals:
a renamed state or a typo would otherwise fall silently through to the else. Every template is
parsed by Jinja's own parser, in the environments the service itself sets up."""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator, Mapping

import jinja2
import pytest
from jinja2 import nodes

from callback_service.admin import setup_admin
from callback_service.admin.keys import ADMIN_TEMPLATES
from callback_service.web.app import create_app
from callback_service.web.pages.render import PAGE_TEMPLATES
from testkit.settings import world_settings

Enums = Mapping[str, type[enum.Enum]]

# Jinja's tests that compare their operand to an argument (`x is eq "bound"`, `x is in ("a", "b")`).
_COMPARING_TESTS = frozenset({"eq", "equalto", "==", "ne", "!=", "sameas", "in"})


ENVIRONMENTS = ("pages", "admin")


@functools.cache
def _environment(which: str) -> jinja2.Environment:
    """The students' pages' or the console's environment, as create_app and setup_admin build it."""
    app = create_app(world_settings(admins="T0001"), run_workers=False)
    setup_admin(app)
    return {"pages": app[PAGE_TEMPLATES], "admin": app[ADMIN_TEMPLATES]}[which]


def _enums(environment: jinja2.Environment) -> dict[str, type[enum.Enum]]:
    return {
        name: value for name, value in environment.globals.items()
        if isinstance(value, type) and issubclass(value, enum.Enum)
    }


def _strings(operand: nodes.Node) -> Iterator[str]:
    """The string literals an operand of a comparison is made of (alone, or in a tuple or list)."""
    if isinstance(operand, nodes.Const) and isinstance(operand.value, str):
        yield operand.value
    elif isinstance(operand, nodes.Tuple | nodes.List):
        for item in operand.items:
            yield from _strings(item)


def _looks_like_enum_member(node: nodes.Getattr) -> bool:
    # `Some.MEMBER`: how a template names an enum's member; a misspelt enum's name is undefined only
    # when its branch is taken, so it is caught here instead.
    return isinstance(node.node, nodes.Name) and node.node.name[:1].isupper() and node.attr.isupper()


def offences(source: str, name: str, enums: Enums, environment: jinja2.Environment) -> list[str]:
    """What in one template compares to a string, or names no member of a registered enum."""
    tree = environment.parse(source, name)
    found = []
    for compare in tree.find_all(nodes.Compare):
        for operand in [compare.expr, *(op.expr for op in compare.ops)]:
            found += [f"{name}:{operand.lineno}: compared to the string {s!r}" for s in _strings(operand)]
    for test in tree.find_all(nodes.Test):
        if test.name in _COMPARING_TESTS:
            for argument in test.args:
                found += [f"{name}:{test.lineno}: `is {test.name}` {s!r}" for s in _strings(argument)]
    for attribute in tree.find_all(nodes.Getattr):
        if not isinstance(attribute.node, nodes.Name):
            continue
        owner = enums.get(attribute.node.name)
        where = f"{name}:{attribute.lineno}: {attribute.node.name}.{attribute.attr}"
        if owner is not None and attribute.attr not in owner.__members__:
            found.append(f"{where}: {owner.__name__} has no such member")
        elif owner is None and _looks_like_enum_member(attribute):
            found.append(f"{where}: no enum of that name is a global of the templates ({sorted(enums)})")
    return found


def _used_names(source: str, environment: jinja2.Environment) -> set[str]:
    return {name.name for name in environment.parse(source).find_all(nodes.Name)}


def _sources(environment: jinja2.Environment) -> dict[str, str]:
    assert environment.loader is not None
    names = [name for name in environment.list_templates() if name.endswith(".html")]
    return {name: environment.loader.get_source(environment, name)[0] for name in names}


@pytest.mark.parametrize("which", ENVIRONMENTS)
def test_no_template_compares_to_a_string_or_names_a_member_its_enum_lacks(which: str) -> None:
    environment = _environment(which)
    enums = _enums(environment)
    sources = _sources(environment)
    assert enums, f"the {which} environment registers no enum for its templates"
    assert sources, f"the {which} environment has no template"
    found = [o for name, source in sources.items() for o in offences(source, name, enums, environment)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("which", ENVIRONMENTS)
def test_every_enum_registered_for_the_templates_is_one_they_compare_to(which: str) -> None:
    environment = _environment(which)
    used = set().union(*(_used_names(source, environment) for source in _sources(environment).values()))
    unused = set(_enums(environment)) - used
    assert not unused, f"registered for the {which} templates but never used: {sorted(unused)}"


@pytest.mark.parametrize(
    ("source", "offence"),
    [
        ('{% if binding.state == "bound" %}x{% endif %}', "compared to the string 'bound'"),
        ('{% if "bound" != binding.state %}x{% endif %}', "compared to the string 'bound'"),
        ('{% if binding.state in ("a", ViewState.BOUND) %}x{% endif %}', "compared to the string 'a'"),
        ('{% if binding.state is eq "bound" %}x{% endif %}', "`is eq` 'bound'"),
        ("{% if binding.state == ViewState.BOUDN %}x{% endif %}", "ViewState has no such member"),
        ("{% if binding.state == Viewstate.BOUND %}x{% endif %}", "no enum of that name"),
    ],
)
def test_the_guard_finds_a_string_a_misspelt_member_and_an_unknown_enum(source: str, offence: str) -> None:
    environment = _environment("pages")
    found = offences(source, "t.html", _enums(environment), environment)
    assert len(found) == 1, found
    assert found[0].startswith("t.html:1: "), found
    assert offence in found[0], found


def test_members_pass_the_guard() -> None:
    environment = _environment("pages")
    source = (
        "{% if s in (ViewState.BOUND, ViewState.NONE) and n == 3 and e.code == ErrorCode.PHONE_TAKEN %}"
        "{% endif %}"
    )
    assert offences(source, "t.html", _enums(environment), environment) == []
