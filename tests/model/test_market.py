"""Tests of the market model: invariants, accounting identities, determinism, the one-at-a-time oracle,
common random numbers, Mesa integration and scheduled events."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from mesa import DataCollector

from loyaltysim.model.agents import Customer, Firm
from loyaltysim.model.market import FIRM_METRICS, LoyaltyMarket
from loyaltysim.model.state import NEVER, NO_FIRM, Cause, Variates, gumbel_of
from loyaltysim.model.streams import STREAM_NAMES, Streams, gumbel_uniforms
from loyaltysim.scenario import SECOND_PASS_SWITCHES
from same_state import assert_same_arrays

MARKETS = ("contractual", "repertoire")
VARIATE_NAMES = ("occasions", "u_search", "u_gumbel", "u_fail", "u_market", "u_life")
TRAITS = ("purchase_rate", "price_sensitivity", "weights", "threshold")
COUNTS = ("customers", "gained", "defections", "purchases", "failures", "surveyed",
          "score_1", "score_2", "score_3", "score_4", "score_5")


def firm_frame(model: LoyaltyMarket) -> pd.DataFrame:
    """The data collector's firm records, indexed by (step, firm index)."""
    df = model.datacollector.get_agenttype_vars_dataframe(Firm).reset_index()
    index_of = {f.unique_id: f.index for f in model.firms}
    df["firm"] = df["AgentID"].map(index_of)
    df["step"] = df["Step"].astype(int)
    return df.drop(columns=["Step", "AgentID"]).set_index(["step", "firm"]).sort_index()


def metric(frame: pd.DataFrame, name: str) -> np.ndarray:
    """One firm metric as an array [step, firm]."""
    return frame[name].unstack("firm").sort_index().to_numpy()


def snapshot(model: LoyaltyMarket) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.customers.arrays().items()}


@dataclass
class Trace:
    """A run with a copy of the customer state before the first and after every step."""

    model: LoyaltyMarket
    states: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        return firm_frame(self.model)


def traced_run(scenario, seed: int, steps: int) -> Trace:
    model = LoyaltyMarket(scenario, seed=seed)
    trace = Trace(model, [snapshot(model)])
    for _ in range(steps):
        model.step()
        trace.states.append(snapshot(model))
    return trace


STEPS = 30
SEEDS = (11, 12)


@pytest.fixture(scope="module")
def traced(make_scenario):
    """``traced(market, seed)``: a 30-step traced run of the small baseline, computed once per module."""
    cache: dict[tuple[str, int], Trace] = {}

    def get(market: str, seed: int) -> Trace:
        if (market, seed) not in cache:
            cache[market, seed] = traced_run(make_scenario(market__type=market), seed, STEPS)
        return cache[market, seed]

    return get


@pytest.fixture(params=[(market, seed) for market in MARKETS for seed in SEEDS], ids=lambda p: f"{p[0]}-{p[1]}")
def trace(request, traced) -> Trace:
    return traced(*request.param)


@pytest.fixture(params=SEEDS)
def contractual_trace(request, traced) -> Trace:
    return traced("contractual", request.param)


@pytest.fixture(params=SEEDS)
def repertoire_trace(request, traced) -> Trace:
    return traced("repertoire", request.param)


# ----------------------------------------------------------------------------------- invariants


def test_population_of_customer_agents_is_constant(make_scenario):
    sc = make_scenario(market__customers__population=321)
    model = LoyaltyMarket(sc, seed=1)
    for _ in range(5):
        agents = model.agents_by_type[Customer]
        assert len(agents) == 321
        assert sorted(a.row for a in agents) == list(range(321))
        assert len(model.agents_by_type[Firm]) == 3
        assert len(model.customers) == 321
        model.step()
    assert model.steps == 5


