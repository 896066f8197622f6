"""A real headless Chromium for the dashboard's tests, driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages are used (their
versions always match); when missing and we may install packages, they are
installed here, as ``.ci/run`` does. Selenium is synchronous, so every call
runs in a worker thread and the Trio tests keep serving the dashboard.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

import trio
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")

PACKAGES = ("chromium", "chromium-driver")


def find_chromium() -> tuple[str, str]:
    """Paths of the browser and its driver, installed first when missing."""

    def found() -> tuple[str, str] | None:
        browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
        return (browser, driver) if browser and driver else None

    if (paths := found()) is not None:
        return paths
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", *PACKAGES]
        if subprocess.run(install, capture_output=True, check=False, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False, env=env)
            subprocess.run(install, capture_output=True, check=True, env=env)
        if (paths := found()) is not None:
            return paths
    raise RuntimeError(
        "the dashboard's tests need Chromium and its driver: "
        "apt-get install chromium chromium-driver"
    )


def start_chromium() -> webdriver.Chrome:
    browser, driver = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no sandbox to use
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def _text(element: WebElement) -> str:
    return element.text


class Browser:
    """The driver, with every call moved off the Trio thread."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def find(self, css: str) -> WebElement:
        return await self.run(self.driver.find_element, By.CSS_SELECTOR, css)

    async def find_all(self, css: str) -> list[WebElement]:
        return await self.run(self.driver.find_elements, By.CSS_SELECTOR, css)

    async def _on_element(self, css: str, act: Callable[[WebElement], T]) -> T:
        """``act`` on the element, looked up again while it is not there yet
        (a page still loading after a form was sent) or stale (the overview
        swaps its section in as it refreshes), for up to 5 seconds."""
        with trio.move_on_after(5):
            while True:
                try:
                    return await self.run(
                        lambda: act(self.driver.find_element(By.CSS_SELECTOR, css))
                    )
                except (StaleElementReferenceException, NoSuchElementException):
                    await trio.sleep(0.02)
        return await self.run(lambda: act(self.driver.find_element(By.CSS_SELECTOR, css)))

    async def text(self, css: str) -> str:
        return await self._on_element(css, _text)

    async def wait_for_url(self, wanted: Callable[[str], bool], *, within: float = 5.0) -> str:
        """Until the page's address satisfies ``wanted`` (a form was sent)."""
        url = ""
        with trio.move_on_after(within):
            while not wanted(url := await self.run(lambda: self.driver.current_url)):
                await trio.sleep(0.02)
            return url
        raise AssertionError(f"still at {url}")

    async def click(self, css: str) -> None:
        await self._on_element(css, WebElement.click)

    async def type(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self.run(element.clear)
        await self.run(element.send_keys, text)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, source, *args)

    async def page_source(self) -> str:
        return await self.run(lambda: self.driver.page_source)

    async def wait_for_text(
        self, css: str, expected: str | Callable[[str], bool], *, within: float = 15.0
    ) -> str:
        """Until the element's text is ``expected`` (or satisfies it); the
        element may not exist yet. Returns the text."""
        wanted = expected if callable(expected) else expected.__eq__
        last = None
        with trio.move_on_after(within):
            while True:
                elements = await self.find_all(css)
                if elements:
                    try:
                        last = await self.run(_text, elements[0])
                    except StaleElementReferenceException:
                        continue  # swapped out by a refresh: look again
                    if wanted(last):
                        return last
                await trio.sleep(0.05)
        raise AssertionError(f"{css}: {last!r}, expected {expected!r}")
