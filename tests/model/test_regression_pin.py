"""The regression pin of issue 13: with every mechanism of the second behaviour pass switched off, a run reproduces
the first pass's dynamics bit for bit, so each mechanism's effect is measurable by a paired ablation.

Four small markets are run with every second-pass switch set explicitly off, each for 112 weeks (the warm-up is 52):
the contractual and the repertoire baselines (300 customers; Rival B's price cut at week 104), the programme market
with a points programme launched at week 52 and copied by Rival A at week 78 (300 customers; the price cut too), and
the win-back market (500 customers; a price rise, a service crisis, win-back rounds from week 52 to 104). At the end
the customers' state arrays are hashed (SHA-256; every array CustomerState had before the second pass,
PINNED_FIELDS), and so are the firms' customer counts after every step; the digests must equal the ones pinned in
tests/data/regression_pin/digests.json.

The pinned digests were computed by this module's measurement on the code of commit bf9f620, the code before any
second-pass mechanism existed (it has no switches, so they were left out there: ``--no-switches``). The scenarios are
not read from experiments/scenarios, whose switches are about to be turned on and whose first-pass values may be
recalibrated: each is a full scenario written out under tests/data/regression_pin/ (by bf9f620's ``to_dict`` from the
shipped files of that commit, with the overrides of SOURCES), so the pin depends only on the model's code.

Re-pin (after a change that is meant to change first-pass dynamics), from the repository root::

    PYTHONPATH=src .venv/bin/python tests/model/test_regression_pin.py --write
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "regression_pin"
DIGESTS = DATA / "digests.json"
REPIN = "PYTHONPATH=src .venv/bin/python tests/model/test_regression_pin.py --write"
SEED = 1
MARKETS = ("contractual", "repertoire", "programmes", "winback")

# The second pass's switches: each is set explicitly (off for the pin), whatever the scenario's default is.
SWITCHES = (
    "market.customers.attention.enabled",
    "market.customers.reference_price.enabled",
    "market.customers.market_expectations.enabled",
    "market.customers.reliability_choice.enabled",
    "market.customers.attainable_rewards.enabled",
    "market.tastes.enabled",
    "market.consideration.enabled",
)
# Switches of mechanisms added after the second pass: off by default, so the pinned files (which predate them and
# do not name them) run without them; the test below checks that they are off by default.
LATER_SWITCHES = (
    "market.customers.lifetimes.enabled",
    "market.customers.arrivals.enabled",
    "market.outside_option.enabled",
)

# Every array of CustomerState at bf9f620, in its order: the state the pin hashes.
PINNED_FIELDS = (
    "segment", "value_tier", "purchase_rate", "basket", "variety", "price_sensitivity", "weights", "threshold",
    "active", "current", "previous", "tenure", "relationship_purchases", "expectation", "perceived", "satisfaction",
    "attitude", "financial_cost", "club", "manager", "manager_lost", "wallet", "last_buy", "since", "last_failure",
    "switch_cause", "last_score",
    "relationship_value", "relationship_revenue", "lost_value", "lost_at", "offer_firm", "offer_until",
    "offer_discount", "offer_upgrade", "offer_cost", "contacted_at", "regained_by", "regained_at",
    "step_firm", "step_purchases", "step_units", "step_failed", "step_complained", "step_recovered", "step_left",
    "step_cause", "step_gained", "step_discount", "step_member_discount", "step_regained", "step_lifetime_value",
    "step_lifetime_revenue", "step_second_ended",
)
# Arrays added since, left out: the last answer about each firm (measurement), the reference price and the
# reliability beliefs (their mechanisms). Tastes and awareness are not CustomerState arrays: they live in
# LoyaltyMarket.tastes and .consideration, which are None when switched off.
EXCLUDED_FIELDS = ("scores", "ref_price", "rel_belief")

# How the pinned scenario files were made (``--dump-scenarios``, run on bf9f620): a shipped file, changed at these
# paths. The test reads only the files written under tests/data/regression_pin/.
POINTS = {"kind": "points", "name": "Points", "start": "52 weeks", "earn_rate": 1.0,
          "rewards": [{"points": 1500, "value": 15.0, "cost": 15.0}], "expiry": "52 weeks",
          "launch_cost": 50000.0, "operating_cost": "2 per year"}
SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "contractual": ("baseline.toml", {"market.customers.population": 300, "time.horizon": "112 weeks"}),
    "repertoire": ("baseline_repertoire.toml", {"market.customers.population": 300, "time.horizon": "112 weeks"}),
    "programmes": ("programmes.toml", {"market.customers.population": 300, "time.horizon": "112 weeks",
                                       "policy.programmes": [POINTS],
                                       "market.firms[1].reaction.copy_programmes": True}),
    "winback": ("winback.toml", {"market.customers.population": 500, "time.horizon": "112 weeks"}),
}


# --- the measurement -----------------------------------------------------------------------------------------------
def _set(data: dict, path: str, value: Any) -> None:
    """Set a dotted path (with [i] indices) in a scenario dict, making the tables on the way that are missing."""
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        node = node.setdefault(name, {})
        if index:
            node = node[int(index.rstrip("]"))]
    node[parts[-1]] = copy.deepcopy(value)


def pinned_scenario(market: str) -> dict:
    """The pinned scenario of ``market``, as written under tests/data/regression_pin/ (no switch in it)."""
    return json.loads((DATA / f"{market}.json").read_text())


def with_switches(data: dict, on: tuple[str, ...] = ()) -> dict:
    """``data`` with every second-pass switch set explicitly: off, except the paths in ``on``."""
    assert set(on) <= set(SWITCHES), f"not a second-pass switch: {sorted(set(on) - set(SWITCHES))}"
    data = copy.deepcopy(data)
    for path in SWITCHES:
        _set(data, path, path in on)
    return data


def _digest(arrays: list[tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name, x in arrays:
        x = np.ascontiguousarray(x)
        h.update(f"{name}:{x.dtype.str}:{x.shape};".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def measure(data: dict, seed: int = SEED) -> dict[str, Any]:
    """Run the scenario ``data`` over its horizon and hash the customers' state at the end (PINNED_FIELDS, each and
    together) and the firms' customer counts after every step (also returned, for the failure message)."""
    model = LoyaltyMarket(scenario_from_dict(data), seed=seed)
    counts = []
    for _ in range(model.config.steps()):
        model.step()
        counts.append([int(f.metrics["customers"]) for f in model.firms])
    state = [(name, getattr(model.customers, name)) for name in PINNED_FIELDS]
    return {
        "state": _digest(state),
        "fields": {name: _digest([(name, x)])[:16] for name, x in state},
        "counts": _digest([("customers", np.array(counts, dtype=np.int64))]),
        "customer_counts": counts,
    }