def test_state_invariants_every_step(trace):
    m = trace.model
    n, n_firms = m.config.market.customers.population, len(m.firms)
    first = trace.states[0]
    np.testing.assert_allclose(first["weights"].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (first["weights"] >= 0).all()
    assert (first["purchase_rate"] > 0).all()
    for t, st in enumerate(trace.states):
        for name, arr in st.items():
            assert arr.shape[0] == n, name
        assert st["current"].dtype == np.int32
        assert ((st["current"] >= NO_FIRM) & (st["current"] < n_firms)).all(), t
        assert (st["current"][~st["active"]] == NO_FIRM).all(), t  # out of the market: no firm
        assert np.isfinite(st["satisfaction"]).all(), t
        assert np.isfinite(st["perceived"]).all(), t
        assert np.isfinite(st["expectation"]).all(), t
        assert (st["wallet"] >= 0).all(), t
        assert (st["tenure"] >= 0).all(), t
        assert ((st["tenure"] == 0) == (st["current"] == NO_FIRM)).all(), t
        assert (st["last_buy"] <= t).all(), t
        assert (st["step_purchases"] >= 0).all(), t
        assert ((st["last_score"] >= 0) & (st["last_score"] <= 5)).all(), t
        for trait in TRAITS:  # traits are drawn once
            np.testing.assert_array_equal(st[trait], first[trait], err_msg=trait)
    assert len(m.agents_by_type[Customer]) == n
    last = trace.states[-1]
    assert (last["current"] != first["current"]).any()  # the run did move customers
    assert (last["last_buy"] > 0).any()


def test_firm_records_every_step(trace):
    m = trace.model
    frame = trace.frame
    n_firms = len(m.firms)
    assert list(frame.columns) == list(FIRM_METRICS)
    steps = frame.index.get_level_values("step").unique().tolist()
    assert steps == list(range(1, STEPS + 1))
    for name in COUNTS:
        assert (metric(frame, name) >= 0).all(), name
    share = metric(frame, "share")
    assert share.shape == (STEPS, n_firms)
    np.testing.assert_allclose(share.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert ((share >= 0) & (share <= 1)).all()
    customers = metric(frame, "customers")
    assert (customers > 0).all()  # every firm keeps customers in a short run
    assert np.isfinite(metric(frame, "satisfaction")).all()
    surveyed = metric(frame, "surveyed")
    scores = sum(metric(frame, f"score_{s}") for s in range(1, 6))
    np.testing.assert_array_equal(scores, surveyed)
    survey_every = m.config.market.survey.every.steps(m.step_unit)
    asked_on = np.flatnonzero(surveyed.sum(axis=1) > 0) + 1
    assert asked_on.size > 0
    assert (asked_on % survey_every == 0).all()
    price = metric(frame, "price")
    np.testing.assert_array_equal(price, np.broadcast_to([30.0, 28.0, 32.0], price.shape))
    revenue = metric(frame, "revenue")
    units = metric(frame, "units")
    np.testing.assert_allclose(revenue, units * price, rtol=1e-12)
    unit_cost = np.array([f.unit_cost for f in m.firms])
    np.testing.assert_allclose(metric(frame, "cost_of_goods"), units * unit_cost, rtol=1e-12)
    # occasions and units agree with what the customers did (units = occasions x basket)
    assert (units >= metric(frame, "purchases") * m.customers.basket.min() - 1e-9).all()


def test_customers_and_shares_follow_the_membership_definition(trace):
    m = trace.model
    frame = trace.frame
    customers = metric(frame, "customers")
    lapse = m.params.lapse_steps
    for t in range(1, STEPS + 1):
        st = trace.states[t]
        if m.contractual:
            expected = np.bincount(st["current"][st["current"] >= 0], minlength=len(m.firms))
        else:
            expected = ((t - st["last_buy"]) < lapse).sum(axis=0)
        np.testing.assert_array_equal(customers[t - 1], expected, err_msg=f"step {t}")
        np.testing.assert_allclose(metric(frame, "share")[t - 1], expected / expected.sum(), rtol=0, atol=1e-15)


def test_model_reporters(trace):
    df = trace.model.datacollector.get_model_vars_dataframe()
    assert len(df) == STEPS
    for t in range(1, STEPS + 1):
        st = trace.states[t]
        row = df.iloc[t - 1]
        assert row["in_market"] == st["active"].sum()
        assert row["with_a_firm"] == (st["current"] >= 0).sum()
        has = np.flatnonzero(st["current"] >= 0)
        assert row["mean_satisfaction"] == pytest.approx(st["satisfaction"][has, st["current"][has]].mean(), rel=1e-12)


def test_departure_rows_are_valid(trace):
    m = trace.model
    n, n_firms = len(m.customers), len(m.firms)
    assert len(m.accounts.departures) == STEPS
    total = 0
    for t, dep in enumerate(m.accounts.departures, start=1):
        k = dep["customer"].size
        total += k
        assert all(col.shape == (k,) for col in dep.values())
        assert (dep["step"] == t).all()
        assert ((dep["customer"] >= 0) & (dep["customer"] < n)).all()
        assert ((dep["firm"] >= 0) & (dep["firm"] < n_firms)).all()
        assert ((dep["destination"] >= NO_FIRM) & (dep["destination"] < n_firms)).all()
        assert (dep["destination"] != dep["firm"]).all()
        assert np.isin(dep["cause"], [c.value for c in Cause if c is not Cause.NONE]).all()
        assert (dep["tenure"] >= 0).all()
        assert np.isfinite(dep["satisfaction"]).all()
    assert total > 0


def test_contractual_departures_are_the_customers_who_left_a_firm(contractual_trace):
    trace = contractual_trace
    m = trace.model
    for t, dep in enumerate(m.accounts.departures, start=1):
        before, after = trace.states[t - 1]["current"], trace.states[t]["current"]
        moved = np.flatnonzero((before >= 0) & (after != before))
        np.testing.assert_array_equal(np.sort(dep["customer"]), moved, err_msg=f"step {t}")
        order = np.argsort(dep["customer"])
        np.testing.assert_array_equal(dep["firm"][order], before[moved], err_msg=f"step {t}")
        np.testing.assert_array_equal(dep["destination"][order], after[moved], err_msg=f"step {t}")
        # a customer leaving the market is the only departure without a destination
        exits = dep["destination"] == NO_FIRM
        np.testing.assert_array_equal(dep["cause"][exits], Cause.NATURAL_CHURN)
        assert not trace.states[t]["active"][dep["customer"][exits]].any()
        assert trace.states[t]["active"][dep["customer"][~exits]].all()


def test_repertoire_departures_are_lapsed_customers(repertoire_trace):
    trace = repertoire_trace
    m = trace.model
    lapse = m.params.lapse_steps
    for t, dep in enumerate(m.accounts.departures, start=1):
        st, prev = trace.states[t], trace.states[t - 1]
        lost = np.argwhere((t - st["last_buy"]) == lapse)  # rows sorted by customer, then firm
        np.testing.assert_array_equal(np.column_stack([dep["customer"], dep["firm"]]), lost, err_msg=f"step {t}")
        # each was a customer of that firm the step before, and is not any more
        assert ((t - 1 - prev["last_buy"][dep["customer"], dep["firm"]]) < lapse).all()
        assert ((t - st["last_buy"][dep["customer"], dep["firm"]]) >= lapse).all()


def test_contractual_customer_counts_are_conserved_across_each_step(contractual_trace):
    """customers(t) - customers(t-1) == gained(t) - defections(t), firm by firm, every step."""
    trace = contractual_trace
    m = trace.model
    frame = trace.frame
    n_firms = len(m.firms)
    initial = np.bincount(trace.states[0]["current"], minlength=n_firms)
    customers = np.vstack([initial, metric(frame, "customers")])
    gained, defections = metric(frame, "gained"), metric(frame, "defections")
    np.testing.assert_array_equal(np.diff(customers, axis=0), gained - defections)
    assert gained.sum() > 0
    assert defections.sum() > 0
    # over all firms, switches cancel: what is left is entries into and exits out of the market
    with_a_firm = m.datacollector.get_model_vars_dataframe()["with_a_firm"].to_numpy()
    with_a_firm = np.concatenate([[(trace.states[0]["current"] >= 0).sum()], with_a_firm])
    np.testing.assert_array_equal(np.diff(with_a_firm), gained.sum(axis=1) - defections.sum(axis=1))
    exits = np.array([(dep["destination"] == NO_FIRM).sum() for dep in m.accounts.departures])
    lost_firm = np.array([((trace.states[t - 1]["current"] >= 0) & (trace.states[t]["current"] == NO_FIRM)).sum()
                          for t in range(1, STEPS + 1)])
    np.testing.assert_array_equal(exits, lost_firm)
    assert exits.sum() > 0
    # retention is one minus the step's defections over last step's customers
    np.testing.assert_allclose(metric(frame, "retention"), 1.0 - defections / customers[:-1], rtol=0, atol=1e-15)


def test_repertoire_customer_counts_are_conserved_across_each_step(repertoire_trace):
    trace = repertoire_trace
    m, frame = trace.model, trace.frame
    initial = ((0 - trace.states[0]["last_buy"]) < m.params.lapse_steps).sum(axis=0)
    customers = np.vstack([initial, metric(frame, "customers")])
    gained, defections = metric(frame, "gained"), metric(frame, "defections")
    np.testing.assert_array_equal(np.diff(customers, axis=0), gained - defections)


# ----------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("market", MARKETS)
def test_same_seed_gives_bit_identical_runs(make_scenario, market):
    sc = make_scenario(market__type=market, market__customers__population=400)
    a, b = LoyaltyMarket(sc, seed=2024), LoyaltyMarket(sc, seed=2024)
    for _ in range(15):
        for name, x in a.customers.arrays().items():
            y = b.customers.arrays()[name]
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), name
        a.step()
        b.step()
    pd.testing.assert_frame_equal(firm_frame(a), firm_frame(b), check_exact=True)
    pd.testing.assert_frame_equal(a.datacollector.get_model_vars_dataframe(),
                                  b.datacollector.get_model_vars_dataframe(), check_exact=True)
    logs_a, logs_b = a.accounts.departures + a.surveys.responses, b.accounts.departures + b.surveys.responses
    for da, db in zip(logs_a, logs_b, strict=True):
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)
    assert (a.word_of_mouth.network != b.word_of_mouth.network).nnz == 0


