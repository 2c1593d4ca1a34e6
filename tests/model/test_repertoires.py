"""Personal repertoires in a repertoire market: persistent brand tastes (model.mechanisms.tastes) and consideration
sets (model.mechanisms.consideration), tested on hand-built state and on short seeded runs."""

from types import SimpleNamespace

import numpy as np
import pytest

from loyaltysim.model import rules
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms.consideration import Consideration
from loyaltysim.model.mechanisms.tastes import Tastes, log_dirichlet
from loyaltysim.scenario import Consideration as ConsiderationSpec
from loyaltysim.scenario import ScenarioError
from loyaltysim.scenario import Tastes as TastesSpec

VARIETY = {"mean": 0.5, "sd": 0.2, "min": 0.0, "max": 1.0}


def repertoire(make_scenario, **overrides):
    return make_scenario(market__type="repertoire", market__customers__variety_seeking=VARIETY, **overrides)


# --- tastes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("polarisation", [0.05, 0.4, 0.9])
def test_propensities_are_dirichlet_with_the_stated_polarisation(polarisation):
    """A symmetric Dirichlet's shares have variance m (1 - m) φ: the polarisation is recovered from the draws,
    even where the gamma variates of a strongly polarised Dirichlet would underflow."""
    s = (1 - polarisation) / polarisation
    pi = np.exp(log_dirichlet(np.random.default_rng(1), s / 4, 40_000, 4))
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    m = 0.25
    np.testing.assert_allclose(pi.var(axis=0) / (m * (1 - m)), polarisation, rtol=0.05)
    assert np.isfinite(log_dirichlet(np.random.default_rng(2), 1e-3, 1000, 4)).all()


def test_at_weight_one_a_customer_picks_among_equal_firms_by_its_propensities():
    tastes = Tastes(TastesSpec(enabled=True, polarisation=0.5), 3, 3, choice_noise=0.3, unit="week",
                    rng=np.random.default_rng(4))
    draws = 200_000
    rng = np.random.default_rng(5)
    for i in range(3):
        utility = np.repeat(tastes.utility[i:i + 1], draws, axis=0)  # the same customer, many occasions
        chosen = rules.logit_choice(utility, rng.gumbel(size=(draws, 3)), 0.3)
        np.testing.assert_allclose(np.bincount(chosen, minlength=3) / draws, tastes.propensity[i], atol=0.005)


def test_tastes_renew_at_the_stated_half_life_and_keep_their_distribution():
    spec = TastesSpec(enabled=True, polarisation=0.3, drift_half_life="10 weeks")
    tastes = Tastes(spec, 20_000, 3, choice_noise=0.3, unit="week", rng=np.random.default_rng(6))
    start = tastes.log_propensity.copy()
    for _ in range(10):
        tastes.before_step()
    kept = (tastes.log_propensity == start).all(axis=1).mean()
    assert kept == pytest.approx(0.5, abs=0.02)
    np.testing.assert_allclose(tastes.utility, tastes.taste_utility(tastes.log_propensity))
    np.testing.assert_allclose(tastes.propensity.var(axis=0) / (2 / 9), 0.3, rtol=0.08)


def test_without_drift_tastes_never_change():
    tastes = Tastes(TastesSpec(enabled=True), 100, 3, choice_noise=0.3, unit="week", rng=np.random.default_rng(7))
    start = tastes.utility.copy()
    tastes.before_step()
    np.testing.assert_array_equal(tastes.utility, start)


def brands_per_buyer(model: LoyaltyMarket, steps: int) -> tuple[float, float]:
    """(mean number of firms bought from, mean share of a buyer's purchases at its most-bought firm) over
    ``steps`` more steps."""
    counts = np.zeros((len(model.customers), len(model.firms)))
    for _ in range(steps):
        model.step()
        st = model.customers
        who = np.flatnonzero(st.step_firm >= 0)
        np.add.at(counts, (who, st.step_firm[who]), st.step_purchases[who])
    buyers = counts.sum(axis=1) > 0
    c = counts[buyers]
    return float((c > 0).sum(axis=1).mean()), float((c.max(axis=1) / c.sum(axis=1)).mean())


