"""The teaching dashboard: the model builder on hand-built scenarios, the command's user errors, the server's asset
guard, and the page in a real headless browser (Debian's ``chromium`` and ``chromedriver``, driven by Selenium).

``LOYALTYSIM_SCREENSHOT=docs/figures/dashboard.png pytest -n 0 tests/test_dashboard.py -k browser`` also saves the
page, after the run, as the README's screenshot.
"""

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from browser import free_port, headless_chromium, wait_until_served
from cli_process import clean_env, cli_args, finish, start
from loyaltysim.measures.tables import firms_table
from loyaltysim.scenario import ScenarioError, scenario_from_dict
from loyaltysim.viz.dashboard import (
    DEFAULT_PROGRAMME,
    build_model,
    build_scenario,
    dashboard_for,
)
from loyaltysim.viz.server import InstalledAssetsOnly

REPO = Path(__file__).resolve().parents[1]


def _scenario(**extra) -> dict:
    """A small market: two firms, one attribute of each Kano class, under names the dashboard must find itself."""
    data = {
        "name": "tiny",
        "time": {"step": "week", "horizon": "20 weeks", "warmup": "4 weeks"},
        "market": {
            "customers": {"population": 300, "switching_cost": 0.4},
            "attributes": [
                {"name": "network", "kano": "must_be"},
                {"name": "speed", "kano": "one_dimensional"},
                {"name": "lounge", "kano": "attractive"},
            ],
            "firms": [
                {"name": "Us", "price": 20.0, "unit_cost": 12.0,
                 "attributes": {"network": 0.7, "speed": 0.5, "lounge": 0.2}},
                {"name": "Them", "price": 21.0, "unit_cost": 12.0,
                 "attributes": {"network": 0.7, "speed": 0.6, "lounge": 0.3}},
            ],
            "network": {"kind": "none"},
        },
        "policy": {"firm": "Us"},
    }
    for key, value in extra.items():
        data[key] = value
    return data


@pytest.fixture(scope="module")
def tiny():
    return dashboard_for(scenario_from_dict(_scenario()), population=None)


# ------------------------------------------------------------------------------------------ the model builder


def test_the_attributes_are_found_by_kano_class_and_the_levers_start_at_the_scenarios_values(tiny):
    assert (tiny.focal, tiny.basic, tiny.latent) == ("Us", "network", "lounge")
    assert tiny.defaults == {"switching_cost": 0.4, "price": 20.0, "basic_level": 0.7, "latent_level": 0.2,
                             "programme": False, "earn_rate": 1.0, "winback": False,
                             "change_at": 0}
    assert build_scenario(tiny, {}).to_dict() == {**tiny.scenario.to_dict(),
                                                  "policy": {**tiny.scenario.to_dict()["policy"], "price": 20.0,
                                                             "programmes": [], "campaigns": []}}


def test_each_lever_lands_in_the_scenario(tiny):
    s = build_scenario(tiny, {"switching_cost": 1.25, "price": 24.5, "basic_level": 0.9, "latent_level": 0.65,
                              "programme": True, "earn_rate": 2.5, "winback": True})
    assert s.market.customers.switching_cost == 1.25
    us, them = s.effective_firms()
    assert us.price == 24.5 and them.price == 21.0
    assert us.attributes == {"network": 0.9, "speed": 0.5, "lounge": 0.65}
    assert them.attributes == {"network": 0.7, "speed": 0.6, "lounge": 0.3}
    [programme] = us.programmes
    assert (programme.kind, programme.name, programme.earn_rate) == ("points", "Us Points", 2.5)
    assert programme.expiry.days() == 364 and programme.rewards[0].points == DEFAULT_PROGRAMME["rewards"][0]["points"]
    [campaign] = us.campaigns
    assert campaign.kind == "win_back" and campaign.offer.discount == 0.3
    off = build_scenario(tiny, {"programme": False, "winback": False}).effective_firms()[0]
    assert off.programmes == [] and off.campaigns == []