@pytest.mark.parametrize("market", MARKETS)
def test_different_seeds_give_different_runs(make_scenario, market):
    sc = make_scenario(market__type=market, market__customers__population=400)
    a, b = LoyaltyMarket(sc, seed=1).run(10), LoyaltyMarket(sc, seed=2).run(10)
    for name in (*TRAITS, "current", "satisfaction", "perceived", "last_buy"):
        assert not np.array_equal(a.customers.arrays()[name], b.customers.arrays()[name]), name
    assert not firm_frame(a).equals(firm_frame(b))
    assert (a.word_of_mouth.network != b.word_of_mouth.network).nnz > 0


def test_a_spawned_seed_sequence_is_its_own_reproducible_run(make_scenario):
    sc = make_scenario(market__customers__population=200)
    root = np.random.SeedSequence(77)
    child_a, child_b = root.spawn(2)
    run = lambda seed: LoyaltyMarket(sc, seed=seed).run(5)  # noqa: E731
    a, a2, b = run(child_a), run(np.random.SeedSequence(77, spawn_key=(0,))), run(child_b)
    np.testing.assert_array_equal(a.customers.satisfaction, a2.customers.satisfaction)
    assert not np.array_equal(a.customers.satisfaction, b.customers.satisfaction)
    assert not np.array_equal(a.customers.purchase_rate, run(77).customers.purchase_rate)


