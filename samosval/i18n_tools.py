"""Message extraction for the translation check (tests/test_i18n.py) and for
``python -m samosval.i18n_tools missing``, which prints a .po stub of every
source string that has no Russian translation yet."""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.extract import extract_from_dir

PACKAGE_DIR = Path(__file__).resolve().parent
KEYWORDS = {
    "_": None,
    "gettext": None,
    "_l": None,
    "lazy_gettext": None,
    "N_": None,
    "ngettext": (1, 2),
    "lazy_ngettext": (1, 2),
}
METHOD_MAP = [("**/templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]


def extract_messages() -> dict[str, list[str]]:
    """msgid -> places it is used."""
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE_DIR),
        METHOD_MAP,
        keywords=KEYWORDS,
        options_map={"**/templates/**.html": {"extensions": "jinja2.ext.do"}},
    ):
        ids = message if isinstance(message, tuple) else (message,)
        for msgid in ids:
            if msgid:
                found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def missing_translations(lang: str = "ru") -> dict[str, list[str]]:
    from .i18n import load_catalog

    catalog = load_catalog(lang)
    return {
        msgid: places
        for msgid, places in extract_messages().items()
        if not (catalog.get(msgid) and catalog.get(msgid).string)
    }


def _po_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def main(argv: list[str]) -> int:
    if argv[:1] != ["missing"]:
        print("usage: python -m samosval.i18n_tools missing [PATH_FILTER]")
        return 2
    path_filter = argv[1] if len(argv) > 1 else ""
    for msgid, places in sorted(missing_translations().items()):
        if path_filter and not any(path_filter in p for p in places):
            continue
        print(f'#: {" ".join(places[:3])}\nmsgid "{_po_escape(msgid)}"\nmsgstr ""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