def test_the_scenarios_own_programme_and_campaign_are_the_ones_switched():
    own = {"kind": "points", "name": "Miles", "earn_rate": 3.0, "expiry": "0 weeks"}
    retention = {"kind": "retention", "target": {"top_share": 0.1}}
    winback = {"kind": "win_back", "offer": {"discount": 0.5}}
    club = {"kind": "club", "name": "Club"}
    d = dashboard_for(scenario_from_dict(_scenario(policy={
        "firm": "Us", "programmes": [club, own], "campaigns": [winback, retention]})), population=None)
    assert d.defaults["programme"] is True and d.defaults["earn_rate"] == 3.0 and d.defaults["winback"] is True
    assert d.levers["programme"].label.startswith("Miles")
    us = build_scenario(d, {"earn_rate": 1.5}).effective_firms()[0]
    assert [(p.name, getattr(p, "earn_rate", None)) for p in us.programmes] == [("Club", None), ("Miles", 1.5)]
    assert us.programmes[1].expiry.days() == 0  # the rest of the scenario's programme is kept
    assert [c.kind for c in us.campaigns] == ["win_back", "retention"] and us.campaigns[0].offer.discount == 0.5
    off = build_scenario(d, {"programme": False, "winback": False}).effective_firms()[0]
    assert [p.name for p in off.programmes] == ["Club"] and [c.kind for c in off.campaigns] == ["retention"]


def test_a_scenario_without_a_basic_or_a_latent_attribute_is_refused_clearly():
    data = _scenario()
    data["market"]["attributes"][2]["kano"] = "one_dimensional"
    with pytest.raises(ScenarioError, match=r"needs a latent attribute \(kano = \"attractive\"\).*lounge "
                                            r"\(one_dimensional\)"):
        dashboard_for(scenario_from_dict(data), population=None)
    data["market"]["attributes"][0]["kano"] = "attractive"
    with pytest.raises(ScenarioError, match=r"needs a basic attribute \(kano = \"must_be\"\)"):
        dashboard_for(scenario_from_dict(data), population=None)


@pytest.mark.parametrize(("values", "message"), [
    ({"switching_cost": 3.5}, "switching_cost (Switching cost (utility)) = 3.5 is outside its range 0 to 3"),
    ({"price": 5.0}, "price (Us's price) = 5 is outside its range 10 to 30"),
    ({"latent_level": -0.1}, "latent_level (Us's lounge (latent)) = -0.1 is outside its range 0 to 1"),
    ({"earn_rate": 0.0}, "earn_rate (Points per unit of money) = 0 is outside its range 0.25 to 5"),
    ({"basic_level": "high"}, "basic_level (Us's network (basic)): expected a number, got 'high'"),
    ({"programme": 1}, "programme (Us Points (points programme)): expected on or off (true/false), got 1"),
    ({"volume": 11}, "unknown lever 'volume'"),
    ({"change_at": 2.5}, "change_at (The levers change at week (0: from the start)): expected a whole number, got 2.5"),
    ({"change_at": 20}, "is outside its range 0 to 19"),
])
def test_a_lever_out_of_range_is_rejected_clearly(tiny, values, message):
    with pytest.raises(ScenarioError) as caught:
        build_scenario(tiny, values)
    assert message in str(caught.value)


def test_the_built_model_steps_records_and_stops_at_the_horizon(tiny):
    model = build_model(tiny, {"switching_cost": 0.1, "programme": True}, seed=3)
    assert firms_table(model).empty and model.running
    model.step()
    assert model.levers["switching_cost"] == 0.1 and model.levers["price"] == 20.0
    assert model.programmes is not None
    while model.running:
        model.step()
    assert model.steps == 20
    series = model.series()
    assert len(series) == 20 * 2 and set(series["firm"]) == {"Us", "Them"}
    assert {"share", "retention", "satisfaction_basic", "satisfaction_latent", "js_hostage", "stage_advocate"} \
        <= set(series.columns)
    again = build_model(tiny, {"switching_cost": 0.1, "programme": True}, seed=3)
    again.run(20)
    assert firms_table(again)["share"].tolist() == series["share"].tolist()  # the same seed, the same run


