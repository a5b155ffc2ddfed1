"""What the reference generators share: the checkout, the log, and Markdown helpers."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `mkdocs` run from elsewhere: import jobd from this checkout
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("mkdocs.hooks.reference")
"""Warnings here fail `mkdocs build --strict`."""


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-")


def sentence(text: str) -> str:
    text = re.sub(r",? seconds$", "", text.strip())  # the type says "duration"
    if not text:
        return ""
    return text if text.endswith((".", ")")) else text + "."


def escape(text: str) -> str:
    """Text from the code as Markdown: | would end a table cell, < start HTML, * emphasis."""
    for character, escaped in (("|", "\\|"), ("<", "&lt;"), ("*", "\\*"), ("[", "\\[")):
        text = text.replace(character, escaped)
    return text
