"""Regenerate docs/dashboard.png: a quickstart-like study (digits, TPE, median pruning) with its live page in Chromium.

    python docs/dashboard_screenshot.py   # needs /usr/bin/chromium and /usr/bin/chromedriver, and Pillow

The picture is taken while the study runs (trials from HELD_FROM on wait for it) and quantized to keep it small.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
from distributed import Client, LocalCluster
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import daskopt
from daskopt.dashboard import running_dashboards

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "quickstart"))
from digits import objective  # noqa: E402

COUNT = """
const found = [];
const visit = (root) => {
  root.querySelectorAll('.daskopt-count-value').forEach((e) => found.push(Number(e.textContent)));
  root.querySelectorAll('*').forEach((e) => { if (e.shadowRoot) visit(e.shadowRoot); });
};
visit(document);
return found.length ? found[0] : -1;
"""
HAS_TEXT = """
const visit = (root) => root.textContent.includes(arguments[0]) ||
  Array.from(root.querySelectorAll('*')).some((e) => e.shadowRoot && visit(e.shadowRoot));
return visit(document.documentElement);
"""


HELD_FROM = 50


def slowed(trial: optuna.Trial, gate: str) -> float:
    """The quickstart objective, slowed a little; trials >= HELD_FROM wait for ``gate`` (the screenshot)."""
    while trial.number >= HELD_FROM and not os.path.exists(gate):
        time.sleep(0.05)
    time.sleep(0.2)
    return objective(trial)


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="quickstart",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
    )
    gate = Path(tempfile.mkdtemp()) / "gate"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        run = threading.Thread(
            target=daskopt.optimize,
            args=(study, functools.partial(slowed, gate=str(gate))),
            kwargs=dict(n_trials=60, client=client, dashboard={"port": 0}, show_progress_bar=False),
        )
        run.start()
        while not running_dashboards():
            time.sleep(0.1)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        flags = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1750")
        for flag in flags:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tempfile.mkdtemp()}")
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            driver.get(running_dashboards()[0])
            while driver.execute_script(COUNT) < HELD_FROM or not driver.execute_script(HAS_TEXT, "recomputed at most"):
                time.sleep(0.2)
            time.sleep(1.1)
            raw = ROOT / "test-artifacts" / "dashboard-raw.png"
            raw.parent.mkdir(exist_ok=True)
            driver.save_screenshot(str(raw))
        finally:
            gate.touch()
            driver.quit()
            run.join()
    image = Image.open(raw).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    image.save(ROOT / "docs" / "dashboard.png", optimize=True)
    print(f"docs/dashboard.png: {(ROOT / 'docs' / 'dashboard.png').stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