def test_every_preset_builds_and_changes_only_its_own_lever():
    d = dashboard_for(scenario_from_dict(_scenario()), population=None)
    for name, changes in d.presets.items():
        values = d.values(name)
        build_scenario(d, values)
        assert {k for k in values if values[k] != d.defaults[k]} <= set(changes), name
        assert all(values[k] == v for k, v in changes.items()), name
    assert d.values("Protected market (switching cost 2.5)")["switching_cost"] == 2.5
    latent = d.values("Latent investment (lounge +0.2 at week 4)")
    assert latent["latent_level"] == pytest.approx(0.4) and latent["change_at"] == 4  # at the end of the warm-up


def test_levers_changed_later_arrive_as_scheduled_events_and_the_run_is_the_scenarios_until_then():
    d = dashboard_for(scenario_from_dict(_scenario(policy={"firm": "Us", "campaigns": [
        {"kind": "win_back", "offer": {"discount": 0.5}}]})), population=None)
    later = {"switching_cost": 1.5, "price": 18.0, "basic_level": 0.9, "programme": True, "winback": False,
             "change_at": 8}
    s = build_scenario(d, later)
    us = s.effective_firms()[0]
    assert s.market.customers.switching_cost == 0.4 and us.price == 20.0  # the scenario's, until week 8
    assert us.attributes == {"network": 0.7, "speed": 0.5, "lounge": 0.2}
    events = [e.model_dump(mode="json") for e in s.market.events]
    assert [(e["kind"], e["at"]) for e in events] == [("switching_cost_change", "8 weeks"), ("price_change", "8 weeks"),
                                                      ("attribute_change", "8 weeks")]
    assert events[1]["price"] == 18.0 and (events[2]["attribute"], events[2]["level"]) == ("network", 0.9)
    assert us.programmes[0].start.steps("week") == 8  # switched on: launched at the change
    assert us.campaigns[0].stop.steps("week") == 8 and us.campaigns[0].offer.discount == 0.5  # its own, stopped
    early = build_scenario(d, {"winback": False, "change_at": 3}).effective_firms()[0].campaigns[0]
    assert early.stop.steps("week") == 3
    ends = dashboard_for(scenario_from_dict(_scenario(policy={"firm": "Us", "campaigns": [
        {"kind": "win_back", "stop": "5 weeks"}]})), population=None)  # a campaign that stops before the change
    assert build_scenario(ends, {"winback": False, "change_at": 8}).effective_firms()[0].campaigns[0].stop.steps(
        "week") == 5

    # until the change the run is the scenario's own, step for step; then it differs
    changed, own = build_model(d, later, seed=5), build_model(d, {}, seed=5)
    changed.run(14)
    own.run(14)
    a, b = changed.series().set_index(["step", "firm"]), own.series().set_index(["step", "firm"])
    before = a.index.get_level_values("step") < 8
    pd.testing.assert_frame_equal(a[before], b[before])
    assert not a.loc[a.index.get_level_values("step") >= 10, "share"].equals(
        b.loc[b.index.get_level_values("step") >= 10, "share"])


def test_the_population_is_set_and_checked():
    assert dashboard_for(scenario_from_dict(_scenario()), 120).scenario.market.customers.population == 120
    with pytest.raises(ScenarioError, match="population"):
        dashboard_for(scenario_from_dict(_scenario()), 0)


# ------------------------------------------------------------------------------------------ the page in a notebook


def test_explore_renders_the_chosen_plots_with_the_levers_and_steps_when_asked():
    """What a notebook shows: the page rendered into widgets as Jupyter does (inside an app layout), without a
    browser. The preset sets the sliders; pressing Step redraws every plot."""
    import ipyvuetify as v
    import ipywidgets
    import solara

    from loyaltysim.viz.page import explore

    scenario = scenario_from_dict(_scenario())
    page = explore(scenario, plots=["shares", "kano"], preset="Protected market (switching cost 2.5)", population=None)
    _, rc = solara.render(solara.AppLayout(children=[page]), handle_error=False)
    sliders = {s.label: s.v_model for s in rc.find(v.Slider).widgets}
    assert sliders["Switching cost (utility)"] == 2.5 and sliders["Us's network (basic)"] == 0.7
    assert sliders["The levers change at week (0: from the start)"] == 0
    images = rc.find(ipywidgets.Image).widgets
    assert len(images) == 2
    before = [bytes(i.value) for i in images]
    rc.find(v.Btn, children=["Step"]).widget.click()
    assert all(bytes(i.value) != b for i, b in zip(rc.find(ipywidgets.Image).widgets, before, strict=True))
    rc.find(v.CardTitle, children=["This run: week 4 of 20"]).assert_single()  # Step runs a render interval (4)
    rc.close()