# ----------------------------------------------------------------------------------- the one-at-a-time oracle


EVERY_EVENT = [
    {"kind": "entry", "at": "3 weeks", "firm": "Rival B"},
    {"kind": "manager_leaves", "at": "4 weeks", "firm": "Focal", "manager": 1, "to": "Rival A"},
    {"kind": "service_crisis", "at": "5 weeks", "firm": "Rival A", "duration": "4 weeks", "reliability": 0.5},
    {"kind": "integrity_breach", "at": "7 weeks", "firm": "Rival B", "severity": 0.2},
    {"kind": "income_shock", "at": "8 weeks", "duration": "4 weeks", "price_sensitivity": 2.0},
    {"kind": "price_change", "at": "9 weeks", "firm": "Focal", "price": 33.0},
    {"kind": "attribute_change", "at": "10 weeks", "firm": "Rival A", "attribute": "perks", "level": 0.6},
    {"kind": "switching_cost_change", "at": "11 weeks", "switching_cost": 0.2},
]


# the second behaviour pass's mechanisms, switched on (limited attention binds: the firms' combined reach is
# above the capacity)
SECOND_PASS = {
    "market__customers__attention": {"enabled": True, "capacity": "0.2 per month"},
    "market__customers__reference_price": {"enabled": True, "half_life": "4 weeks", "value_weight": 0.2},
    "market__customers__market_expectations": {"enabled": True, "best_offer_weight": 0.3},
    "market__customers__reliability_choice": {"enabled": True, "half_life": "4 weeks", "word_of_mouth": 0.2},
}
SECOND_PASS_MOVES = {"ref_price", "rel_belief"}
# the first pass alone: every customer mechanism of the second pass switched off (the baseline has them on)
FIRST_PASS = {path.removesuffix(".enabled").replace(".", "__"): {"enabled": False} for path in SECOND_PASS_SWITCHES}
# personal repertoires: tastes that drift and consideration sets that move fast enough to change within 20 steps
PERSONAL = "personal repertoires"
REPERTOIRES = {
    "market__tastes": {"enabled": True, "polarisation": 0.5, "drift_half_life": "6 weeks"},
    "market__consideration": {"enabled": True, "initial_awareness": 0.3, "half_life": "3 weeks",
                              "marketing_gain": 0.8},
    "market__firms__0__marketing_reach": "60% per month",
}
# heterogeneous lifetimes: exits after purchase occasions (a quarter of the customers' occasions end their lifetime
# on average), or gamma-distributed hazards high enough for many exits within 20 steps
LIFETIMES = {
    "after_purchase": {"market__customers__lifetimes": {"enabled": True, "kind": "after_purchase",
                                                        "dropout": {"a": 1.0, "b": 3.0}}},
    "hazard": {"market__customers__lifetimes": {"enabled": True, "kind": "hazard",
                                                "hazard": {"mean": "2 per year", "shape": 0.5}}},
}
# arrivals over time (3.3.33) and the outside option (3.3.34), alone and together
ARRIVALS = {
    "arrivals": {"market__customers__arrivals": {"enabled": True, "over": "8 weeks"}},
    "arrivals by shares": {"market__customers__arrivals": {"enabled": True, "shares": [0.5, 0.0, 0.25, 0.25],
                                                           "every": "2 weeks", "first_purchase": False}},
    "outside option": {"market__outside_option": {"enabled": True, "utility": 2.5, "reference_price": 31.0}},
    "arrivals, outside option": {"market__customers__arrivals": {"enabled": True, "over": "6 weeks"},
                                 "market__outside_option": {"enabled": True, "utility": 2.5}},
}
LATER = {**LIFETIMES, **ARRIVALS}


