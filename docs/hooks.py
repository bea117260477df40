"""MkDocs hook: show the docstrings' reStructuredText roles (``:func:`x```) as plain code.

The code's docstrings name other objects with Sphinx roles; Markdown renders the role's name
as text in front of the code span, which this removes (``~a.b.c`` shows as ``c``).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if match.group(1) else name}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_plain, html)
