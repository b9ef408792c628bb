"""The reference tables of docs/, generated from the code: ``python -m devtools.reference``.

docs/configuration.md is generated whole from the settings classes; docs/api.md is prose with
generated tables between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` markers.
tests/test_docs.py fails when a page is not what this writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from devtools.support import ROOT
from midas_service import options
from midas_service.config import GROUPS, rules, shown_default
from midas_service.errors import ERROR_CODES
from midas_service.options import Option

CONFIGURATION = ROOT / "docs" / "configuration.md"
API = ROOT / "docs" / "api.md"


def configuration_markdown() -> str:
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable, read once when a process starts and handed",
        "to the code that needs it (`midas_service/config.py`; this page is generated from it",
        "by `python -m devtools.reference`). A value that cannot be used stops the start with",
        "one line naming the variable, e.g. `MIDAS_THREADS must be a whole number, got 'two'`.",
    ]
    listed: set[str] = set()
    for title, cls in GROUPS.items():
        lines += ["", f"## {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for item, rule in rules(cls):
            if rule.env not in listed:
                listed.add(rule.env)
                lines.append(f"| `{rule.env}` | `{shown_default(item, rule)}` | {rule.meaning} |")
    return "\n".join(lines) + "\n"


def error_table() -> str:
    rows = [
        f"| {error.status} | `{code}` | {error.meaning} |" for code, error in ERROR_CODES.items()
    ]
    return "\n".join(["| status | code | meaning |", "|---|---|---|", *rows])


def option_table() -> str:
    """Every option, where it is taken, its values and default."""
    where: dict[str, list[str]] = {}
    declared: dict[tuple[str, str], Option] = {}
    for place, accepted in (
        ("/predict", options.PREDICT),
        ("`predict`", (options.COLORMAP, *options.VIEW)),
        ("/jobs (photos)", options.PHOTO_JOB),
        ("/jobs (video), `video`", options.VIDEO),
    ):
        for option in accepted:
            key = (option.name, option.meaning)
            declared[key] = option
            where.setdefault(f"{option.name}|{option.meaning}", []).append(place)
    rows = ["| option | taken by | values | default | meaning |", "|---|---|---|---|---|"]
    for (name, meaning), option in declared.items():
        places = "; ".join(where[f"{name}|{meaning}"])
        rows.append(
            f"| `{name}` | {places} | {values_of(option)} | {default_of(option)} | {meaning} |"
        )
    return "\n".join(rows)


def values_of(option: Option) -> str:
    if option.choices:
        return ", ".join(f"`{choice}`" for choice in option.choices)
    kind = "whole number" if option.kind == "whole" else "number"
    low = "" if option.low is None else f"{'>' if option.open_low else '>='} {option.low:g}"
    high = "" if option.high is None else f"{'<' if option.open_high else '<='} {option.high:g}"
    return " ".join(part for part in (kind, low, high) if part)


def default_of(option: Option) -> str:
    if option.name == "format":
        return "per output"
    if option.name == "colormap":
        return "`MIDAS_COLORMAP`"
    return "-" if option.default is None else f"`{option.default}`"


TABLES: dict[str, Callable[[], str]] = {"errors": error_table, "options": option_table}


def fill(text: str) -> str:
    """``text`` with every generated block replaced by what the code says now."""
    for name, table in TABLES.items():
        pattern = re.compile(
            rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", flags=re.S
        )
        if not pattern.search(text):
            raise ValueError(f"no generated block {name!r}")
        text = pattern.sub(lambda m, t=table: m[1] + t() + "\n" + m[2], text)
    return text


def main() -> None:
    CONFIGURATION.write_text(configuration_markdown())
    API.write_text(fill(API.read_text()))


if __name__ == "__main__":
    main()
