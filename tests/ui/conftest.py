"""One headless Chromium for every dashboard test of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .browser import Browser, start_chromium


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    driver = start_chromium()
    try:
        yield Browser(driver)
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[Browser]:
    """The session's browser, its cookies cleared after each test."""
    yield chromium
    chromium.driver.delete_all_cookies()