@pytest.mark.parametrize(("market", "seed", "mechanisms"),
                         [(market, seed, "first pass") for market in MARKETS for seed in (3, 4, 5)]
                         + [(market, 3, "second pass") for market in MARKETS]
                         + [("repertoire", seed, PERSONAL) for seed in (3, 4, 5)]
                         + [(market, 3, kind) for market in MARKETS for kind in LATER])
def test_one_at_a_time_equals_vectorized(make_scenario, market, seed, mechanisms):
    second = {"first pass": FIRST_PASS, "second pass": SECOND_PASS}.get(mechanisms, LATER.get(mechanisms, {}))
    personal = REPERTOIRES if mechanisms == PERSONAL else {}  # with the baseline's own second-pass mechanisms
    sc = make_scenario(
        **second, **personal,
        market__type=market, market__customers__population=200, market__events=EVERY_EVENT,
        market__customers__variety_seeking={"mean": 0.3, "sd": 0.2, "min": 0.0, "max": 1.0},
        market__firms__0__relationship_managers=3,
        market__attributes__2__drift={"one_dimensional_at": 0.3, "must_be_at": 0.5},
        policy__investments=[{"attribute": "perks", "budget": "200000 per month", "start": "2 weeks"}],
        policy__campaigns=[
            {"kind": "win_back", "every": "2 weeks", "start": "2 weeks", "target": {"lapsed_at_least": "1 week"},
             "offer": {"discount": 0.3, "upgrade": 0.5, "duration": "4 weeks"}, "recontact_after": "6 weeks"},
            {"kind": "retention", "every": "3 weeks", "start": "3 weeks", "target": {"top_share": 0.2},
             "offer": {"discount": 0.2, "upgrade": 0.5, "manager": True, "duration": "4 weeks"},
             "recontact_after": "6 weeks"},
        ],
    )
    fast = LoyaltyMarket(sc, seed=seed)
    slow = LoyaltyMarket(sc, seed=seed, one_at_a_time=True)
    assert slow.one_at_a_time and not fast.one_at_a_time
    changed = set()
    start = snapshot(fast)
    personal_start = {k: x.copy() for k, x in repertoire_arrays(fast).items()} if personal else {}
    for t in range(1, 21):
        fast.step()
        slow.step()
        assert fast.steps == slow.steps == t
        for name in VARIATE_NAMES:
            np.testing.assert_array_equal(getattr(fast.variates, name), getattr(slow.variates, name))
        changed |= assert_same_arrays(fast.customers.arrays(), slow.customers.arrays(), f"at step {t}", start)
        if personal:
            assert_same_arrays(repertoire_arrays(fast), repertoire_arrays(slow), f"at step {t}")
            moved = repertoire_arrays(fast)
            changed |= {k for k, x in moved.items() if not np.array_equal(x, personal_start[k])}
    # the comparison covered a state that moved
    moved = {"current", "satisfaction", "perceived", "expectation", "wallet", "last_buy", "attitude", "manager",
             "manager_lost", "previous", "step_complained", "offer_firm", "offer_discount", "contacted_at",
             "regained_by", "step_regained"}
    if personal or mechanisms in LATER:  # a win-back may regain nobody of 200 customers within 20 steps when
        moved -= {"regained_by", "step_regained"}  # they keep to their repertoires, or many have left the market
    assert moved <= changed
    assert SECOND_PASS_MOVES.issubset(changed) == (mechanisms != "first pass")
    pd.testing.assert_frame_equal(firm_frame(slow), firm_frame(fast), check_exact=False, rtol=1e-12)
    if personal:  # tastes renewed, awareness moved, and the sets customers chose among changed
        assert {"log_propensity", "awareness", "considered"} <= changed
    if mechanisms in LIFETIMES:  # customers left the market at their own rates, and some came back
        assert {"active", "step_left"} <= changed
    if mechanisms in ARRIVALS:  # customers arrived (or went elsewhere) and bought
        assert {"active", "current", "step_firm", "step_gained"} <= changed
        if "outside" in mechanisms:
            assert (fast.customers.active & (fast.customers.current < 0)).any()  # some are elsewhere


def repertoire_arrays(model: LoyaltyMarket) -> dict[str, np.ndarray]:
    """The tastes' and the consideration sets' arrays of a market that has them."""
    return {"log_propensity": model.tastes.log_propensity, "taste_utility": model.tastes.utility,
            "awareness": model.consideration.awareness, "considered": model.consideration.considered}


