"""The market: a Mesa model wiring customers, firms, time, events and data collection.

This is the only place that knows the order of a step:

1. scheduled events take effect;
2. the shared state is read off the previous step (firms' offers, word of mouth through the network);
3. the step's random numbers are drawn for the whole population, from named streams;
4. customers step: all at once (vectorized) or one at a time as Mesa agents (same rules, same numbers);
5. surveys are taken, departures logged, and firms settle their books; the data collector records.
"""

from __future__ import annotations

import numpy as np
from mesa import DataCollector, Model

from . import network as net
from . import rules
from .agents import Customer, Firm
from .rules import NO_FIRM, Cause, CustomerState, Params, Shared, Variates
from .scenario import AttributeChange, LoyaltyScenario, PriceChange, SwitchingCostChange
from .streams import Streams

FIRM_METRICS = (
    "customers", "share", "gained", "defections", "retention", "purchases", "share_of_wallet",
    "satisfaction", "failures", "surveyed", "score_1", "score_2", "score_3", "score_4", "score_5", "nps",
    "price", "revenue", "cost_of_goods", "recovery_cost", "marketing_cost", "fixed_cost", "acquisition_cost",
    "profit",
)
CAUSE_NAMES = [c.name.lower() for c in Cause]


def _clipped_normal(rng: np.random.Generator, spec, size) -> np.ndarray:
    x = spec.mean + spec.sd * rng.standard_normal(size)
    if spec.min is not None or spec.max is not None:
        x = np.clip(x, spec.min, spec.max)
    return x


