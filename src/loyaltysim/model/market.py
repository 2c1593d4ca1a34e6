"""The market: a Mesa model wiring customers, firms, time, events and data collection.

This is the only place that knows the order of a step:

1. scheduled events take effect, and attributes drift between Kano classes;
2. firms act (investments, reactions to rivals) as Mesa agents, and run their campaigns' rounds;
3. loyalty programmes say what membership means to each customer this step (perks, switching costs, extra usage);
4. the shared state is read off the previous step (firms' offers, word of mouth through the network);
5. the step's random numbers are drawn for the whole population, from named streams;
6. customers step, in the market and in its categories: all at once (vectorized) or one at a time as Mesa agents
   (same rules, same numbers);
7. the firms' records and programme ledgers book the step (points, tiers, cashback, enrolment, settlements);
8. surveys are taken, departures logged, firms and category outlets settle their books; the data collector
   records.
"""

from __future__ import annotations

import numpy as np
from mesa import DataCollector, Model

from loyaltysim.model import classifications, rules
from loyaltysim.model.agents import Customer, Firm
from loyaltysim.model.mechanisms import crm
from loyaltysim.model.mechanisms import word_of_mouth as net
from loyaltysim.model.mechanisms.categories import Category, step_category
from loyaltysim.model.mechanisms.crm import CRM
from loyaltysim.model.mechanisms.programmes import Book
from loyaltysim.model.memory import reuse_freed_memory
from loyaltysim.model.state import (
    ATTRACTIVE,
    KANO_CODES,
    MUST_BE,
    NEVER,
    NO_FIRM,
    ONE_DIMENSIONAL,
    Cause,
    CustomerState,
    Params,
    Shared,
    Variates,
)
from loyaltysim.model.streams import Streams
from loyaltysim.scenario import (
    AttributeChange,
    Entry,
    IncomeShock,
    IntegrityBreach,
    LoyaltyScenario,
    ManagerLeaves,
    PriceChange,
    ServiceCrisis,
    SwitchingCostChange,
)
from loyaltysim.units import DAYS