# ----------------------------------------------------------------------------------- common random numbers


@pytest.mark.parametrize("market", MARKETS)
def test_a_policy_change_leaves_the_population_and_untouched_draws_alone(make_scenario, market):
    base = make_scenario(market__type=market, policy__price=30.0)
    dearer = make_scenario(market__type=market, policy__price=39.0)
    a, b = LoyaltyMarket(base, seed=8), LoyaltyMarket(dearer, seed=8)
    other_seed = LoyaltyMarket(base, seed=9)
    assert [f.price for f in a.firms] == [30.0, 28.0, 32.0]
    assert [f.price for f in b.firms] == [39.0, 28.0, 32.0]
    for name in TRAITS:
        np.testing.assert_array_equal(a.customers.arrays()[name], b.customers.arrays()[name], err_msg=name)
        assert not np.array_equal(a.customers.arrays()[name], other_seed.customers.arrays()[name]), name
    assert (a.word_of_mouth.network != b.word_of_mouth.network).nnz == 0
    for t in range(1, 11):
        a.step()
        b.step()
        other_seed.step()
        for name in VARIATE_NAMES:
            x, y, z = (getattr(m.variates, name) for m in (a, b, other_seed))
            np.testing.assert_array_equal(x, y, err_msg=f"{name} at step {t}")
            assert not np.array_equal(x, z), f"{name} at step {t}"
    # the policy did change what happened
    assert (a.customers.current != b.customers.current).any()
    assert metric(firm_frame(b), "customers")[-1, 0] < metric(firm_frame(a), "customers")[-1, 0]


def test_gumbel_shocks_from_their_uniforms_are_generator_gumbel_bit_for_bit():
    """The step draws the Gumbel shocks' uniforms and works out the shocks of those who choose: the numbers
    Generator.gumbel gives, bit for bit, with the stream left where it leaves it."""
    for seed in range(3):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        shocks = a.gumbel(size=(20_000, 3))
        drawn = gumbel_uniforms(b, (20_000, 3))
        assert drawn["gumbel"] is None
        v = Variates(**dict.fromkeys(("occasions", "u_search", "u_attention", "u_variety", "u_fail", "u_complain",
                                      "u_recover", "u_market", "u_life")), **drawn)
        who = np.array([0, 7, 19_999, 12_345])
        np.testing.assert_array_equal(v.shocks(slice(None), who).view(np.int64), shocks[who].view(np.int64))
        np.testing.assert_array_equal(gumbel_of(drawn["u_gumbel"]).view(np.int64), shocks.view(np.int64))
        np.testing.assert_array_equal(v.shocks(slice(5, 6), np.array([0])), shocks[5:6])
        assert a.random() == b.random()


def test_a_uniform_of_exactly_zero_falls_back_to_generator_gumbel():
    """Generator.gumbel draws again for a uniform of 0: the stream is set back and the shocks drawn by it."""

    class Zeroed:
        def __init__(self, seed):
            self.rng = np.random.default_rng(seed)
            self.bit_generator = self.rng.bit_generator

        def random(self, shape):
            u = self.rng.random(shape)
            u[1, 2] = 0.0
            return u

        def gumbel(self, size):
            return self.rng.gumbel(size=size)

    drawn = gumbel_uniforms(Zeroed(5), (4, 3))
    assert drawn["u_gumbel"] is None
    np.testing.assert_array_equal(drawn["gumbel"], np.random.default_rng(5).gumbel(size=(4, 3)))


def test_streams_same_name_same_sequence():
    a, b = Streams.from_seed(123), Streams.from_seed(123)
    for name in STREAM_NAMES:
        np.testing.assert_array_equal(a[name].random(8), b[name].random(8), err_msg=name)


def test_streams_are_cached_per_run():
    s = Streams.from_seed(5)
    assert s["choice"] is s["choice"]
    first = s["choice"].random(3)
    assert not np.array_equal(s["choice"].random(3), first)  # continues, does not restart


def test_streams_different_names_differ():
    s = Streams.from_seed(123)
    draws = {name: s[name].random(8) for name in STREAM_NAMES}
    assert len({d.tobytes() for d in draws.values()}) == len(STREAM_NAMES)


def test_streams_do_not_shift_each_other():
    alone = Streams.from_seed(9)["occasions"].random(5)
    s = Streams.from_seed(9)
    s["choice"].random(1000)
    s.policy(2).random(1000)
    np.testing.assert_array_equal(s["occasions"].random(5), alone)


def test_streams_different_seeds_differ():
    assert not np.array_equal(Streams.from_seed(1)["choice"].random(8), Streams.from_seed(2)["choice"].random(8))


