"""Every user-facing string has a Russian translation."""
from samosval.i18n_tools import missing_translations


def test_every_source_string_is_translated_to_russian():
    missing = missing_translations("ru")
    assert not missing, "untranslated (run python -m samosval.i18n_tools missing): " + \
        ", ".join(sorted(missing)[:20])
