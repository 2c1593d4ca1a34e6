"""Categories, coalitions and co-branded cards: the customers' other needs, one currency across partners, the
settlement between operator and partners, and what the partners gain."""

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.scenario import ScenarioError, scenario_from_dict
from same_state import assert_same_arrays

SCENARIO = Path(__file__).resolve().parents[3] / "experiments" / "scenarios" / "programmes.toml"
COALITION = {"kind": "coalition", "name": "Coalition", "partners": ["PetrolCo", "StoreCo"], "fee": 0.012,
             "reimbursement": 0.01, "rewards": [{"points": 400, "value": 4.0, "cost": 3.0}], "expiry": "26 weeks",
             "operating_cost": "2 per year", "launch_cost": 1000.0}
COBRAND = {"kind": "cobrand", "name": "Card", "partner": "StoreCo", "partner_discount": 0.05, "fee": 0.004,
           "rewards": [{"points": 400, "value": 4.0}], "expiry": "26 weeks"}


def _data(n: int = 1500, weeks: int = 40, programmes=(), market: str | None = None) -> dict:
    data = tomllib.loads(SCENARIO.read_text())
    data["market"]["customers"]["population"] = n
    data["time"]["horizon"] = f"{weeks} weeks"
    data["time"]["warmup"] = "10 weeks"
    if market:
        data["market"]["type"] = market
    if market == "contractual":  # personal repertoires belong to a repertoire market
        data["market"].pop("tastes", None)
        data["market"].pop("consideration", None)
    data["policy"]["programmes"] = list(programmes)
    return data


@pytest.fixture(scope="module")
def coalition_run():
    sc = scenario_from_dict(_data(programmes=[COALITION, COBRAND]))
    return sc, simulate(sc, seed=3)