def test_policy_stream_per_firm():
    s, again = Streams.from_seed(42), Streams.from_seed(42)
    draws = [s.policy(i).random(6) for i in range(3)]
    assert s.policy(1) is s.policy(1)
    assert len({d.tobytes() for d in draws}) == 3
    assert not any(np.array_equal(d, Streams.from_seed(42)["policies"].random(6)) for d in draws)
    # a firm's stream does not depend on whether other firms drew first
    np.testing.assert_array_equal(again.policy(2).random(6), draws[2])
    assert s.seed_sequence("policies", 1).spawn_key == (STREAM_NAMES.index("policies"), 1)


def test_stream_numbers_are_stable():
    # streams are only ever appended: the existing ones keep their spawn keys (and so their numbers)
    assert STREAM_NAMES[:11] == ("mesa", "population", "network", "occasions", "choice", "service", "marketing",
                                 "word_of_mouth", "life_events", "surveys", "policies")
    s = Streams.from_seed(7)
    ss = s.seed_sequence("choice")
    assert (ss.entropy, ss.spawn_key) == (7, (4,))
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence(7, spawn_key=(4,)))).random(4)
    np.testing.assert_array_equal(s["choice"].random(4), expected)


def test_streams_from_a_spawned_seed_sequence():
    child = np.random.SeedSequence(7).spawn(3)[2]
    s = Streams.from_seed(child)
    assert (s.entropy, s.spawn_key) == (7, (2,))
    assert s.seed_sequence("choice").spawn_key == (2, 4)
    assert not np.array_equal(s["choice"].random(4), Streams.from_seed(7)["choice"].random(4))


@pytest.mark.parametrize("seed", [-1, True, 1.5, "3", None])
def test_streams_reject_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        Streams.from_seed(seed)


def test_unknown_stream_name():
    with pytest.raises(KeyError, match="unknown random stream 'weather'"):
        Streams.from_seed(1)["weather"]


# ----------------------------------------------------------------------------------- Mesa integration


@pytest.fixture(scope="module")
def stepped_market(make_scenario) -> LoyaltyMarket:
    return LoyaltyMarket(make_scenario(market__customers__population=600), seed=31).run(12)


def test_customer_agents_view_their_rows(stepped_market):
    m = stepped_market
    agents = m.agents_by_type[Customer]
    assert len(agents) == 600
    st = m.customers
    for a in list(agents)[::37]:
        r = a.row
        assert a.firm == st.current[r]
        assert a.active == st.active[r]
        assert a.tenure == st.tenure[r]
        assert a.firm_name == (None if a.firm == NO_FIRM else m.firm_names[a.firm])
        expected = 0.0 if a.firm == NO_FIRM else st.satisfaction[r, a.firm]
        assert a.satisfaction == expected
        assert a.satisfied == (expected >= st.threshold[r])
        assert a.purchases == st.step_purchases[r]
        np.testing.assert_array_equal(a.perceived_quality, st.perceived[r])
        assert a.last_score == (int(st.last_score[r]) or None)


def test_agentset_select_matches_the_firms_customer_count(stepped_market):
    m = stepped_market
    agents = m.agents_by_type[Customer]
    for f in m.firms:
        selected = agents.select(lambda a, j=f.index: a.firm == j)
        assert len(selected) == f.metrics["customers"] == np.sum(m.customers.current == f.index)
        assert all(a.firm_name == f.name for a in selected)
    assert len(agents.select(lambda a: not a.active)) == np.sum(~m.customers.active)


def test_agentset_groupby_matches_bincount(stepped_market):
    m = stepped_market
    agents = m.agents_by_type[Customer]
    counts = agents.groupby("firm").count()
    expected = np.bincount(m.customers.current + 1, minlength=len(m.firms) + 1)
    assert counts == {j - 1: int(c) for j, c in enumerate(expected) if c}
    tenure = agents.groupby("firm").agg("tenure", sum)
    for j in counts:
        assert tenure[j] == m.customers.tenure[m.customers.current == j].sum()


def test_agents_see_the_vectorized_step(make_scenario):
    m = LoyaltyMarket(make_scenario(market__customers__population=300), seed=4)
    agents = list(m.agents_by_type[Customer])
    before = [a.firm for a in agents]
    m.run(8)
    after = [a.firm for a in agents]
    assert after == m.customers.current.tolist()
    assert after != before