def _versions() -> dict[str, str]:
    import scipy

    return {"numpy": np.__version__, "scipy": scipy.__version__, "python": sys.version.split()[0]}


# --- the tests -----------------------------------------------------------------------------------------------------
def _pin() -> dict:
    return json.loads(DIGESTS.read_text())


def _failure(market: str, pin: dict, got: dict) -> str:
    expected = pin["markets"][market]
    lines = [f"{market}: first-pass dynamics changed with every second-pass mechanism off: outputs are no longer "
             f"comparable to runs before the second pass; if intended, re-pin by running `{REPIN}` from the "
             "repository root (and say why in the commit)."]
    moved = [name for name in PINNED_FIELDS if got["fields"][name] != expected["fields"].get(name)]
    if moved:
        lines.append(f"customer state arrays that differ at the end: {', '.join(moved)}")
    if got["counts"] != expected["counts"]:
        old, new = np.array(expected["customer_counts"]), np.array(got["customer_counts"])
        if old.shape != new.shape:
            lines.append(f"firms' customer counts: {old.shape} steps x firms pinned, {new.shape} now")
        else:
            step = int(np.argwhere(old != new)[0][0])
            lines.append(f"firms' customer counts first differ after step {step + 1}: pinned {old[step].tolist()}, "
                         f"now {new[step].tolist()}")
    versions = _versions()
    differ = [f"{k} {pin['versions'][k]} then, {v} now" for k, v in versions.items()
              if k != "python" and pin["versions"].get(k) != v]
    if differ:
        lines.append(f"the pin was computed with other library versions ({'; '.join(differ)}): a numpy or scipy "
                     "release can move float results by themselves, so check the difference under the pinned "
                     "versions before deciding the model changed.")
    return "\n".join(lines)


@pytest.mark.parametrize("market", MARKETS)
def test_first_pass_dynamics_are_pinned(market):
    pin = _pin()
    got = measure(with_switches(pinned_scenario(market)))
    expected = pin["markets"][market]
    if got["state"] != expected["state"] or got["counts"] != expected["counts"]:
        pytest.fail(_failure(market, pin, got), pytrace=False)


