"""NNI's web UI in a real browser: an ``nnictl`` strategy comparison read back through headless Chromium.

Runs a small ``nnictl create`` experiment (DASH, RegularizedEvolution and ``none`` on the generated
``lag`` task, one trial each), waits for it on 127.0.0.1, then drives Debian's Chromium (Playwright,
``executable_path=/usr/bin/chromium``) through the overview, the trials table, its "Add/Remove
columns" dialog and a trial's intermediate results, checking what a user reads there:

* every final-metric key has its own column title (no ``arch (metric)`` sevenfold); NNI offers
  columns for numeric metrics only, so (k, d) per layer are the ``k_<layer>``/``d_<layer>`` numbers;
* the strategy (the ``search.strategy`` parameter) shows as a table column, without expanding a row;
* intermediate records are tagged with their stage (``stage_index``, ``search_*``/``retrain_*`` keys);
* no trial log holds NNI's positional-argument warning;
* the search inside each trial left no experiment in NNI's list beyond this one.

Screenshots go to ``benchmarks/results/webui/``. NNI's manager binds every interface, so run it in a
loopback-only network namespace:

    unshare -n bash -c 'ip link set lo up && .venv/bin/python -m benchmarks.webui_check'

Needs ``pip install 'nni-dash[browser]'`` (playwright) and ``apt-get install chromium``.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._runner import RESULTS, machine, package_commit

SHOTS = RESULTS / "webui"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PIPELINE = """\
task: {name: lag, options: {lag: 14, n_train: 128, n_val: 64, n_test: 64}}
backbone: {name: resnet1d, args: {base_channels: 4, kernel_sizes: [3, 5, 9], dilations: [1, 7]}}
budget: {mode: time, minutes: 0.75}
tune: {enabled: false}
trainer: {threads: 1}
"""
STRATEGIES = ["DASH", "RegularizedEvolution", "none"]


def get(port: int, route: str):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{route}", timeout=10) as response:
        return json.loads(response.read())


def start_experiment(work: Path, port: int) -> None:
    (work / "lag.yml").write_text(PIPELINE)
    exp = {"experimentName": "nni-dash-webui-check",
           "searchSpace": {"search.strategy": {"_type": "choice", "_value": STRATEGIES}},
           "trialCommand": f"{sys.executable} -m nni_dash.nni_trial --config lag.yml --command run",
           "trialCodeDirectory": ".", "trialConcurrency": 1, "maxTrialNumber": len(STRATEGIES),
           "tuner": {"name": "GridSearch"}, "trainingService": {"platform": "local", "useActiveGpu": False},
           "experimentWorkingDirectory": str(work / "nni-experiments")}
    (work / "exp.yml").write_text(yaml.safe_dump(exp))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([str(Path(sys.executable).with_name("nnictl")), "create", "--config", str(work / "exp.yml"),
                    "--port", str(port)], cwd=work, env=env, check=True, capture_output=True, timeout=120)


def wait_done(port: int, timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = get(port, "trial-jobs")
        if len([j for j in jobs if j["status"] in ("SUCCEEDED", "FAILED")]) >= len(STRATEGIES):
            return jobs
        time.sleep(3)
    raise TimeoutError(f"experiment not done after {timeout:.0f} s")


def browse(port: int) -> dict[str, object]:
    """Drive the UI; return what was read off it."""
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    seen: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.goto(f"http://127.0.0.1:{port}/oview")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
        page.goto(f"http://127.0.0.1:{port}/detail")
        page.wait_for_timeout(4000)
        page.get_by_text("Add/Remove columns").first.click()
        page.wait_for_timeout(1500)
        dialog = page.locator("div[role=dialog]").first
        # labels start with the checkbox's icon glyph (a private-use character)
        seen["column_titles"] = [t for t in (re.sub(r"[^\x20-\x7e]", "", t).strip()
                                             for t in dialog.locator("label").all_inner_texts()) if t]
        page.screenshot(path=str(SHOTS / "columns_dialog.png"))
        # the strategy (a search-space parameter) and the (k, d) of the first two layers
        wanted = [t for t in seen["column_titles"] if t.startswith("search.strategy")]
        wanted += [t for t in seen["column_titles"] if t.startswith(("k_b1c1", "d_b1c1", "k_b1c2", "d_b1c2"))]
        seen["ticked"] = wanted
        for title in wanted:
            dialog.get_by_text(title).first.click()
        page.get_by_role("button", name="Save").first.click()
        page.wait_for_timeout(2000)
        seen["table_headers"] = [t for t in (re.sub(r"[^\x20-\x7e]", "", t).strip()
                                             for t in page.locator("[role=columnheader]").all_inner_texts()) if t]
        seen["table_text"] = page.locator("[role=grid]").first.inner_text()
        page.screenshot(path=str(SHOTS / "trials_table.png"), full_page=True)
        # a trial's intermediate results (the detail table's "Intermediate results" view)
        page.get_by_text("Intermediate result", exact=True).first.click()
        page.wait_for_timeout(2500)
        page.screenshot(path=str(SHOTS / "intermediate.png"), full_page=True)
        browser.close()
    return seen


def main() -> int:
    port = 8765
    work = Path(tempfile.mkdtemp(prefix="nni-dash-webui-"))
    nni_list = Path.home() / "nni-experiments" / ".experiment"
    before = set(json.loads(nni_list.read_text())) if nni_list.is_file() else set()
    start_experiment(work, port)
    failures: list[str] = []
    try:
        exp_id = get(port, "experiment")["id"]
        jobs = wait_done(port)
        records = get(port, "metric-data")
        seen = browse(port)
        statuses = {json.loads(j["hyperParameters"][0])["parameters"]["search.strategy"]: j["status"] for j in jobs}
        if set(statuses.values()) != {"SUCCEEDED"}:
            failures.append(f"trial statuses {statuses}")
        finals = [json.loads(json.loads(r["data"])) if isinstance(json.loads(r["data"]), str)
                  else json.loads(r["data"]) for r in records if r["type"] == "FINAL"]
        keys = sorted({k for f in finals for k in f})
        if any("/" in k for k in keys):
            failures.append(f"final-metric keys with '/': {keys}")
        titles = seen["column_titles"]
        if len(titles) != len(set(titles)):
            failures.append(f"duplicate column titles: {titles}")
        if not any("strategy" in h for h in seen["table_headers"]):
            failures.append(f"no strategy column in the trials table: {seen['table_headers']}")
        if not all(s in seen["table_text"] for s in STRATEGIES):
            failures.append("the trials table does not name every strategy")
        periodical = [json.loads(r["data"]) for r in records if r["type"] == "PERIODICAL"]
        periodical = [json.loads(v) if isinstance(v, str) else v for v in periodical]
        stages = sorted({int(m.get("stage_index", -1)) for m in periodical})
        if -1 in stages or 0 not in stages or 2 not in stages:
            failures.append(f"intermediate records without a stage tag: stage_index values {stages}")
        warned = [j["trialJobId"] for j in jobs
                  if "positional arguments" in (Path(j["logPath"].split("://")[-1].split(":", 1)[-1])
                                                / "trial.stderr").read_text(errors="replace")]
        if warned:
            failures.append(f"positional-argument warnings in trials {warned}")
        after = set(json.loads(nni_list.read_text())) if nni_list.is_file() else set()
        stray = after - before - {exp_id}
        if stray:
            failures.append(f"stray experiments in {nni_list}: {sorted(stray)}")
    finally:
        subprocess.run([str(Path(sys.executable).with_name("nnictl")), "stop", "--all"], capture_output=True,
                       timeout=60)
    report = [f"# Web UI check ({datetime.date.today().isoformat()})", "",
              f"Machine: {machine()}. Code: {package_commit()}. Chromium: "
              f"{subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True).stdout.strip()}.", "",
              "Command: `unshare -n bash -c 'ip link set lo up && .venv/bin/python -m benchmarks.webui_check'`", "",
              f"Experiment: {', '.join(STRATEGIES)} on the generated lag task, one nnictl trial each.", "",
              f"- final-metric keys: {', '.join(f'`{k}`' for k in keys)}",
              f"- column titles in Add/Remove columns: {', '.join(f'`{t}`' for t in titles)}",
              f"- trials-table headers after ticking {', '.join(f'`{t}`' for t in seen['ticked'])}: "
              f"{', '.join(f'`{h}`' for h in seen['table_headers'] if h)}",
              f"- intermediate stage_index values: {stages}", "",
              "Result: " + ("all checks passed" if not failures else "FAILED: " + "; ".join(failures)), "",
              "Screenshots: overview.png, columns_dialog.png, trials_table.png, intermediate.png."]
    (SHOTS / "README.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
