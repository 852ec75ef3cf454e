"""``--help`` of every command, written from the config dataclasses: each key, its type, default and meaning.

A key's documentation is the string literal right after its field in the dataclass (the convention of
Sphinx's autodoc and of tyro)::

    @dataclass
    class VAEConfig:
        latent_dim: int = 5
        \"\"\"2 | 4 | 5 (the design's); any integer >= 1\"\"\"
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import inspect
import textwrap
import types
import typing
from typing import Any

from omegaconf import MISSING

WIDTH = 110


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring of each field of dataclass ``cls`` (and of its bases), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (a frozen app): keys without their documentation
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(hint: Any) -> str:
    """``int``, ``str | null``, ``seed | candidates | history`` (an Enum's choices) ..."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " | ".join(member.name for member in hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    if args:
        return f"{typing.get_origin(hint).__name__}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(hint, "__name__", str(hint))


def _default(f: dataclasses.Field[Any]) -> Any:
    """A field's default value, as the config shows it."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value == MISSING:
        return "(required)"
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else value


def key_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, documentation) of every leaf key of dataclass ``cls``, nested groups too."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    rows: list[tuple[str, str, str, str]] = []
    for f in dataclasses.fields(cls):
        if f.name == "defaults":
            continue
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            rows += key_rows(hint, f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", _type_name(hint), str(_default(f)), docs.get(f.name, "")))
    return rows


def dotted_keys(cls: type) -> list[str]:
    """Every leaf key of dataclass ``cls`` as ``a.b.c`` (for 'did you mean')."""
    return [row[0] for row in key_rows(cls)]


def help_text(command: str, script: str, summary: str, schema: type, multirun: bool, groups: bool) -> str:
    """The text ``music-rl <command> --help`` prints (a ``string.Template`` for Hydra, ``$`` escaped)."""
    lines = [f"music-rl {command}: {summary}", "",
             f"Usage: music-rl {command} [key=value ...]    (the same: scripts/{script}.py [key=value ...])",
             "A value holding anything but ASCII letters, digits, spaces and _ - + . / : $ % * @ ? | (a comma, "
             "=, brackets, parentheses, & !, quotes, an accent) is quoted for Hydra inside quotes for the shell: "
             "'query=\"Artist, Title (Live)\"'.", "", "Keys (type = default: meaning):"]
    for key, kind, default, doc in key_rows(schema):
        head = f"  {key} ({kind}) = {default}"
        text = f"{head}: {doc}" if doc else head
        lines += textwrap.wrap(text, WIDTH, subsequent_indent="      ")
    lines += ["", "Config groups (group=option): $APP_CONFIG_GROUPS"] if groups else []
    lines += ["",
              "Flags: --cfg job prints the composed config (with your overrides) and exits; --info; "
              "--hydra-help for Hydra's own options."
              + (" -m/--multirun runs a sweep (key=a,b,c)." if multirun else "")]
    body = "\n".join(lines) + "\n"
    return body.replace("$", "$$").replace("$$APP_CONFIG_GROUPS", "$APP_CONFIG_GROUPS").replace("${", "\\${")