def test_explore_in_jupyter_sends_nothing(monkeypatch):
    """Solara's Jupyter display reports its first use (an internet address look-up, then usage statistics); after
    explore() it does neither."""
    import requests
    from solara.server import telemetry

    from loyaltysim.viz.page import explore

    calls = []
    monkeypatch.setattr(requests, "get", lambda *a, **k: calls.append(("get", a)))
    monkeypatch.setattr(requests, "post", lambda *a, **k: calls.append(("post", a)))
    monkeypatch.setattr(telemetry, "_jupyter_start_event_send", False)
    explore(scenario_from_dict(_scenario()), population=None)
    telemetry.jupyter_start()  # what the notebook's display calls
    telemetry.track("Solara Jupyter use")
    time.sleep(0.5)
    assert calls == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"plots": ["shares", "profit"]}, "unknown plot(s) ['profit']; the dashboard's plots are ['shares', "),
    ({"preset": "Monopoly"}, "unknown preset 'Monopoly'; this dashboard's presets are ['As in the scenario', "),
    ({"plots": "profit"}, "unknown plot(s) ['profit']"),
])
def test_explore_refuses_an_unknown_plot_or_preset_in_the_cell(kwargs, message):
    from loyaltysim.viz.page import explore

    with pytest.raises(ValueError) as caught:
        explore(scenario_from_dict(_scenario()), population=None, **kwargs)
    assert message in str(caught.value)


# ------------------------------------------------------------------------------------------ the server's asset guard


def test_only_installed_assets_are_served_from_the_cdn_path(tmp_path):
    (tmp_path / "pkg@1.0.0").mkdir()
    (tmp_path / "pkg@1.0.0" / "a.js").write_text("x")
    (tmp_path / "lib@2.0.0").mkdir()
    (tmp_path / "lib@2.0.0" / "__main.js").write_text("x")
    (tmp_path.parent / "secret.txt").write_text("s")
    passed = []

    async def app(scope, receive, send):
        passed.append(scope["path"])

    guard = InstalledAssetsOnly(app, tmp_path)

    def status(path: str) -> int | None:
        sent = []

        async def send(message):
            sent.append(message)

        asyncio.run(guard({"type": "http", "path": path}, None, send))
        return sent[0]["status"] if sent else None

    assert status("/_solara/cdn/pkg@1.0.0/a.js") is None  # passed on to Solara
    assert status("/_solara/cdn/lib@2.0.0") is None
    assert status("/") is None and status("/static/main.js") is None
    assert status("/_solara/cdn/pkg@1.0.0/b.js") == 404  # not installed: never fetched, never written
    assert status("/_solara/cdn/../secret.txt") == 404
    assert status("/_solara/cdn/pkg@1.0.0/../../secret.txt") == 404
    assert passed == ["/_solara/cdn/pkg@1.0.0/a.js", "/_solara/cdn/lib@2.0.0", "/", "/static/main.js"]


# ------------------------------------------------------------------------------------------ the command's user errors