LADDER_COLUMNS = tuple(f"stage_{s}" for s in classifications.LADDER[1:5])  # a firm's own customers' stages
DICK_BASU_COLUMNS = tuple(f"db_{s}" for s in classifications.DICK_BASU)
JONES_SASSER_COLUMNS = tuple(f"js_{s}" for s in classifications.JONES_SASSER)
FIRM_METRICS = (
    "available", "customers", "share", "gained", "defections", "retention", "purchases", "units",
    "share_of_wallet", "satisfaction", "satisfaction_basic", "satisfaction_performance", "satisfaction_latent",
    "attitude", "failures", "complaints", "recovered", "contacts", "regained", "surveyed",
    "score_1", "score_2", "score_3", "score_4", "score_5", "nps",
    *LADDER_COLUMNS, *DICK_BASU_COLUMNS, *JONES_SASSER_COLUMNS,
    "price", "revenue", "cost_of_goods", "recovery_cost", "marketing_cost", "fixed_cost", "acquisition_cost",
    "investment_cost", "campaign_cost", "discounts", "member_discounts", "programme_cost", "programme_fees", "profit",
)
CAUSE_NAMES = [c.name.lower() for c in Cause]
CAMPAIGN_CODES = {"retention": 0, "personalised": 1}  # the warnings table's campaign column
KANO_NAMES = {MUST_BE: "must_be", ONE_DIMENSIONAL: "one_dimensional", ATTRACTIVE: "attractive"}


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
        reuse_freed_memory()  # a step's large temporaries reuse freed memory (see loyaltysim.model.memory)
        streams = Streams.from_seed(seed)
        super().__init__(rng=streams["mesa"])
        self.config = scenario
        self.streams = streams
        self.one_at_a_time = one_at_a_time
        self.step_unit = unit = scenario.time.step
        market = scenario.market
        c = market.customers
        self.contractual = market.type == "contractual"
        self.params = Params(
            contractual=self.contractual,
            lapse_steps=market.lapse.steps(unit),
            quality_weight=c.quality_weight,
            choice_noise=c.choice_noise,
            loss_aversion=c.loss_aversion,
            sat_alpha=rules.half_life_weight(c.satisfaction_memory.steps(unit)),
            expect_alpha=rules.half_life_weight(c.expectation_half_life.steps(unit)),
            latent_alpha=rules.half_life_weight(c.latent_expectation_half_life.steps(unit)),
            competitor_alpha=rules.half_life_weight(c.competitor_expectation_half_life.steps(unit)),
            learn_alpha=rules.half_life_weight(c.learning_half_life.steps(unit)),
            wallet_decay=1.0 - rules.half_life_weight(market.lapse.steps(unit)),
            p_search_satisfied=c.search_when_satisfied.per_step(unit),
            p_search_dissatisfied=c.search_when_dissatisfied.per_step(unit),
            offer_attention=c.offer_attention,
            p_leave=c.natural_churn.per_step(unit),
            p_enter=c.reentry.per_step(unit),
            failure_severity=c.failure_severity,
            failure_belief=c.failure_belief,
            complaint_rate=c.complaint_rate,
            complaint_rate_dissatisfied=c.complaint_rate_dissatisfied,
            unresolved_factor=c.unresolved_complaint_factor,
            recovery_paradox=c.recovery_paradox,
            marketing_effect=c.marketing_effect,
            wom_influence=market.network.influence,
            attribution_steps=c.attribution_window.steps(unit),
            delight_level=c.delight_level,
            attitude_gain=rules.half_life_weight(c.attitude_gain.steps(unit)),
            attitude_loss=rules.half_life_weight(c.attitude_loss.steps(unit)),
            attitude_decay=rules.half_life_weight(c.attitude_decay.steps(unit)),
            relationship_premium=c.relationship_premium,
            relational_per_step=c.relational_cost.per_step(unit),
            relational_cap=c.relational_cost_cap,
            manager_bond=c.manager_bond,
            club_bond=c.club_bond,
        )
        cls = scenario.classification
        self.definitions = classifications.Definitions(
            contractual=self.contractual, repeat_steps=cls.repeat_tenure.steps(unit),
            repeat_share=cls.repeat_share, attitude_high=cls.attitude_high, delight_level=c.delight_level,
            advocate_level=market.network.advocate_level,
        )
        self.switching_cost = c.switching_cost
        self.price_factor = 1.0
        self._shock = (NEVER, NEVER)  # first and last step of the latest income shock
        self.attribute_names = [a.name for a in market.attributes]
        self.kano = np.array([KANO_CODES[a.kano] for a in market.attributes], dtype=np.int8)
        costs = np.array([a.cost_per_unit for a in market.attributes], dtype=np.float64)
        self.segment_names = [s.name for s in c.segments] or ["all"]

        self.firms: list[Firm] = [
            Firm(self, i, spec, self.attribute_names, costs) for i, spec in enumerate(scenario.effective_firms())
        ]
        self.firm_names = [f.name for f in self.firms]
        for e in market.events:
            if isinstance(e, Entry):
                self.firms[self.firm_names.index(e.firm)].available = False
        present = [f for f in self.firms if f.available]
        self.price_ref = float(np.mean([f.price for f in present]))
        self._events = sorted(
            ((max(e.at.steps(unit), 1), i, e) for i, e in enumerate(market.events)), key=lambda x: x[:2]
        )
        self._crises: list[tuple[int, int, float]] = []  # (last step, firm, reliability) of service crises
        self._offers: dict[int, dict[str, np.ndarray]] = {}  # what firms offered, kept as long as a reaction needs
        self._offer_memory = max([f.reaction_delay for f in self.firms], default=0)

        n = c.population
        self.customers = CustomerState.allocate(n, len(self.firms), len(self.attribute_names))
        self._populate()
        self.network = (
            net.small_world(n, market.network.degree, market.network.rewire, streams["network"])
            if market.network.kind == "small_world" else net.empty(n)
        )
        degree = np.asarray(self.network.sum(axis=1)).ravel()
        self._inv_degree = np.divide(1.0, degree, out=np.zeros(n), where=degree > 0)
        self._p_talk = market.network.talk.per_step(unit)
        self._survey_every = market.survey.every.steps(unit)
        self._cutpoints = np.asarray(market.survey.cutpoints, dtype=np.float64)
        panel = scenario.outputs.panel_every
        self._panel_every = panel.steps(unit) if panel is not None else 0
        self._panel_since = np.zeros((n, len(self.firms)))
        self.customer_agents = [Customer(self, i) for i in range(n)]
        self._warmup_steps = scenario.warmup_steps()
        self.firm_after_warmup = self.customers.current.copy()  # the cohorts that loyalty is measured on

        self.departures: list[dict[str, np.ndarray]] = []
        self.responses: list[dict[str, np.ndarray]] = []
        self.panel: list[dict[str, np.ndarray]] = []
        self.contact_log: list[dict[str, np.ndarray]] = []  # win-back contacts, with what was known of each
        self.regain_log: list[dict[str, np.ndarray]] = []  # customers won back by an offer
        self.warning_log: list[dict[str, np.ndarray]] = []  # retention/personalised: every customer scored, the offers
        windows = [c.warning.window.steps(unit) for f in self.firms for c in f.campaigns
                   if c.kind in ("retention", "personalised")]
        # the firms' records of their customers, kept only when an early warning reads them
        self.crm = CRM(self.customers, max(windows)) if windows else None
        # each firm's last contact with each customer, for its own recontact rule (allocated only with campaigns)
        has_campaigns = any(f.campaigns for f in self.firms)
        self.contacted_by = np.full((n, len(self.firms)) if has_campaigns else (0, 0), NEVER, np.int32)
        # the customers' other categories (where coalition and co-brand partners sell), each with its own stream
        self.categories: list[Category] = []
        base = len(self.firms)
        for k, spec in enumerate(market.categories):
            self.categories.append(Category(spec, base, n, unit, self.customers.price_sensitivity,
                                            self.params.wallet_decay, streams.child("categories", k)))
            base += len(spec.outlets)
        self.category_log: list[dict] = []
        self.category_variates: list = []
        # the firms' loyalty programmes (their own, and copies of rivals' they launch after a delay)
        has_programmes = any(f.spec.programmes for f in self.firms)
        self.programmes = (Book(self.firms, self.categories, n, unit, c, streams["programmes"]) if has_programmes
                           else None)
        self.perks = None
        self._classified: dict = {}  # the step they were made at ("step") and each kind's codes
        self._members_prev = self._members()
        self.shared: Shared | None = None
        self.variates: Variates | None = None
        model_reporters = {
            "in_market": lambda m: int(m.customers.active.sum()),
            "with_a_firm": lambda m: int((m.customers.current >= 0).sum()),
            "prospects": lambda m: int((m.classify_codes("ladder") == 0).sum()),
            "lapsed": lambda m: int((m.classify_codes("ladder") == 5).sum()),
            "mean_satisfaction": lambda m: m.mean_satisfaction(),
            "switching_cost": lambda m: m.switching_cost,
            "price_factor": lambda m: m.price_factor,
        }
        for a, name in enumerate(self.attribute_names):
            model_reporters[f"kano_{name}"] = lambda m, a=a: KANO_NAMES[int(m.kano[a])]
            model_reporters[f"expectation_{name}"] = lambda m, a=a: float(m.customers.expectation[:, a].mean())
        self.datacollector = DataCollector(
            model_reporters=model_reporters,
            agenttype_reporters={Firm: {k: (lambda f, k=k: f.metrics[k]) for k in FIRM_METRICS}},
        )

    # --- set-up ---------------------------------------------------------------------------------------
    def _populate(self) -> None:
        """Draw every customer's traits and starting state from the population stream."""
        rng = self.streams["population"]
        st = self.customers
        c = self.config.market.customers
        n, n_firms = len(st), len(self.firms)
        segments = c.segments
        if segments:
            st.segment[:] = rng.choice(len(segments), size=n, p=[s.share for s in segments])
        for k, seg in enumerate(segments or [None]):
            rows = np.flatnonzero(st.segment == k)
            size = rows.size
            rate = (seg.purchase_rate if seg and seg.purchase_rate else c.purchase_rate)
            mean = rate.mean.per_step(self.step_unit)
            st.purchase_rate[rows] = rng.gamma(rate.shape, mean / rate.shape, size)
            st.basket[rows] = _clipped_normal(rng, seg.basket if seg and seg.basket else c.basket, size)
            sens = seg.price_sensitivity if seg and seg.price_sensitivity else c.price_sensitivity
            st.price_sensitivity[rows] = _clipped_normal(rng, sens, size)
        expected_spend = st.purchase_rate * st.basket
        st.value_tier[:] = np.searchsorted(np.quantile(expected_spend, [1 / 3, 2 / 3]), expected_spend, side="right")
        st.variety[:] = _clipped_normal(rng, c.variety_seeking, n)
        raw = np.column_stack([_clipped_normal(rng, a.importance, n) for a in self.config.market.attributes])
        raw = np.maximum(raw, 0.0)
        total = raw.sum(axis=1, keepdims=True)
        st.weights[:] = np.where(total > 0, raw / np.where(total > 0, total, 1.0), 1.0 / raw.shape[1])
        st.threshold[:] = _clipped_normal(rng, c.satisfaction_threshold, n)
        levels = np.array([f.levels for f in self.firms])
        available = np.array([f.available for f in self.firms])
        # customers take the average offer of the firms in the market for granted
        spread = c.expectation_spread * rng.standard_normal((n, levels.shape[1]))
        st.expectation[:] = np.clip(levels[available].mean(axis=0)[None, :] + spread, 0.0, 1.0)
        quality = rules.quality_index(st.weights, levels, st.expectation, self.kano, c.loss_aversion)
        st.perceived[:] = np.clip(quality + 0.05 * rng.standard_normal((n, n_firms)), 0.0, 1.0)
        relative_price = np.array([f.price for f in self.firms]) / self.price_ref - 1.0
        utility = c.quality_weight * st.perceived - st.price_sensitivity[:, None] * relative_price[None, :]
        utility = np.where(available[None, :], utility, -np.inf)
        st.current[:] = rules.logit_choice(utility, rng.gumbel(size=(n, n_firms)), c.choice_noise)
        st.tenure[:] = rng.integers(1, max(self.config.time.horizon.steps(self.step_unit), 2), n)
        rows = np.arange(n)
        st.relationship_purchases[:] = np.ceil(st.tenure * st.purchase_rate).astype(np.int32)
        st.since[rows, st.current] = -st.tenure
        st.last_buy[rows, st.current] = 0
        st.wallet[rows, st.current] = st.purchase_rate * st.basket / (1.0 - self.params.wallet_decay)
        managers = np.array([f.managers for f in self.firms])[st.current]
        st.manager[:] = np.where((st.value_tier == 2) & (managers > 0), rows % np.maximum(managers, 1), NO_FIRM)

    # --- the step -------------------------------------------------------------------------------------
    def step(self) -> None:
        t = self.steps
        self._apply_events(t)
        self._service_crises(t)
        self._drift_kano()
        self._offers.pop(t - self._offer_memory - 1, None)
        self._offers[t] = {"price": np.array([f.price for f in self.firms]),
                           "levels": np.array([f.levels for f in self.firms]),
                           "available": np.array([f.available for f in self.firms])}
        self.agents_by_type[Firm].do("step")
        self._campaigns(t)
        perks = extra = None
        if self.programmes is not None:
            perks, extra = self.programmes.prepare(self.customers, t, self._prices(), self.contractual,
                                                   np.array([f.available for f in self.firms]))
        self.perks = perks
        self.shared = self._shared(t)
        self.shared.perks = None if perks is None else self.categories_perks(perks, None)
        self.variates = self._draw()
        if extra is not None:  # points pressure: extra purchase occasions
            self.variates.occasions = self.variates.occasions + extra
        self.category_variates = [cat.draw() for cat in self.categories]
        active_before = self.customers.active.copy()  # categories: customers in the market at the step's start
        if self.one_at_a_time:
            self._active_before = active_before
            self.agents_by_type[Customer].do("step")
        else:
            rules.step_customers(self.customers, slice(None), self.variates, self.shared, self.params)
            for cat, v in zip(self.categories, self.category_variates, strict=True):
                step_category(cat, slice(None), v, self.categories_perks(perks, cat), active_before)
        if self.crm is not None:
            self.crm.observe(self.customers, t)
        if self.programmes is not None:
            self.programmes.settle(self.customers, t, self._prices(), self.params.lapse_steps, self.contractual)
        self._settle_categories(t)
        self._survey(t)
        self._settle(t)
        self._snapshot(t)
        if t == self._warmup_steps:
            self.firm_after_warmup = self.customers.current.copy()
        self.datacollector.collect(self)

    def run(self, steps: int | None = None) -> LoyaltyMarket:
        for _ in range(self.config.steps() if steps is None else steps):
            self.step()
        return self

    def _prices(self) -> np.ndarray:
        """Every seller's price: the market's firms, then each category's outlets."""
        return np.concatenate([[f.price for f in self.firms], *(cat.price for cat in self.categories)])

    def categories_perks(self, perks, cat: Category | None):
        """The perks that concern the market's firms (``cat`` None) or one category's outlets."""
        if perks is None:
            return None
        if cat is None:
            if not self.categories:
                return perks
            cols = slice(0, len(self.firms))
            return type(perks)(**{name: getattr(perks, name)[:, cols] for name in vars(perks)})
        return cat.perks_view(perks)

    def offer_history(self, t: int) -> dict[str, np.ndarray] | None:
        """What the firms offered at the start of step ``t`` (for rivals that react with a delay)."""
        return self._offers.get(t)

    def _apply_events(self, t: int) -> None:
        st = self.customers
        if self._shock[1] < t and self.price_factor != 1.0:
            self.price_factor = 1.0
        while self._events and self._events[0][0] <= t:
            _, _, e = self._events.pop(0)
            firm = self.firms[self.firm_names.index(e.firm)] if getattr(e, "firm", None) else None
            if isinstance(e, PriceChange):
                firm.set_price(e.price)
            elif isinstance(e, AttributeChange):
                firm.levels[self.attribute_names.index(e.attribute)] = e.level
            elif isinstance(e, SwitchingCostChange):
                self.switching_cost = e.switching_cost
            elif isinstance(e, Entry):
                firm.available = True
            elif isinstance(e, ServiceCrisis):
                self._crises.append((t + e.duration.steps(self.step_unit) - 1, firm.index, e.reliability))
            elif isinstance(e, IncomeShock):
                self.price_factor = e.price_sensitivity
                self._shock = (t, t + e.duration.steps(self.step_unit) - 1)
            elif isinstance(e, IntegrityBreach):
                # the news reaches everyone: beliefs in the firm fall, and so does its customers' attitude
                firm.breach_step = t
                st.perceived[:, firm.index] *= 1.0 - e.severity
                st.attitude[st.current == firm.index] *= 1.0 - e.severity
            elif isinstance(e, ManagerLeaves):
                # the manager's customers lose their personal bond (the firm hires a replacement, who serves
                # only customers joining from now on)
                served = (st.current == firm.index) & (st.manager == e.manager)
                st.manager[served] = NO_FIRM
                st.manager_lost[served] = t
                if e.to is not None:  # staff turnover takes customers with it
                    to = self.firm_names.index(e.to)
                    follow = self.config.market.customers.manager_follow
                    st.perceived[served, to] += follow * (1.0 - st.perceived[served, to])

    def _campaigns(self, t: int) -> None:
        """Each firm's campaigns, in list order, on their rounds: every ``every`` after ``start`` until ``stop``.

        A contacted customer holds the offer (one at a time: a later offer replaces an earlier one); whether a
        lapsed customer accepts a win-back offer, or a saved one stays, is its own choice, made by the same rules
        as any other. Random draws (a win-back ``share``, retention tie-breaks and holdouts) come from the firm's
        own policy stream, so one firm's campaigns never shift another firm's or the customers' draws.
        """
        unit = self.step_unit
        for f in self.firms:
            f.contacts, f.contact_spend = 0, 0.0
            for c in f.campaigns:
                start, every = c.start.steps(unit), max(c.every.steps(unit), 1)
                if t <= start or (c.stop is not None and t > c.stop.steps(unit)) or (t - start - 1) % every:
                    continue
                if c.kind == "win_back":
                    self._win_back(f, c, t)
                else:
                    self._retention(f, c, t)

    def _in_segments(self, target) -> np.ndarray | bool:
        """Customers in the target's value tiers and customer segments (True where the target names none)."""
        st = self.customers
        keep: np.ndarray | bool = True
        if target.value_tiers is not None:
            keep = keep & np.isin(st.value_tier, [("low", "medium", "high").index(v) for v in target.value_tiers])
        if target.segments is not None:
            keep = keep & np.isin(st.segment, [self.segment_names.index(name) for name in target.segments])
        return keep

    def _affordable(self, c, committed: float) -> int | None:
        """How many customers a round's budget pays for at ``committed`` per contact (None: no limit)."""
        if c.budget is None or committed <= 0:
            return None
        return int(c.budget // committed)

    def _win_back(self, f: Firm, c, t: int) -> None:
        """Contact lapsed customers: active, whose last firm was this one and who have another firm or none now,
        lapsed within the target's window, with a recorded cause and first-lifetime value the target accepts,
        and not contacted within ``recontact_after``. A share of them is drawn at random; ``max_contacts`` and
        the budget (contact costs only: the offer is paid when accepted) cap a round, the most valuable first."""
        st = self.customers
        unit = self.step_unit
        lapsed = t - st.lost_at
        target = c.target
        eligible = (st.active & (st.previous == f.index) & (st.current != f.index)
                    & (lapsed >= target.lapsed_at_least.steps(unit))
                    & (st.lost_value >= target.min_value)
                    & (t - self.contacted_by[:, f.index] >= c.recontact_after.steps(unit)))
        if target.lapsed_at_most is not None:
            eligible &= lapsed <= target.lapsed_at_most.steps(unit)
        if target.causes is not None:
            codes = [Cause[name.upper()] for name in target.causes]
            eligible &= np.isin(st.switch_cause, codes)
        eligible &= self._in_segments(target)
        who = np.flatnonzero(eligible)
        if target.share < 1.0:
            who = who[self.streams.policy(f.index).random(who.size) < target.share]
        cap = min(x for x in (target.max_contacts, self._affordable(c, c.contact_cost), who.size) if x is not None)
        if who.size > cap:
            who = who[np.argsort(-st.lost_value[who], kind="stable")[:cap]]
        self._make_offer(f, c, who, t)
        self.contact_log.append({
            "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32),
            "firm": np.full(who.size, f.index, np.int32), "cause": st.switch_cause[who].copy(),
            "lapsed": (t - st.lost_at[who]).astype(np.int32), "first_value": st.lost_value[who].copy(),
            "discount": np.full(who.size, c.offer.discount), "upgrade": np.full(who.size, c.offer.upgrade),
            "offer_until": st.offer_until[who].copy(), "contact_cost": np.full(who.size, c.contact_cost),
            "offer_cost": np.full(who.size, c.offer.cost),
        })
        f.contact_spend += who.size * c.contact_cost

    def _retention(self, f: Firm, c, t: int) -> None:
        """Score the firm's customers (its current providers' customers; in a repertoire market, those who bought
        there within the lapse window) with the campaign's early warning (observable data only: see
        :mod:`loyaltysim.model.mechanisms.crm`), flag those the target selects (the riskiest share, or all at or above the
        threshold; ties in random order), leave a random ``holdout`` of them alone, and give the rest the save
        offer, riskiest first, within ``max_contacts`` and the budget (contact and offer costs), skipping
        customers contacted within ``recontact_after``. Every scored customer is logged (``warnings`` table), so
        the warning's precision, recall and lead time can be measured against the defections that follow.

        A personalised campaign works the same way, ranking by the value the firm's records show (occasions in the
        warning window) when its target says ``rank_by = "value"``, and by the risk score otherwise: one campaign
        machinery (selector, offer, budget) for save offers and personalised offers."""
        st = self.customers
        unit = self.step_unit
        target = c.target
        if self.contractual:
            mine = st.active & (st.current == f.index)
        else:  # a firm's customers in a repertoire market: those who bought from it within the lapse window
            mine = st.active & ((t - 1 - st.last_buy[:, f.index]) < self.params.lapse_steps)
        mine &= self._in_segments(target)
        rows = np.flatnonzero(mine)
        rivals = [g.price for g in self.firms if g.available and g is not f]
        gap = (f.price - min(rivals)) / f.price if rivals else 0.0
        year = round(DAYS["year"] / DAYS[unit])
        window = c.warning.window.steps(unit)
        if c.kind == "personalised" and target.rank_by == "value":  # the value its records show: recent purchases
            score = self.crm.recent_purchases(rows, f.index, t - 1, window).astype(np.float64)
        else:
            score = crm.risk_scores(st, self.crm, rows, f.index, t, c.warning, window, year, gap)
        rng = self.streams.policy(f.index)
        order = np.lexsort((rng.random(rows.size), -score))  # riskiest first, ties at random
        if target.top_share is not None:
            chosen = order[:int(np.ceil(target.top_share * rows.size))]
        else:
            chosen = order[:int((score >= target.threshold).sum())]
        held = rng.random(chosen.size) < target.holdout if target.holdout > 0 else np.zeros(chosen.size, bool)
        due = (t - self.contacted_by[rows[chosen], f.index]) >= c.recontact_after.steps(unit)
        treat = chosen[~held & due]
        cap = min(x for x in (target.max_contacts, self._affordable(c, c.contact_cost + c.offer.cost), treat.size)
                  if x is not None)
        treat = treat[:cap]
        who = rows[treat]
        self._make_offer(f, c, who, t)
        if c.offer.manager:  # a manager serves the customer at its current firm: this one's customers only
            own = who[(st.current[who] == f.index) & (st.manager[who] < 0)]
            st.manager[own] = own % max(f.managers, 1)
        flagged = np.zeros(rows.size, bool)
        flagged[chosen] = True
        treated = np.zeros(rows.size, bool)
        treated[treat] = True
        self.warning_log.append({
            "step": np.full(rows.size, t, np.int32), "customer": rows.astype(np.int32),
            "firm": np.full(rows.size, f.index, np.int32),
            "campaign": np.full(rows.size, CAMPAIGN_CODES[c.kind], np.int8),
            "score": score, "flagged": flagged, "treated": treated,
            "contact_cost": np.where(treated, c.contact_cost, 0.0), "offer_cost": np.where(treated, c.offer.cost, 0.0),
        })
        f.contact_spend += who.size * (c.contact_cost + c.offer.cost)

    def _make_offer(self, f: Firm, c, who: np.ndarray, t: int) -> None:
        st = self.customers
        offer = c.offer
        st.offer_firm[who] = f.index
        st.offer_until[who] = t + offer.duration.steps(self.step_unit) - 1
        st.offer_discount[who] = offer.discount
        st.offer_upgrade[who] = offer.upgrade
        st.offer_cost[who] = offer.cost
        st.contacted_at[who] = t
        self.contacted_by[who, f.index] = t
        f.contacts += who.size

    def _service_crises(self, t: int) -> None:
        """A firm in crisis has the reliability of its latest crisis still running; otherwise its own."""
        self._crises = [c for c in self._crises if c[0] >= t]
        for f in self.firms:
            running = [c[2] for c in self._crises if c[1] == f.index]
            f.reliability = running[-1] if running else f.base_reliability

    def _drift_kano(self) -> None:
        """Attractive attributes become one-dimensional, then must-be, as customers come to expect them."""
        st = self.customers
        for a, attr in enumerate(self.config.market.attributes):
            if attr.drift is None or self.kano[a] == MUST_BE:
                continue
            expected = st.expectation[st.active, a].mean() if st.active.any() else 0.0
            if expected >= attr.drift.must_be_at:
                self.kano[a] = MUST_BE
            elif expected >= attr.drift.one_dimensional_at and self.kano[a] == ATTRACTIVE:
                self.kano[a] = ONE_DIMENSIONAL

    def _shared(self, t: int) -> Shared:
        """Firms' offers now, and word of mouth from the previous step's customers."""
        st = self.customers
        n = len(st)
        window = self.params.attribution_steps
        u_talk = self.streams["word_of_mouth"].random(n)
        has = st.current >= 0
        cur = np.where(has, st.current, 0)
        rows = np.arange(n)
        sat = st.satisfaction[rows, cur]
        p_talk = self._p_talk if self.programmes is None else self._p_talk * self.programmes.talk
        talk = st.active & has & (u_talk < p_talk)
        recommend = talk & (sat > self.config.market.network.advocate_level)
        left = st.step_left >= 0
        warn = (u_talk < p_talk) & (left | (talk & (sat < st.threshold)))
        about = np.where(left, st.step_left, cur)
        levels = np.array([f.levels for f in self.firms])
        available = np.array([f.available for f in self.firms])
        return Shared(
            t=t,
            available=available,
            price=np.array([f.price for f in self.firms]),
            unit_cost=np.array([f.unit_cost for f in self.firms]),
            price_ref=self.price_ref,
            price_factor=self.price_factor,
            levels=levels,
            best_levels=levels[available].max(axis=0),
            kano=self.kano.copy(),
            reliability=np.array([f.reliability for f in self.firms]),
            recovery=np.array([f.recovery for f in self.firms]),
            reach=np.array([f.reach for f in self.firms]),
            managers=np.array([f.managers for f in self.firms], dtype=np.int32),
            price_rose=np.array([t - f.price_rise_step <= window for f in self.firms]),
            breached=np.array([t - f.breach_step <= window for f in self.firms]),
            shocked=bool(self._shock[0] <= t <= self._shock[1] + window),
            switching_cost=self.switching_cost,
            wom_pos=self._heard(recommend, cur),
            wom_neg=self._heard(warn, about),
        )

    def _heard(self, speakers: np.ndarray, about: np.ndarray) -> np.ndarray:
        """[n, F] share of each customer's neighbours who spoke about each firm: the speakers' rows of the symmetric
        0/1 network, counted by the firm each spoke of. The same numbers as ``network @ one_hot(about)`` over the
        speakers (whole counts either way), at a cost that grows with the speakers' ties rather than all ties."""
        n, n_firms = len(self.customers), len(self.firms)
        who = np.flatnonzero(speakers)
        ties = self.network[who]
        spoken = np.repeat(about[who], np.diff(ties.indptr))
        heard = np.bincount(spoken * n + ties.indices, minlength=n_firms * n).reshape(n_firms, n)  # firm-major
        return (heard * self._inv_degree).T

    def _draw(self) -> Variates:
        """The step's random numbers, full-size whatever the state, so other runs' draws stay aligned."""
        s = self.streams
        n, n_firms = len(self.customers), len(self.firms)
        choice = s["choice"]
        service = s["service"]
        return Variates(
            occasions=s["occasions"].poisson(self.customers.purchase_rate),
            u_search=choice.random(n),
            u_attention=choice.random(n),
            u_variety=choice.random(n),
            gumbel=choice.gumbel(size=(n, n_firms)),
            u_fail=service.random(n),
            u_complain=service.random(n),
            u_recover=service.random(n),
            u_market=s["marketing"].random((n, n_firms)),
            u_life=s["life_events"].random(n),
        )

    # --- measurement ----------------------------------------------------------------------------------
    def classify_codes(self, kind: str) -> np.ndarray:
        """Each customer's class now: ``ladder``, ``dick_basu`` or ``jones_sasser`` (codes, cached per step)."""
        if kind not in ("ladder", "dick_basu", "jones_sasser"):
            raise KeyError(kind)
        if self._classified.get("step") != self.steps:
            self._classified = {"step": self.steps, **classifications.classify_all(self.customers, self.definitions)}
        return self._classified[kind]

    def classify(self, kind: str) -> np.ndarray:
        """Each customer's class now, by name."""
        names = {"ladder": classifications.LADDER, "dick_basu": classifications.DICK_BASU, "jones_sasser": classifications.JONES_SASSER}
        return np.asarray(names[kind], dtype=object)[self.classify_codes(kind)]

    def _members(self) -> np.ndarray:
        """Customers of each firm: its current providers' customers, or buyers within the lapse window."""
        st = self.customers
        n_firms = len(self.firms)
        if self.contractual:
            return np.bincount(st.current[st.current >= 0], minlength=n_firms)
        return ((self.steps - st.last_buy) < self.params.lapse_steps).sum(axis=0)

    def _member_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(customer, firm) for each firm's customers (see :meth:`_members`), in customer order."""
        st = self.customers
        if self.contractual:
            who = np.flatnonzero(st.current >= 0)
            return who, st.current[who]
        return np.nonzero((self.steps - st.last_buy) < self.params.lapse_steps)

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
        if self.crm is not None:
            self.crm.surveyed(asked, firm, score, t)
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
            # the habit moved away from this firm: the cause recorded at that switch; a store visited now and
            # then lost to the customer's habitual firm: pushed if dissatisfied with it, else pulled away
            moved = (st.current[who] >= 0) & (st.current[who] != firm)
            switched_away = moved & (st.previous[who] == firm)
            dissatisfied = st.satisfaction[who, firm] < st.threshold[who]
            cause = np.select(
                [switched_away, ~st.active[who], moved & dissatisfied, moved, dissatisfied],
                [st.switch_cause[who], Cause.NATURAL_CHURN, Cause.NEEDS_NOT_MET, Cause.COMPETITOR_OFFER,
                 Cause.NEEDS_NOT_MET],
                default=Cause.MARKET_FLUCTUATION,
            ).astype(np.int8)
            tenure = st.last_buy[who, firm] - st.since[who, firm]
        dest = st.current[who]
        return {
            "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32), "firm": firm,
            "destination": np.where(dest == firm, NO_FIRM, dest).astype(np.int32), "cause": cause,
            "last_score": st.last_score[who], "tenure": tenure.astype(np.int32),
            "satisfaction": st.satisfaction[who, firm],
            "value": st.step_lifetime_value[who] if self.contractual else np.full(who.size, np.nan),
            "revenue": st.step_lifetime_revenue[who] if self.contractual else np.full(who.size, np.nan),
            "second_lifetime": st.step_second_ended[who] if self.contractual else np.zeros(who.size, bool),
        }

    def _settle(self, t: int) -> None:
        st = self.customers
        n_firms = len(self.firms)
        members = self._members()
        who, firm = self._member_pairs()  # sums over them run in customer order, as a masked column sum would
        dep = self._departures(t)
        self.departures.append(dep)
        back = np.flatnonzero(st.step_regained)
        if back.size:
            self.regain_log.append({"step": np.full(back.size, t, np.int32), "customer": back.astype(np.int32),
                                    "firm": st.current[back].copy()})
        # sales by firm: non-buyers are counted in an extra bin, dropped (the same sums, without gathering buyers)
        sold_at = np.where(st.step_firm >= 0, st.step_firm, n_firms)

        def sales(x: np.ndarray) -> np.ndarray:
            return np.bincount(sold_at, weights=x, minlength=n_firms + 1)[:n_firms]

        purchases = sales(st.step_purchases)
        units = sales(st.step_units)
        failures = np.bincount(st.step_firm[st.step_failed], minlength=n_firms)
        complaints = np.bincount(st.step_firm[st.step_complained], minlength=n_firms)
        recovered = np.bincount(st.step_firm[st.step_recovered], minlength=n_firms)
        gained = np.bincount(st.step_gained[st.step_gained >= 0], minlength=n_firms)
        discounts = sales(st.step_discount)
        won_back = st.step_regained
        regained = np.bincount(st.current[won_back], minlength=n_firms)
        offer_costs = np.bincount(st.current[won_back], weights=st.offer_cost[won_back], minlength=n_firms)
        defections = np.bincount(dep["firm"], minlength=n_firms)
        sat_sum = np.bincount(firm, weights=st.satisfaction[who, firm], minlength=n_firms)
        has = np.flatnonzero(st.current >= 0)
        held = st.current[has]
        attitude_sum = np.bincount(held, weights=st.attitude[has], minlength=n_firms)
        holders = np.bincount(held, minlength=n_firms)
        components = self._satisfaction_components(has)
        component_sums = [np.bincount(held, weights=c, minlength=n_firms) for c in components]
        wallet_own = np.bincount(firm, weights=st.wallet[who, firm], minlength=n_firms)
        wallet_all = np.bincount(firm, weights=rules.row_total(st.wallet)[who], minlength=n_firms)
        ladder = classifications.counts_by_firm(st.current, self.classify_codes("ladder"), n_firms, len(classifications.LADDER))
        db = classifications.counts_by_firm(st.current, self.classify_codes("dick_basu"), n_firms, len(classifications.DICK_BASU))
        js = classifications.counts_by_firm(st.current, self.classify_codes("jones_sasser"), n_firms,
                                    len(classifications.JONES_SASSER))
        total = members.sum()
        latest = self.responses[-1] if self.responses else None
        responses = latest if latest is not None and latest["step"][:1].tolist() == [t] else None
        member_discounts = sales(st.step_member_discount)
        book = self.programmes
        for f in self.firms:
            j = f.index
            f.settle(units[j], complaints[j], gained[j], discounts[j], offer_costs[j], member_discounts[j],
                     book.firm_totals["programme_cost"][j] if book else 0.0,
                     book.firm_totals["programme_fees"][j] if book else 0.0)
            m = {
                "available": f.available,
                "customers": int(members[j]),
                "share": members[j] / total if total else float("nan"),
                "gained": int(gained[j]),
                "defections": int(defections[j]),
                "retention": 1.0 - defections[j] / self._members_prev[j] if self._members_prev[j] else float("nan"),
                "purchases": float(purchases[j]),
                "units": float(units[j]),
                "share_of_wallet": wallet_own[j] / wallet_all[j] if wallet_all[j] > 0 else float("nan"),
                "satisfaction": sat_sum[j] / members[j] if members[j] else float("nan"),
                "satisfaction_basic": component_sums[0][j] / holders[j] if holders[j] else float("nan"),
                "satisfaction_performance": component_sums[1][j] / holders[j] if holders[j] else float("nan"),
                "satisfaction_latent": component_sums[2][j] / holders[j] if holders[j] else float("nan"),
                "attitude": attitude_sum[j] / holders[j] if holders[j] else float("nan"),
                "failures": int(failures[j]),
                "complaints": int(complaints[j]),
                "recovered": int(recovered[j]),
                "contacts": int(f.contacts),
                "regained": int(regained[j]),
            }
            m.update(self._survey_metrics(responses, j))
            m.update({col: int(ladder[j, k + 1]) for k, col in enumerate(LADDER_COLUMNS)})
            m.update({col: int(db[j, k]) for k, col in enumerate(DICK_BASU_COLUMNS)})
            m.update({col: int(js[j, k]) for k, col in enumerate(JONES_SASSER_COLUMNS)})
            m.update(f.books)
            f.metrics = m
        self._members_prev = members

    def _settle_categories(self, t: int) -> None:
        """Each category outlet's step: habitual customers (whose last purchase in the category was there), sales,
        share of the category's units, and its books (programme costs and settlements from the loyalty
        programmes)."""
        book = self.programmes
        for cat in self.categories:
            cs = cat.state
            k = len(cat.names)
            buyer = cs.step_outlet >= 0
            at = cs.step_outlet[buyer]
            units = np.bincount(at, weights=cs.step_units[buyer], minlength=k)
            purchases = np.bincount(at, weights=cs.step_purchases[buyer], minlength=k)
            discounts = np.bincount(at, weights=cs.step_member_discount[buyer], minlength=k)
            customers = np.bincount(cs.last[cs.last >= 0], minlength=k)
            total = units.sum()
            for j, name in enumerate(cat.names):
                g = cat.base + j
                revenue = units[j] * cat.price[j] - discounts[j]
                cogs = units[j] * cat.unit_cost[j]
                cost = book.firm_totals["programme_cost"][g] if book else 0.0
                fees = book.firm_totals["programme_fees"][g] if book else 0.0
                self.category_log.append({
                    "step": t, "category": cat.name, "outlet": name, "habitual_customers": int(customers[j]),
                    "purchases": float(purchases[j]), "units": float(units[j]),
                    "share": units[j] / total if total > 0 else float("nan"), "price": float(cat.price[j]),
                    "revenue": revenue, "cost_of_goods": cogs, "member_discounts": float(discounts[j]),
                    "programme_cost": cost, "programme_fees": fees, "profit": revenue + fees - cogs - cost,
                })

    def _satisfaction_components(self, who: np.ndarray) -> list[np.ndarray]:
        """For customers ``who`` (who have a firm): the current firm's offer against their expectations, summed over
        the attributes of each Kano class (must-be, one-dimensional, attractive), weighted by importance: how far
        each kind of need is met now (measurement; the customer's smoothed satisfaction is the behavioural state)."""
        st = self.customers
        levels = np.array([f.levels for f in self.firms])
        gap = np.take(levels, np.maximum(st.current, 0), axis=0) - st.expectation
        return [rules.weighted_response(st.weights, gap, self.kano, self.params.loss_aversion, c)[who]
                for c in (MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE)]

    def _snapshot(self, t: int) -> None:
        """Per-customer panel rows every ``outputs.panel_every`` (purchases per firm since the last one)."""
        if not self._panel_every:
            return
        st = self.customers
        buyer = st.step_firm >= 0
        self._panel_since[np.flatnonzero(buyer), st.step_firm[buyer]] += st.step_purchases[buyer]
        if t % self._panel_every:
            return
        n = len(st)
        has = st.current >= 0
        row = {
            "step": np.full(n, t, np.int32), "customer": np.arange(n, dtype=np.int32), "segment": st.segment.copy(),
            "value_tier": st.value_tier.copy(), "active": st.active.copy(), "firm": st.current.copy(),
            "tenure": st.tenure.copy(),
            "satisfaction": np.where(has, st.satisfaction[np.arange(n), np.where(has, st.current, 0)], np.nan),
            "attitude": st.attitude.copy(), "last_score": st.last_score.copy(),
            "ladder": self.classify_codes("ladder").copy(), "dick_basu": self.classify_codes("dick_basu").copy(),
            "jones_sasser": self.classify_codes("jones_sasser").copy(),
        }
        for j, name in enumerate(self.firm_names):
            row[f"purchases_{name}"] = self._panel_since[:, j].copy()
        self.panel.append(row)
        self._panel_since[:] = 0.0

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