def test_higher_polarisation_gives_more_concentrated_repertoires(make_scenario):
    result = {}
    for phi in (0.1, 0.8):
        sc = repertoire(make_scenario, market__customers__population=1500,
                        market__tastes={"enabled": True, "polarisation": phi})
        model = LoyaltyMarket(sc, seed=3).run(10)
        result[phi] = brands_per_buyer(model, 26)
    (brands_low, top_low), (brands_high, top_high) = result[0.1], result[0.8]
    assert brands_high < brands_low - 0.2
    assert top_high > top_low + 0.03


# --- consideration sets --------------------------------------------------------------------------------------


def hand_built(n: int, n_firms: int, **state):
    """Minimal customer state, shared state and variates for Consideration.before_step: no news by default."""
    st = SimpleNamespace(current=np.zeros(n, np.int32), step_firm=np.full(n, -1, np.int32),
                         contacted_at=np.full(n, -99, np.int32), offer_firm=np.full(n, -1, np.int32))
    for k, v in state.items():
        setattr(st, k, v)
    sh = SimpleNamespace(t=1, wom_pos=np.zeros((n, n_firms)), wom_neg=np.zeros((n, n_firms)),
                         reach=np.zeros(n_firms), available=np.ones(n_firms, bool))
    v = SimpleNamespace(u_market=np.ones((n, n_firms)))
    return st, sh, v


def test_awareness_fades_at_the_stated_half_life_and_the_current_firm_stays_known():
    spec = ConsiderationSpec(enabled=True, initial_awareness=1.0, half_life="4 weeks", threshold=0.3)
    cons = Consideration(spec, np.zeros(2, np.int32), np.ones(3, bool), "week", np.random.default_rng(0))
    st, sh, v = hand_built(2, 3)
    present = np.ones(2, bool)
    for t in range(1, 9):
        cons.before_step(st, sh, v, present)
        np.testing.assert_allclose(cons.awareness[:, 1:], 0.5 ** (t / 4), rtol=1e-12)
        np.testing.assert_array_equal(cons.awareness[:, 0], 1.0)
    # 0.5 ** (8 / 4) = 0.25 < 0.3: the other firms dropped out of the consideration set; the current firm did not
    np.testing.assert_array_equal(cons.considered, [[True, False, False]] * 2)


def test_marketing_word_of_mouth_purchases_and_contacts_make_a_firm_known():
    spec = ConsiderationSpec(enabled=True, initial_awareness=0.0, half_life="52 weeks", marketing_gain=0.6,
                             word_of_mouth_gain=0.5)
    n = 5
    cons = Consideration(spec, np.zeros(n, np.int32), np.ones(3, bool), "week", np.random.default_rng(0))
    keep = 0.5 ** (1 / 52)
    st, sh, v = hand_built(n, 3, step_firm=np.array([-1, -1, 2, -1, -1], np.int32),
                           contacted_at=np.array([-99, -99, -99, 1, -99], np.int32),
                           offer_firm=np.array([-1, -1, -1, 1, -1], np.int32))
    sh.reach = np.array([0.0, 0.5, 0.0])
    v.u_market[0, 1] = 0.1  # customer 0 meets firm 1's marketing
    sh.wom_pos[1, 2] = 0.25  # customer 1 hears a quarter of its neighbours recommend firm 2 ...
    sh.wom_neg[1, 2] = 0.25  # ... and another quarter warn against it
    present = np.array([True, True, True, True, False])
    v.u_market[4, 1] = 0.1  # customer 4 is out of the market: it meets no marketing
    cons.before_step(st, sh, v, present)
    a = cons.awareness
    assert a[0, 1] == pytest.approx(0.6) and a[0, 2] == 0.0
    assert a[1, 2] == pytest.approx(0.5 * 0.5) and a[1, 1] == 0.0
    assert a[2, 2] == 1.0 and a[3, 1] == 1.0  # bought there in the previous step; contacted by its campaign
    assert a[4, 1] == 0.0
    np.testing.assert_array_equal(cons.considered[:, 0], True)  # every customer's current firm
    assert cons.considered[0, 1] and not cons.considered[1, 2]  # 0.25 < the threshold 0.5
    assert keep < 1