def test_a_mesa_data_collector_with_a_customer_reporter(make_scenario):
    m = LoyaltyMarket(make_scenario(market__customers__population=40), seed=6)
    dc = DataCollector(
        model_reporters={"customers": lambda model: len(model.agents_by_type[Customer])},
        agenttype_reporters={Customer: {"satisfaction": "satisfaction", "firm": "firm"}},
    )
    for _ in range(3):
        m.step()
        dc.collect(m)
    df = dc.get_agenttype_vars_dataframe(Customer)
    assert len(df) == 3 * 40
    assert dc.get_model_vars_dataframe()["customers"].tolist() == [40, 40, 40]
    last = df.xs(df.index.get_level_values("Step").max(), level="Step")
    row_of = {a.unique_id: a.row for a in m.agents_by_type[Customer]}
    rows = np.array([row_of[i] for i in last.index])
    st = m.customers
    cur = st.current[rows]
    expected = np.where(cur >= 0, st.satisfaction[rows, np.maximum(cur, 0)], 0.0)
    np.testing.assert_array_equal(last["satisfaction"].to_numpy(), expected)
    np.testing.assert_array_equal(last["firm"].to_numpy(), cur)
    assert last["satisfaction"].abs().sum() > 0


# ----------------------------------------------------------------------------------- events


def test_price_change_takes_effect_at_its_step(make_scenario):
    sc = make_scenario(
        market__events=[{"kind": "price_change", "at": "10 weeks", "firm": "Rival A", "price": 26.0}],
    )
    m = LoyaltyMarket(sc, seed=3)
    for t in range(1, 16):
        m.step()
        expected = 28.0 if t < 10 else 26.0
        assert m.firms[1].price == expected
        assert m.shared.price.tolist() == [30.0, expected, 32.0]
    price = metric(firm_frame(m), "price")
    np.testing.assert_array_equal(price[:, 1], [28.0] * 9 + [26.0] * 6)
    np.testing.assert_array_equal(price[:, [0, 2]], np.broadcast_to([30.0, 32.0], (15, 2)))
    assert m.firms[1].price_rise_step == NEVER  # a cut is not a rise
    assert not m.shared.price_rose.any()


def test_a_price_rise_explains_defections_for_the_attribution_window(make_scenario):
    sc = make_scenario(
        market__customers__population=1000,
        market__events=[{"kind": "price_change", "at": "10 weeks", "firm": "Focal", "price": 45.0}],
    )
    m = LoyaltyMarket(sc, seed=3)
    window = m.params.attribution_steps
    assert window == 8
    rose = []
    for _ in range(25):
        m.step()
        rose.append(bool(m.shared.price_rose[0]))
        assert not m.shared.price_rose[1:].any()
    assert rose == [t in range(10, 10 + window + 1) for t in range(1, 26)]
    price_rise = [d for d in m.accounts.departures if (d["cause"] == Cause.PRICE_RISE).any()]
    assert price_rise, "a 50% price rise must drive some defections"
    for d in price_rise:
        blamed = d["cause"] == Cause.PRICE_RISE
        assert (d["firm"][blamed] == 0).all()
        assert 10 <= d["step"][0] <= 10 + window


def test_attribute_change_takes_effect_at_its_step(make_scenario):
    sc = make_scenario(market__events=[
        {"kind": "attribute_change", "at": "5 weeks", "firm": "Rival B", "attribute": "perks", "level": 0.9},
    ])
    m = LoyaltyMarket(sc, seed=3)
    for t in range(1, 8):
        m.step()
        assert m.shared.levels[2, 2] == (sc.market.firms[2].attributes["perks"] if t < 5 else 0.9)
        np.testing.assert_array_equal(m.shared.levels[:2], [list(f.attributes.values()) for f in sc.market.firms[:2]])


def _switches(model: LoyaltyMarket, steps: int) -> np.ndarray:
    """Customers moving from one firm straight to another, per step."""
    out = []
    for _ in range(steps):
        before = model.customers.current.copy()
        model.step()
        after = model.customers.current
        out.append(int(((before >= 0) & (after >= 0) & (after != before)).sum()))
    return np.array(out)


@pytest.mark.parametrize("market", MARKETS)
def test_removing_the_switching_cost_raises_switching(make_scenario, market):
    event = {"kind": "switching_cost_change", "at": "10 weeks", "switching_cost": 0.0}
    control_sc = make_scenario(market__type=market, market__customers__population=1000)
    treated_sc = make_scenario(market__type=market, market__customers__population=1000, market__events=[event])
    control, treated = [], []
    for seed in (1, 2, 3):
        c = LoyaltyMarket(control_sc, seed=seed)
        tr = LoyaltyMarket(treated_sc, seed=seed)
        sc_, st_ = _switches(c, 30), _switches(tr, 30)
        # common random numbers: identical until the event
        np.testing.assert_array_equal(sc_[:9], st_[:9])
        assert c.events.switching_cost == control_sc.market.customers.switching_cost > 0
        assert tr.events.switching_cost == 0.0
        assert tr.shared.switching_cost == 0.0
        control.append(sc_[9:].sum())
        treated.append(st_[9:].sum())
    assert np.mean(treated) > 1.5 * np.mean(control), (treated, control)
    assert min(treated) > max(control) * 1.2, (treated, control)
