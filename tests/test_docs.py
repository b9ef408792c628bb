"""The reference pages are generated from the code, so they cannot drift from it."""

from __future__ import annotations

from devtools import reference


def test_configuration_page_is_generated_from_the_settings():
    assert reference.CONFIGURATION.read_text() == reference.configuration_markdown(), (
        "docs/configuration.md is stale: run python -m devtools.reference"
    )


def test_api_page_tables_are_generated_from_the_code():
    page = reference.API.read_text()
    assert reference.fill(page) == page, "docs/api.md is stale: run python -m devtools.reference"
    assert "| 413 | `too_large` |" in page