@pytest.mark.parametrize(("args", "expected"), [
    (["does-not-exist.toml"], "does-not-exist.toml: 1 problem(s):\n  - file not found"),
    (["bad.toml"], "malformed TOML"),
    (["flat.toml"], "needs a latent attribute"),
    (["experiments/scenarios/baseline.toml", "--population", "0"], "Invalid value for '--population'"),
])
def test_bad_input_is_one_readable_error(tmp_path, args, expected):
    (tmp_path / "bad.toml").write_text("[market\n")
    data = (REPO / "experiments/scenarios/baseline.toml").read_text()
    (tmp_path / "flat.toml").write_text(data.replace('kano = "attractive"', 'kano = "one_dimensional"'))
    args = [str(REPO / a) if a.startswith("experiments/") else a for a in args]
    done = subprocess.run(cli_args("dashboard", *args), cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


def test_without_the_viz_extra_the_command_says_how_to_install_it(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'solara' or name.startswith('solara.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'solara'\", name='solara')\n"
        "sys.meta_path.insert(0, _Block())\n")
    env = clean_env(PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(cli_args("dashboard", REPO / "experiments/scenarios/baseline.toml"), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: the dashboard needs the viz extra (solara is not installed): pip install 'loyaltysim[viz]', or "
        "from a checkout: pip install -e '.[viz]'"]


# ------------------------------------------------------------------------------------------ the page in a browser


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (Linux's /proc/net tables)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # LISTEN
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    proc = start("dashboard", REPO / "experiments/scenarios/baseline.toml", "--port", port, "--population", 1000,
                 cwd=tmp_path_factory.mktemp("dashboard"))
    url = f"http://127.0.0.1:{port}/"
    wait_until_served(url, proc, 60, lambda: f"the dashboard did not serve {url}:\n{finish(proc).stderr}")
    yield proc, port, url
    proc.terminate()  # SIGTERM: uvicorn shuts down cleanly
    done = finish(proc)
    assert done.returncode in (0, -15), done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_the_server_listens_on_loopback_only(server):
    assert _listening_addresses(server[1]) == {"127.0.0.1"}


def test_browser_a_slider_and_play_change_the_plots(server, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _, _, url = server
    browser.get(url)
    wait = WebDriverWait(browser, 60, poll_frequency=0.25)

    def button(text: str):
        return browser.find_element(By.XPATH, f"//button[normalize-space(.)='{text}']")

    def plots() -> list[str]:
        return [img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, "img.widget-image")]

    def page_text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    wait.until(lambda _: len(plots()) == 5)
    before = plots()
    assert "This run: week 0 of 312" in page_text() and "Switching cost (utility): 0.5" in page_text()

    slider = browser.find_element(By.XPATH, "//div[@role='slider'][@aria-label='Switching cost (utility)']")
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # 4 steps of 0.05
    wait.until(lambda _: float(slider.get_attribute("aria-valuenow")) == pytest.approx(0.7))
    for _ in range(10):  # Reset starts a run with the slider's value, once the server has it (a round trip)
        button("Reset").click()
        try:
            WebDriverWait(browser, 3, poll_frequency=0.25).until(
                lambda _: "Switching cost (utility): 0.7" in page_text())
            break
        except TimeoutException:
            continue
    assert "Switching cost (utility): 0.7" in page_text()

    button("\u25b6").click()  # play
    wait.until(lambda _: "This run: week 0 " not in page_text() and "This run: week 1 " not in page_text())
    wait.until(lambda _: int(page_text().split("This run: week ")[1].split()[0]) >= 12)
    button("\u275a\u275a").click()  # pause
    time.sleep(1.0)  # the last render
    after = plots()
    assert len(after) == 5 and all(a != b for a, b in zip(after, before, strict=True))
    assert not browser.find_elements(By.CSS_SELECTOR, ".v-alert.error"), "the page shows an error"
    shot = os.environ.get("LOYALTYSIM_SCREENSHOT")
    if shot:
        browser.save_screenshot(str(Path(shot).resolve()))


def test_the_command_warns_when_not_on_loopback(tmp_path):
    """It listens where told (here every IPv4 address, on a free port), after a one-line warning."""
    port = free_port()
    proc = start("dashboard", REPO / "experiments/scenarios/baseline.toml", "--host", "0.0.0.0", "--port", port,
                 cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _listening_addresses(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listening_addresses(port) == {"0.0.0.0"}
    finally:
        proc.terminate()
        done = finish(proc)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: listening on 0.0.0.0, not a loopback address: anyone who can reach this machine "
                        f"on port {port} can use the dashboard"]