def test_a_mechanism_switched_on_breaks_the_pin():
    """The pin can fail: the contractual market with reference prices on ends in another state, with other counts."""
    expected = _pin()["markets"]["contractual"]
    got = measure(with_switches(pinned_scenario("contractual"), on=("market.customers.reference_price.enabled",)))
    assert got["state"] != expected["state"]
    assert got["counts"] != expected["counts"]
    assert got["fields"]["satisfaction"] != expected["fields"]["satisfaction"]  # first-pass state moved with it


def test_the_pin_switches_every_mechanism_off_and_hashes_every_earlier_array():
    """Every on/off switch the scenario schema has is one the pin sets, and every CustomerState array is either
    hashed (it existed before the second pass) or left out by name, so a new mechanism or array is a decision."""
    from dataclasses import fields

    from loyaltysim.model.state import CustomerState

    data = scenario_from_dict(with_switches(pinned_scenario("repertoire"))).to_dict()
    found = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else key
                if key == "enabled":
                    found.append(where)
                walk(value, where)

    walk(data, "")
    assert sorted(found) == sorted(SWITCHES + LATER_SWITCHES)
    for path in LATER_SWITCHES:  # off unless a scenario says otherwise: the pinned files run without them
        node: Any = data
        for part in path.split("."):
            node = node[part]
        assert node is False, path
    # the package's own list, which the benchmarks and the oracle tests switch off (kept apart from SWITCHES so that
    # this module also runs on the code before the second pass, to re-pin)
    from loyaltysim.scenario import SECOND_PASS_SWITCHES

    assert sorted(SECOND_PASS_SWITCHES) == sorted(SWITCHES)
    names = {f.name for f in fields(CustomerState)}
    assert not set(PINNED_FIELDS) & set(EXCLUDED_FIELDS)
    assert names == set(PINNED_FIELDS) | set(EXCLUDED_FIELDS)


def test_the_pin_records_how_it_was_made():
    pin = _pin()
    assert set(pin["markets"]) == set(MARKETS)
    assert {"numpy", "scipy", "python"} <= set(pin["versions"])
    for market in MARKETS:
        data = pinned_scenario(market)
        _, changes = SOURCES[market]
        assert data["market"]["customers"]["population"] == changes["market.customers.population"]
        assert data["time"]["horizon"] == changes["time.horizon"]
        assert not any(key in data["market"]["customers"] for key in
                       ("attention", "reference_price", "market_expectations", "reliability_choice",
                        "attainable_rewards")), "the pinned scenario files hold no switch: the test sets them"


# --- re-pinning --------------------------------------------------------------------------------------------------
def _dump_scenarios() -> None:
    """Write the pinned scenario files from the shipped ones (run on bf9f620's code: its ``to_dict`` has no switch)."""
    DATA.mkdir(parents=True, exist_ok=True)
    for market, (name, changes) in SOURCES.items():
        data = tomllib.loads((ROOT / "experiments" / "scenarios" / name).read_text())
        for path, value in changes.items():
            _set(data, path, value)
        full = scenario_from_dict(data, source=name).to_dict()
        (DATA / f"{market}.json").write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
        print(f"wrote {DATA / f'{market}.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Print (and with --write, store) fresh regression-pin digests.")
    parser.add_argument("--write", action="store_true", help=f"store them in {DIGESTS.relative_to(ROOT)}")
    parser.add_argument("--no-switches", action="store_true",
                        help="leave the second pass's switches out of the scenarios (for code that predates them, "
                             "such as bf9f620, where the pin was first computed)")
    parser.add_argument("--code", default="", help="the commit measured, recorded with --write")
    parser.add_argument("--dump-scenarios", action="store_true",
                        help="first rewrite the pinned scenario files from experiments/scenarios (see SOURCES)")
    args = parser.parse_args()
    if args.dump_scenarios:
        _dump_scenarios()
    markets = {}
    for market in MARKETS:
        data = pinned_scenario(market)
        got = measure(data if args.no_switches else with_switches(data))
        markets[market] = got
        print(f"{market}: state {got['state']} counts {got['counts']}", flush=True)
    if args.write:
        pin = {"code": args.code, "seed": SEED, "versions": _versions(), "command": REPIN, "markets": markets}
        text = json.dumps(pin, indent=1)
        text = re.sub(r"\[[\d\s,-]*\]", lambda m: f"[{', '.join(re.findall(r'-?\d+', m.group(0)))}]",
                      text)  # a step's counts on one line
        DIGESTS.write_text(text + "\n")
        print(f"wrote {DIGESTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
