"""Page timings of a running dashboard, in real headless Chromium.

For each page: load it in a fresh tab, wait until Streamlit has finished running the page and its
content is there, and print the time (median and worst of ``--repeat`` loads). The first load of a
page fills the dashboard's caches; later loads within ``BIKECOUNT_DASHBOARD_CACHE_SECONDS`` reuse
them, so both cold and warm figures are printed.

    .venv/bin/python benchmarks/dashboard.py --url http://127.0.0.1:8501 [--repeat 5]

Needs Debian's chromium and chromium-driver (`make system-deps`) and a stack (`bikecount up`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

PAGES = {
    "map": ("", "g.mark-symbol path"),
    "counter": ("counter", '[data-testid="stTable"]'),
    "models": ("models", '[data-testid="stDataFrame"], [data-testid="stAlert"]'),
    "monitoring": ("monitoring", '[data-testid="stVegaLiteChart"], [data-testid="stAlert"]'),
    "ask": ("ask", '[data-testid="stFormSubmitButton"]'),
}
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
)  # fmt: skip


def load_seconds(driver: webdriver.Chrome, url: str, selector: str, timeout: float = 60) -> float:
    start = time.perf_counter()
    driver.get(url)
    while time.perf_counter() - start < timeout:
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        if not running and driver.find_elements(By.CSS_SELECTOR, selector):
            return time.perf_counter() - start
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not show {selector} within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='bikecount-bench-')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        print(f"{'page':<12}{'first (s)':>10}{'median (s)':>12}{'worst (s)':>11}")
        for name, (path, selector) in PAGES.items():
            url = f"{args.url.rstrip('/')}/{path}"
            times = [load_seconds(driver, url, selector) for _ in range(args.repeat + 1)]
            first, warm = times[0], times[1:]
            print(f"{name:<12}{first:>10.2f}{statistics.median(warm):>12.2f}{max(warm):>11.2f}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
