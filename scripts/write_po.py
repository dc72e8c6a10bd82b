"""Append translations to an area's .po file from a Python dict literal on stdin.

    python scripts/write_po.py samosval/translations/ru/core.po <<'PY'
    {"Log in": "Войти"}
    PY

Existing entries are kept; new ones are added; the file stays sorted by msgid.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po


def main(path: str) -> None:
    target = Path(path)
    catalog = Catalog(locale="ru", domain="messages")
    if target.exists():
        with target.open("rb") as handle:
            catalog = read_po(handle, locale="ru")
    for msgid, msgstr in ast.literal_eval(sys.stdin.read()).items():
        catalog.add(msgid, msgstr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        write_po(handle, catalog, sort_output=True, omit_header=True, width=0)


if __name__ == "__main__":
    main(sys.argv[1])