def test_settlement_balances_to_zero_across_operator_and_partners(coalition_run):
    _, result = coalition_run
    s = result.tables["settlement"]
    coalition = s[s["programme"] == "Coalition"]
    assert set(coalition["party"]) == {"Focal", "PetrolCo", "StoreCo", "Coalition operator"}
    flows = coalition.groupby("step").apply(lambda g: g["received"].sum() - g["paid"].sum(), include_groups=False)
    np.testing.assert_allclose(flows.to_numpy(), 0.0, atol=1e-6)
    assert coalition["paid"].sum() > 0  # money did move
    partners = coalition[coalition["role"] == "partner"]
    operator = coalition[coalition["role"] == "operator"].set_index("step")
    by_step = partners.groupby("step")[["points_issued", "points_redeemed"]].sum()
    # the operator's points are the partners' (birthday points aside: none here), and its flows follow the rates
    np.testing.assert_allclose(by_step["points_issued"], operator["points_issued"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(by_step["points_redeemed"], operator["points_redeemed"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(partners["paid"], 0.012 * partners["points_issued"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(partners["received"], 0.01 * partners["points_redeemed"], rtol=1e-12, atol=1e-9)
    # each partner gave the rewards redeemed with it: reward cost per point redeemed = 3 / 400
    np.testing.assert_allclose(partners["reward_cost"], partners["points_redeemed"] * 3.0 / 400, atol=1e-9)
    card = s[s["programme"] == "Card"]
    assert set(card["party"]) == {"Focal", "StoreCo"}
    np.testing.assert_allclose(card.groupby("step").apply(lambda g: g["received"].sum() - g["paid"].sum(),
                                                          include_groups=False), 0.0, atol=1e-9)


def test_every_party_books_its_settlement(coalition_run):
    sc, result = coalition_run
    s = result.tables["settlement"]
    firms = result.tables["firms"]
    focal = firms[firms["firm"] == "Focal"].set_index("step")
    mine = s[s["party"] == "Focal"].groupby("step")
    expected_cost = (mine["paid"].sum() + mine["reward_cost"].sum() + mine["running_cost"].sum()).reindex(
        focal.index, fill_value=0.0)
    expected_fees = (mine["received"].sum() + mine["membership_fees"].sum()).reindex(focal.index, fill_value=0.0)
    np.testing.assert_allclose(focal["programme_cost"], expected_cost, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(focal["programme_fees"], expected_fees, rtol=1e-9, atol=1e-6)
    outlets = result.tables["categories"].set_index(["step", "outlet"])
    for outlet in ("PetrolCo", "StoreCo"):
        rows = s[s["party"] == outlet].groupby("step")
        cost = (rows["paid"].sum() + rows["reward_cost"].sum()).to_numpy()
        got = outlets.xs(outlet, level="outlet")
        np.testing.assert_allclose(got["programme_cost"].to_numpy(), cost, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(got["profit"], got["revenue"] + got["programme_fees"] - got["cost_of_goods"]
                                   - got["programme_cost"], rtol=1e-9, atol=1e-6)
    operator = outcomes.compute(["firm[Coalition operator].profit"], sc, result.tables, result.summary)
    op = s[(s["role"] == "operator") & (s["step"] > sc.warmup_steps())]
    assert operator["firm[Coalition operator].profit"] == pytest.approx(
        op["received"].sum() + op["membership_fees"].sum() - op["paid"].sum() - op["running_cost"].sum())


def test_points_are_one_currency_earned_at_every_partner(coalition_run):
    _, result = coalition_run
    s = result.tables["settlement"]
    coalition = s[(s["programme"] == "Coalition") & (s["role"] == "partner")]
    issued = coalition.groupby("party")["points_issued"].sum()
    assert (issued[["Focal", "PetrolCo", "StoreCo"]] > 0).all()
    redeemed = coalition.groupby("party")["points_redeemed"].sum()
    assert redeemed.sum() > 0
    log = result.tables["programmes"]
    row = log[log["programme"] == "Coalition"]
    outstanding = row["points_issued"].cumsum() - row["points_redeemed"].cumsum() - row["points_expired"].cumsum()
    np.testing.assert_allclose(row["points_outstanding"], outstanding, rtol=1e-9, atol=1e-6)


def test_a_coalition_shifts_members_spending_to_the_partners():
    shares = {}
    for with_coalition in (False, True):
        runs = []
        for seed in (1, 2, 3):
            sc = scenario_from_dict(_data(n=2000, weeks=60, programmes=[COALITION] if with_coalition else []))
            result = simulate(sc, seed=seed)
            cats = result.tables["categories"]
            cats = cats[cats["step"] > 30]
            runs.append(cats.groupby("outlet")["share"].mean())
        shares[with_coalition] = pd.concat(runs, axis=1)
    gain = shares[True] - shares[False]  # paired by seed
    assert (gain.loc["PetrolCo"] > 0.01).all() and (gain.loc["StoreCo"] > 0.01).all(), gain
    assert (gain.loc["FuelRival"] < 0).all() and (gain.loc[["StoreRival", "StoreThird"]].sum() < 0).all()


def test_a_cobrand_card_gives_the_partner_discount_only_to_cardholders():
    sc = scenario_from_dict(_data(n=800, weeks=30, programmes=[COBRAND]))
    model = LoyaltyMarket(sc, seed=4)
    model.run(29)
    q = model.programmes.ledgers[0]
    store = model.categories[1]
    partner = store.base + store.names.index("StoreCo")
    member = q.member.copy()  # members when the step begins (others may join at its end)
    model.step()
    perks = model.perks
    np.testing.assert_allclose(perks.discount[member, partner], 0.05)
    assert (perks.discount[~member, partner] == 0).all()
    cs = store.state
    bought = (cs.step_outlet == store.names.index("StoreCo")) & member
    assert bought.any()
    np.testing.assert_allclose(cs.step_member_discount[bought], cs.step_units[bought] * 1.0 * 0.05)


def test_without_programmes_categories_leave_the_market_bit_identical():
    data = _data(n=600, weeks=20)
    plain = {**data, "market": {k: v for k, v in data["market"].items() if k != "categories"}}
    a = LoyaltyMarket(scenario_from_dict(data), seed=8).run()
    b = LoyaltyMarket(scenario_from_dict(plain), seed=8).run()
    for name, x in a.customers.arrays().items():
        np.testing.assert_array_equal(x, getattr(b.customers, name), err_msg=name)


@pytest.mark.parametrize("market", ["contractual", "repertoire"])
def test_one_at_a_time_equals_vectorized_with_categories_and_a_coalition(market):
    sc = scenario_from_dict(_data(n=150, weeks=20, programmes=[COALITION, COBRAND], market=market))
    fast, slow = LoyaltyMarket(sc, seed=6), LoyaltyMarket(sc, seed=6, one_at_a_time=True)
    for t in range(20):
        fast.step()
        slow.step()
        assert_same_arrays(fast.customers.arrays(), slow.customers.arrays(), f"at step {t}")
        for a, b in zip(fast.categories, slow.categories, strict=True):
            assert_same_arrays(a.state.arrays(), b.state.arrays(), f"in {a.name} at step {t}")
    assert pd.DataFrame(fast.programmes.log).equals(pd.DataFrame(slow.programmes.log))


@pytest.mark.parametrize(("change", "where", "needle"), [
    ({"partners": []}, "policy.programmes[0].partners", "at least two partners"),
    ({"partners": ["Focal"]}, "policy.programmes[0].partners", "runs the programme"),
    ({"partners": ["Nowhere"]}, "policy.programmes[0].partners", "unknown firm or outlet 'Nowhere'"),
    ({"partners": ["PetrolCo", "PetrolCo"]}, "policy.programmes[0].partners", "unique"),
])
def test_bad_coalitions_are_named(change, where, needle):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(_data(programmes=[{**COALITION, **change}]))
    problems = err.value.problems
    assert len(problems) == 1 and problems[0].startswith(where) and needle in problems[0], problems


def test_an_outlet_named_like_a_firm_is_an_error():
    data = _data()
    data["market"]["categories"][0]["outlets"][0]["name"] = "Rival A"
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data)
    assert any("Rival A" in p and p.startswith("market.categories") for p in err.value.problems)
