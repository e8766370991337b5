"""The tutorials' explanations exist in Korean beside English: every text a tutorial prints
(title, about, step, say) is a constant gettext message with a translation in
docs/tutorials/po/ko.po, and the catalog holds nothing the tutorials no longer say."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
CATALOG = TUTORIALS / "po" / "ko.po"
KEYWORDS = ("title", "about", "step", "say")


def _scripts() -> list[Path]:
    return sorted(TUTORIALS.glob("[0-9]*.sh"))


def test_every_message_is_a_constant_gettext_can_extract():
    # gettext substitutes $name after translating; a double-quoted "$name" would be expanded by the
    # shell first, and xgettext silently skips it, so it would never be translated
    bad = [f"{s.name}:{n}: {line.strip()}" for s in _scripts()
           for n, line in enumerate(s.read_text().splitlines(), 1)
           if re.match(rf'\s*({"|".join(KEYWORDS)}) "[^"]*[$`]', line)]
    assert not bad, "write these messages in single quotes, naming variables as $name:\n" + "\n".join(bad)


def test_korean_catalog_matches_the_tutorials(tmp_path):
    pot = tmp_path / "tutorials.pot"
    subprocess.run(["xgettext", "-L", "Shell", "--from-code=UTF-8", "-o", str(pot),
                    *(f"--keyword={k}" for k in KEYWORDS), *map(str, _scripts())], check=True)
    assert pot.read_text().count("msgid") > 10 * len(_scripts()) / 2
    # every English text has a Korean translation (untranslated and fuzzy entries count as missing)
    missing = subprocess.run(["msgcmp", str(CATALOG), str(pot)], capture_output=True, text=True)
    assert missing.returncode == 0, f"texts without Korean in {CATALOG.name}:\n{missing.stderr}"
    # and the catalog translates nothing the tutorials no longer print
    stale = subprocess.run(["msgcmp", "--use-untranslated", str(pot), str(CATALOG)], capture_output=True, text=True)
    assert stale.returncode == 0, f"entries of {CATALOG.name} no tutorial prints:\n{stale.stderr}"
    # the same $variables on both sides
    subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(CATALOG)], check=True)


def test_korean_pages_list_every_tutorial():
    listed = lambda page: set(re.findall(r"docs/tutorials/(\d\d-[\w-]+\.sh)", page.read_text()))  # noqa: E731
    every = {s.name for s in _scripts()}
    assert listed(TUTORIALS / "README.md") == every
    assert listed(TUTORIALS.parent / "ko" / "tutorials" / "README.md") == every