def test_the_choosable_firms_are_the_known_ones_and_the_current_one_or_all_when_none_is_known():
    considered = np.array([[True, False, False], [False, True, False], [False, False, True]])  # [F, m]
    is_current = np.array([[False, False, False], [True, False, False], [False, False, False]])  # 0's is firm 1
    available = np.array([[True], [True], [False]])
    out = rules.considered_firms(considered, is_current, available)
    # customer 0: the firm it knows and its current one; 1: the one it knows; 2 knows only a firm not (yet) in the
    # market, so it looks at every available firm
    np.testing.assert_array_equal(out, [[True, False, True], [True, True, True], [False, False, False]])


def test_a_customer_unaware_of_a_firm_never_buys_there(make_scenario):
    sc = repertoire(make_scenario, market__customers__population=800, market__network__kind="none",
                    market__consideration={"enabled": True, "initial_awareness": 1.0, "half_life": "52 weeks"},
                    **{f"market__firms__{j}__marketing_reach": "0% per month" for j in range(3)})
    model = LoyaltyMarket(sc, seed=2)
    st, aware = model.customers, model.consideration.awareness
    unaware = np.flatnonzero(st.current != 2)[::2]  # half of the customers of other firms never heard of firm 2
    aware[unaware, 2] = 0.0
    model.consideration.considered[:] = aware >= 0.5
    bought_there = np.zeros(len(st), bool)
    for _ in range(26):
        model.step()
        bought_there |= st.step_firm == 2
    assert not bought_there[unaware].any()
    assert not (st.current[unaware] == 2).any()
    others = np.setdiff1d(np.flatnonzero(model.firm_after_warmup != 2), unaware)
    assert bought_there[others].mean() > 0.2  # aware customers of the other firms do buy there


def test_switched_off_the_mechanisms_take_no_part_and_switched_on_draw_only_from_their_streams(make_scenario):
    off = LoyaltyMarket(repertoire(make_scenario, market__customers__population=300), seed=1)
    on = LoyaltyMarket(repertoire(make_scenario, market__customers__population=300,
                                  market__tastes={"enabled": True}, market__consideration={"enabled": True}), seed=1)
    assert off.tastes is None and off.consideration is None
    for name, x in off.customers.arrays().items():
        np.testing.assert_array_equal(on.customers.arrays()[name], x, err_msg=name)
    off.step()
    on.step()
    assert off.shared.taste is None and off.shared.considered is None
    for name in ("occasions", "u_search", "u_variety", "u_gumbel", "u_market", "u_life"):
        np.testing.assert_array_equal(getattr(on.variates, name), getattr(off.variates, name), err_msg=name)


# --- scenario validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["tastes", "consideration"])
def test_the_mechanisms_belong_to_repertoire_markets(make_scenario, mechanism):
    with pytest.raises(ScenarioError, match=rf"{mechanism}.enabled: .*repertoire market"):
        make_scenario(market__type="contractual", **{f"market__{mechanism}": {"enabled": True}})


@pytest.mark.parametrize(("path", "value"), [
    ("market__tastes__polarisation", 0.0), ("market__tastes__polarisation", 1.0),
    ("market__tastes__drift_half_life", "0 weeks"), ("market__consideration__half_life", "0 weeks"),
    ("market__consideration__threshold", 0.0), ("market__consideration__initial_awareness", 1.5),
])
def test_out_of_range_settings_are_rejected(make_scenario, path, value):
    with pytest.raises(ScenarioError, match=path.removeprefix("market__").replace("__", ".")):
        repertoire(make_scenario, **{path: value})
