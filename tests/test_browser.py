"""The report as a person sees it: headless Chromium opens it offline, no JavaScript errors,
every plot rendered, and a screenshot saved (reports/screenshots/) for a human to look at."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from harness.core.config import ClaimSpec
from harness.engine.claims_engine import evaluate
from harness.core.paths import REPO_ROOT
from harness.entry.session import write_outputs
from tests import planted

pytestmark = pytest.mark.browser
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is required for the report test: apt-get install chromium (see README)"
    return path


def run_chromium(*args: str) -> str:
    with tempfile.TemporaryDirectory() as profile_dir:
        result = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *args],
                                capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = planted.claims_run(effect=True)
    facet = ClaimSpec(family="facet", name="top", statement="planted facet claim", params={"anchor": planted.ANCHOR})
    for spec in (*run.profile.claims, facet):
        run.record(evaluate(spec, run.analysis, control=run.control))
    out = tmp_path_factory.mktemp("report")
    return write_outputs(run.ledger(exit_status=0), out)


def test_report_renders_without_errors(report):
    dom = run_chromium("--dump-dom", report.as_uri())
    errors = re.search(r'<div id="js-errors" hidden="">(.*?)</div>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == ""
    plots = re.findall(r'<div class="plot( js-plotly-plot)?" id="([^"]+)"([^>]*)>', dom)
    assert len(plots) >= 5
    for plotly_class, plot_id, attributes in plots:
        assert plotly_class and 'data-rendered="1"' in attributes, f"plot {plot_id} did not render"
    plot_ids = [p[1] for p in plots]
    assert "facet-facet-top" in plot_ids  # the facet family's own section and heatmap
    assert dom.count('class="main-svg"') >= len(plot_ids)  # plotly drew an SVG for each


def test_screenshot_is_saved(report):
    shots = REPO_ROOT / "reports" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    target = shots / "planted-report.png"
    run_chromium("--window-size=1400,2200", f"--screenshot={target}", report.as_uri())
    assert target.stat().st_size > 50_000  # a real page, not a blank one