class LoyaltyMarket(Model):
    """A market of customers choosing among firms, as a Mesa model.

    Args:
        scenario: a validated :class:`~loyaltysim.scenario.LoyaltyScenario`.
        seed: the root seed (a non-negative int) or a ``numpy.random.SeedSequence`` spawned from one.
        one_at_a_time: step customers one by one as Mesa agents instead of all at once (slow; same numbers).
    """

    def __init__(self, scenario: LoyaltyScenario, *, seed: int | np.random.SeedSequence = 0,
                 one_at_a_time: bool = False):
        streams = Streams.from_seed(seed)
        super().__init__(rng=streams["mesa"])
        self.config = scenario
        self.streams = streams
        self.one_at_a_time = one_at_a_time
        self.step_unit = scenario.time.step
        market = scenario.market
        c = market.customers
        unit = self.step_unit
        self.contractual = market.type == "contractual"
        self.params = Params(
            contractual=self.contractual,
            lapse_steps=market.lapse.steps(unit),
            quality_weight=c.quality_weight,
            choice_noise=c.choice_noise,
            loss_aversion=c.loss_aversion,
            sat_alpha=rules.half_life_weight(c.satisfaction_memory.steps(unit)),
            expect_alpha=rules.half_life_weight(c.expectation_half_life.steps(unit)),
            learn_alpha=rules.half_life_weight(c.learning_half_life.steps(unit)),
            wallet_decay=1.0 - rules.half_life_weight(market.lapse.steps(unit)),
            p_search_satisfied=c.search_when_satisfied.per_step(unit),
            p_search_dissatisfied=c.search_when_dissatisfied.per_step(unit),
            p_leave=c.natural_churn.per_step(unit),
            p_enter=c.reentry.per_step(unit),
            failure_severity=c.failure_severity,
            marketing_effect=c.marketing_effect,
            wom_influence=market.network.influence,
            attribution_steps=c.attribution_window.steps(unit),
        )
        self.switching_cost = c.switching_cost
        self.attribute_names = [a.name for a in market.attributes]
        self.kano = np.array([rules.KANO_CODES[a.kano] for a in market.attributes], dtype=np.int8)

        self.firms: list[Firm] = [
            Firm(self, i, spec, self.attribute_names) for i, spec in enumerate(scenario.effective_firms())
        ]
        self.firm_names = [f.name for f in self.firms]
        self.price_ref = float(np.mean([f.price for f in self.firms]))
        self._events = sorted(
            ((max(e.at.steps(unit), 1), i, e) for i, e in enumerate(market.events)), key=lambda x: x[:2]
        )

        n = c.population
        self.customers = CustomerState.allocate(n, len(self.firms), len(self.attribute_names))
        self._populate()
        self.network = (
            net.small_world(n, market.network.degree, market.network.rewire, streams["network"])
            if market.network.kind == "small_world" else net.empty(n)
        )
        degree = np.asarray(self.network.sum(axis=1)).ravel()
        self._inv_degree = np.divide(1.0, degree, out=np.zeros(n), where=degree > 0)[:, None]
        self._p_talk = market.network.talk.per_step(unit)
        self._survey_every = market.survey.every.steps(unit)
        self._cutpoints = np.asarray(market.survey.cutpoints, dtype=np.float64)
        self.customer_agents = [Customer(self, i) for i in range(n)]

        self.departures: list[dict[str, np.ndarray]] = []
        self.responses: list[dict[str, np.ndarray]] = []
        self._members_prev = self._members()
        self.shared: Shared | None = None
        self.variates: Variates | None = None
        self.datacollector = DataCollector(
            model_reporters={
                "in_market": lambda m: int(m.customers.active.sum()),
                "with_a_firm": lambda m: int((m.customers.current >= 0).sum()),
                "mean_satisfaction": lambda m: m.mean_satisfaction(),
            },
            agenttype_reporters={Firm: {k: (lambda a, k=k: a.metrics[k]) for k in FIRM_METRICS}},
        )

    # --- set-up ---------------------------------------------------------------------------------------
    def _populate(self) -> None:
        """Draw every customer's traits and starting state from the population stream."""
        rng = self.streams["population"]
        st = self.customers
        c = self.config.market.customers
        n, n_firms = len(st), len(self.firms)
        mean = c.purchase_rate.mean.per_step(self.step_unit)
        shape = c.purchase_rate.shape
        st.purchase_rate[:] = rng.gamma(shape, mean / shape, n)
        st.price_sensitivity[:] = _clipped_normal(rng, c.price_sensitivity, n)
        raw = np.column_stack([_clipped_normal(rng, a.importance, n) for a in self.config.market.attributes])
        raw = np.maximum(raw, 0.0)
        total = raw.sum(axis=1, keepdims=True)
        st.weights[:] = np.where(total > 0, raw / np.where(total > 0, total, 1.0), 1.0 / raw.shape[1])
        st.threshold[:] = _clipped_normal(rng, c.satisfaction_threshold, n)
        levels = np.array([f.levels for f in self.firms])
        # customers take the industry's average offer for granted
        st.expectation[:] = levels.mean(axis=0)[None, :]
        quality = rules.quality_index(st.weights, levels)
        st.perceived[:] = np.clip(quality + 0.05 * rng.standard_normal((n, n_firms)), 0.0, 1.0)
        relative_price = np.array([f.price for f in self.firms]) / self.price_ref - 1.0
        utility = c.quality_weight * st.perceived - st.price_sensitivity[:, None] * relative_price[None, :]
        st.current[:] = rules.logit_choice(utility, rng.gumbel(size=(n, n_firms)), c.choice_noise)
        st.tenure[:] = rng.integers(1, max(self.config.time.horizon.steps(self.step_unit), 2), n)
        rows = np.arange(n)
        st.since[rows, st.current] = -st.tenure
        st.last_buy[rows, st.current] = 0
        st.wallet[rows, st.current] = st.purchase_rate / (1.0 - self.params.wallet_decay)

    # --- the step -------------------------------------------------------------------------------------
    def step(self) -> None:
        t = self.steps
        self._apply_events(t)
        self.shared = self._shared(t)
        self.variates = self._draw()
        if self.one_at_a_time:
            self.agents_by_type[Customer].do("step")
        else:
            rules.step_customers(self.customers, slice(None), self.variates, self.shared, self.params)
        self._survey(t)
        self._settle(t)
        self.datacollector.collect(self)

    def run(self, steps: int | None = None) -> LoyaltyMarket:
        for _ in range(self.config.steps() if steps is None else steps):
            self.step()
        return self

    def _apply_events(self, t: int) -> None:
        while self._events and self._events[0][0] <= t:
            _, _, e = self._events.pop(0)
            if isinstance(e, PriceChange):
                self.firms[self.firm_names.index(e.firm)].set_price(e.price)
            elif isinstance(e, AttributeChange):
                firm = self.firms[self.firm_names.index(e.firm)]
                firm.levels[self.attribute_names.index(e.attribute)] = e.level
            elif isinstance(e, SwitchingCostChange):
                self.switching_cost = e.switching_cost

    def _shared(self, t: int) -> Shared:
        """Firms' offers now, and word of mouth from the previous step's customers."""
        st = self.customers
        n, n_firms = len(st), len(self.firms)
        u_talk = self.streams["word_of_mouth"].random(n)
        has = st.current >= 0
        cur = np.where(has, st.current, 0)
        rows = np.arange(n)
        sat = st.satisfaction[rows, cur]
        talk = st.active & has & (u_talk < self._p_talk)
        recommend = talk & (sat > self.config.market.network.advocate_level)
        left = st.step_left >= 0
        warn = (u_talk < self._p_talk) & (left | (talk & (sat < st.threshold)))
        about = np.where(left, st.step_left, cur)
        pos = np.zeros((n, n_firms))
        neg = np.zeros((n, n_firms))
        pos[rows[recommend], cur[recommend]] = 1.0
        neg[rows[warn], about[warn]] = 1.0
        return Shared(
            t=t,
            price=np.array([f.price for f in self.firms]),
            price_ref=self.price_ref,
            levels=np.array([f.levels for f in self.firms]),
            kano=self.kano,
            reliability=np.array([f.reliability for f in self.firms]),
            recovery=np.array([f.recovery for f in self.firms]),
            reach=np.array([f.reach for f in self.firms]),
            price_rose=np.array([t - f.price_rise_step <= self.params.attribution_steps for f in self.firms]),
            switching_cost=self.switching_cost,
            wom_pos=np.asarray(self.network @ pos) * self._inv_degree,
            wom_neg=np.asarray(self.network @ neg) * self._inv_degree,
        )

    def _draw(self) -> Variates:
        """The step's random numbers, full-size whatever the state, so other runs' draws stay aligned."""
        s = self.streams
        n, n_firms = len(self.customers), len(self.firms)
        return Variates(
            occasions=s["occasions"].poisson(self.customers.purchase_rate),
            u_search=s["choice"].random(n),
            gumbel=s["choice"].gumbel(size=(n, n_firms)),
            u_fail=s["service"].random(n),
            u_market=s["marketing"].random((n, n_firms)),
            u_life=s["life_events"].random(n),
        )

    # --- measurement ----------------------------------------------------------------------------------
    def _members(self) -> np.ndarray:
        """Customers of each firm: its current providers' customers, or buyers within the lapse window."""
        st = self.customers
        n_firms = len(self.firms)
        if self.contractual:
            return np.bincount(st.current[st.current >= 0], minlength=n_firms)
        return ((self.steps - st.last_buy) < self.params.lapse_steps).sum(axis=0)

    def _member_mask(self) -> np.ndarray:
        st = self.customers
        if self.contractual:
            return st.current[:, None] == np.arange(len(self.firms))[None, :]
        return (self.steps - st.last_buy) < self.params.lapse_steps

    def mean_satisfaction(self) -> float:
        st = self.customers
        has = st.current >= 0
        return float(st.satisfaction[np.flatnonzero(has), st.current[has]].mean()) if has.any() else float("nan")

    def _survey(self, t: int) -> None:
        """Ask a random sample of customers (on survey steps) the 1-5 and 0-10 items, with answer noise."""
        if t % self._survey_every:
            return
        survey = self.config.market.survey
        st = self.customers
        rng = self.streams["surveys"]
        n = len(st)
        u = rng.random(n)
        noise = survey.noise * rng.standard_normal((n, 2))
        asked = np.flatnonzero(st.active & (st.current >= 0) & (u < survey.sample))
        firm = st.current[asked]
        true = st.satisfaction[asked, firm]
        score = rules.survey_score(true + noise[asked, 0], self._cutpoints)
        nps = rules.recommend_score(true + noise[asked, 1], survey.nps_scale)
        st.last_score[asked] = score
        self.responses.append({"step": np.full(asked.size, t, np.int32), "customer": asked.astype(np.int32),
                               "firm": firm, "score": score, "recommend": nps, "true_satisfaction": true})

    def _departures(self, t: int) -> dict[str, np.ndarray]:
        """This step's defections: who left which firm, for whom, why, and their history."""
        st = self.customers
        if self.contractual:
            who = np.flatnonzero(st.step_left >= 0)
            firm = st.step_left[who]
            cause = st.step_cause[who]
            tenure = t - st.since[who, firm]
        else:  # lost when the last purchase at a firm is exactly the lapse window old
            who, firm = np.nonzero((t - st.last_buy) == self.params.lapse_steps)
            firm = firm.astype(np.int32)
            moved = (st.current[who] >= 0) & (st.current[who] != firm)
            dissatisfied = st.satisfaction[who, firm] < st.threshold[who]
            cause = np.select(
                [moved, ~st.active[who], dissatisfied],
                [st.switch_cause[who], Cause.NATURAL_CHURN, Cause.NEEDS_NOT_MET],
                default=Cause.MARKET_FLUCTUATION,
            ).astype(np.int8)
            tenure = st.last_buy[who, firm] - st.since[who, firm]
        dest = st.current[who]
        return {
            "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32), "firm": firm,
            "destination": np.where(dest == firm, NO_FIRM, dest).astype(np.int32), "cause": cause,
            "last_score": st.last_score[who], "tenure": tenure.astype(np.int32),
            "satisfaction": st.satisfaction[who, firm],
        }

    def _settle(self, t: int) -> None:
        st = self.customers
        n_firms = len(self.firms)
        members = self._members()
        mask = self._member_mask()
        dep = self._departures(t)
        self.departures.append(dep)
        buyer = st.current >= 0
        cur = st.current[buyer]
        purchases = np.bincount(cur, weights=st.step_purchases[buyer], minlength=n_firms)
        failures = np.bincount(st.current[st.step_failed], minlength=n_firms)
        gained = np.bincount(st.step_gained[st.step_gained >= 0], minlength=n_firms)
        defections = np.bincount(dep["firm"], minlength=n_firms)
        sat_sum = (st.satisfaction * mask).sum(axis=0)
        wallet_own = (st.wallet * mask).sum(axis=0)
        wallet_all = (st.wallet.sum(axis=1)[:, None] * mask).sum(axis=0)
        total = members.sum()
        responses = self.responses[-1] if self.responses and self.responses[-1]["step"][:1].tolist() == [t] \
            else None
        for f in self.firms:
            j = f.index
            f.settle(purchases[j], failures[j], gained[j])
            m = {
                "customers": int(members[j]),
                "share": members[j] / total if total else float("nan"),
                "gained": int(gained[j]),
                "defections": int(defections[j]),
                "retention": 1.0 - defections[j] / self._members_prev[j] if self._members_prev[j] else float("nan"),
                "purchases": float(purchases[j]),
                "share_of_wallet": wallet_own[j] / wallet_all[j] if wallet_all[j] > 0 else float("nan"),
                "satisfaction": sat_sum[j] / members[j] if members[j] else float("nan"),
                "failures": int(failures[j]),
            }
            m.update(self._survey_metrics(responses, j))
            m.update(f.books)
            f.metrics = m
        self._members_prev = members

    @staticmethod
    def _survey_metrics(responses: dict[str, np.ndarray] | None, j: int) -> dict[str, float]:
        if responses is None:
            return {"surveyed": 0, **{f"score_{s}": 0 for s in range(1, 6)}, "nps": float("nan")}
        mine = responses["firm"] == j
        scores = responses["score"][mine]
        rec = responses["recommend"][mine]
        out: dict[str, float] = {"surveyed": int(mine.sum())}
        out.update({f"score_{s}": int((scores == s).sum()) for s in range(1, 6)})
        out["nps"] = 100.0 * ((rec >= 9).mean() - (rec <= 6).mean()) if rec.size else float("nan")
        return out
