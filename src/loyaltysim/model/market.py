"""The market: a Mesa model that builds the parts of a run and steps them in the ODD schedule's order.

Each submodel lives in its own module (the ODD's section 3.3 names it); this module only wires them and writes the
order of a step, in :meth:`LoyaltyMarket.step`:

1. scheduled events take effect (:mod:`~loyaltysim.model.mechanisms.events`), attributes drift between Kano classes
   (:mod:`~loyaltysim.model.mechanisms.kano_drift`);
2. firms act (investments, reactions to rivals) as Mesa agents (:mod:`~loyaltysim.model.agents`), and run their
   campaigns' rounds (:mod:`~loyaltysim.model.mechanisms.campaigns`);
3. loyalty programmes say what membership means to each customer this step
   (:mod:`~loyaltysim.model.mechanisms.programmes`);
4. the shared state is read off the previous step: firms' offers, word of mouth
   (:mod:`~loyaltysim.model.mechanisms.word_of_mouth`);
5. the step's random numbers are drawn for the whole population, from named streams
   (:mod:`~loyaltysim.model.streams`); with them switched on, who arrives in the market now and buys on arrival
   (:mod:`~loyaltysim.model.mechanisms.arrivals`) and the value of buying elsewhere
   (:mod:`~loyaltysim.model.mechanisms.outside_option`);
   then, in a repertoire market with them switched on, tastes drift (:mod:`~loyaltysim.model.mechanisms.tastes`) and
   awareness moves with the step's news, setting each customer's consideration set
   (:mod:`~loyaltysim.model.mechanisms.consideration`);
6. customers step, in the market (:mod:`~loyaltysim.model.rules`) and in its categories
   (:mod:`~loyaltysim.model.mechanisms.categories`): all at once (vectorized) or one at a time as Mesa agents
   (same rules, same numbers);
7. the firms' records and programme ledgers book the step;
8. category outlets settle, surveys are taken (:mod:`~loyaltysim.model.mechanisms.surveys`), departures are logged
   and firms settle their books (:mod:`~loyaltysim.model.accounts`), the panel is recorded
   (:mod:`~loyaltysim.model.panel`), the event logs asked for are kept (:mod:`~loyaltysim.model.event_logs`); the
   data collector records.
"""

from __future__ import annotations

import numpy as np
from mesa import DataCollector, Model

from loyaltysim.economics import at_market_size
from loyaltysim.model import classifications
from loyaltysim.model.accounts import FIRM_METRICS, Accounts, Membership
from loyaltysim.model.agents import Customer, Firm, OfferHistory
from loyaltysim.model.event_logs import EventLogs
from loyaltysim.model.mechanisms import categories as category_markets
from loyaltysim.model.mechanisms import events as scheduled
from loyaltysim.model.mechanisms import outside_option, reference_price, reliability_beliefs
from loyaltysim.model.mechanisms.arrivals import Arrivals
from loyaltysim.model.mechanisms.attention import noticed_reach
from loyaltysim.model.mechanisms.campaigns import Campaigns
from loyaltysim.model.mechanisms.categories import Category, step_category
from loyaltysim.model.mechanisms.consideration import Consideration
from loyaltysim.model.mechanisms.events import ScheduledEvents
from loyaltysim.model.mechanisms.kano_drift import drift_kano
from loyaltysim.model.mechanisms.lifetimes import Lifetimes
from loyaltysim.model.mechanisms.market_expectations import reference_levels
from loyaltysim.model.mechanisms.programmes import Book
from loyaltysim.model.mechanisms.surveys import Surveys
from loyaltysim.model.mechanisms.tastes import Tastes
from loyaltysim.model.mechanisms.word_of_mouth import WordOfMouth
from loyaltysim.model.memory import reuse_freed_memory
from loyaltysim.model.panel import Panel
from loyaltysim.model.population import populate
from loyaltysim.model.rules import life_events, step_customers
from loyaltysim.model.segment_log import SegmentLog
from loyaltysim.model.state import KANO_CODES, KANO_NAMES, CustomerState, Params, Shared, Variates
from loyaltysim.model.streams import Streams
from loyaltysim.scenario import LoyaltyScenario


class LoyaltyMarket(Model):
    """A market of customers choosing among firms, as a Mesa model.

    Args:
        scenario: a validated :class:`~loyaltysim.scenario.LoyaltyScenario`.
        seed: the root seed (a non-negative int) or a ``numpy.random.SeedSequence`` spawned from one.
        one_at_a_time: step customers one by one as Mesa agents instead of all at once (slow; same numbers).

    ``run()`` runs the scenario's horizon, ``run(k)`` k more steps: a model can be run to a step, inspected
    (``customers`` holds every customer's state as arrays; ``firms`` the firm agents; ``classify(kind)`` the loyalty
    classes) and continued.
    """

    def __init__(self, scenario: LoyaltyScenario, *, seed: int | np.random.SeedSequence = 0,
                 one_at_a_time: bool = False):
        reuse_freed_memory()  # a step's large temporaries reuse freed memory (see loyaltysim.model.memory)
        streams = Streams.from_seed(seed)
        super().__init__(rng=streams["mesa"])
        self.config = scenario  # as declared; the model runs it with its size-dependent money at its size
        scenario = at_market_size(scenario)
        self.streams = streams
        self.one_at_a_time = one_at_a_time
        self.step_unit = unit = scenario.time.step
        market = scenario.market
        c = market.customers
        self.contractual = market.type == "contractual"
        self.params = Params.from_scenario(scenario)
        self.classifier = classifications.Classifier(classifications.Definitions.from_scenario(scenario))
        self.attribute_names = [a.name for a in market.attributes]
        self.kano = np.array([KANO_CODES[a.kano] for a in market.attributes], dtype=np.int8)
        costs = np.array([a.cost_per_unit for a in market.attributes], dtype=np.float64)
        self.segment_names = [s.name for s in c.segments] or ["all"]

        # firms, and the events that change their offers and the market's conditions
        self.firms: list[Firm] = [
            Firm(self, i, spec, self.attribute_names, costs) for i, spec in enumerate(scenario.effective_firms())
        ]
        self.firm_names = [f.name for f in self.firms]
        self.events = ScheduledEvents(market.events, unit, c.switching_cost)
        for name in self.events.entrants(market.events):
            self.firms[self.firm_names.index(name)].available = False
        self.price_ref = float(np.mean([f.price for f in self.firms if f.available]))
        elsewhere = market.outside_option.reference_price if market.outside_option.enabled else None
        if elsewhere is not None:  # the price customers expect to pay elsewhere is the market's reference
            self.price_ref = float(elsewhere)
        self.offers = OfferHistory(self.firms)

        # customers: their arrays, their starting state, their network, and their Mesa agents
        n = c.population
        self.customers = CustomerState.allocate(n, len(self.firms), len(self.attribute_names))
        populate(self.customers, scenario, self.firms, self.kano, self.price_ref, self.params.wallet_decay,
                 streams["population"])
        # arrivals over time: each customer's arrival step, from its own stream; nobody is in the market before it
        self.arrivals = Arrivals(c.arrivals, n, unit, streams["arrivals"]) if c.arrivals.enabled else None
        if self.arrivals is not None:
            self.arrivals.hold_out(self.customers)
        reference_price.start(self.customers, np.array([f.price for f in self.firms]), elsewhere)
        reliability_beliefs.start(self.customers, np.array([f.reliability for f in self.firms]),
                                  np.array([f.available for f in self.firms]))
        # heterogeneous lifetimes instead of natural churn's one hazard, from their own stream (None: off)
        self.lifetimes = Lifetimes(c.lifetimes, n, unit, streams["lifetimes"]) if c.lifetimes.enabled else None
        # buying elsewhere: a searching customer may choose none of the firms, from its own stream (None: off)
        self.outside_option = (outside_option.OutsideOption(market.outside_option, c.choice_noise,
                                                            streams["outside_option"])
                               if market.outside_option.enabled else None)
        # repertoire markets: personal brand tastes and consideration sets, each from its own stream (None: off)
        self.tastes = (Tastes(market.tastes, n, len(self.firms), c.choice_noise, unit, streams["tastes"])
                       if market.tastes.enabled else None)
        self.consideration = (Consideration(market.consideration, self.customers.current,
                                            np.array([f.available for f in self.firms]), unit,
                                            streams["consideration"])
                              if market.consideration.enabled else None)
        self.word_of_mouth = WordOfMouth(market.network, n, unit, streams["word_of_mouth"], streams["network"])
        self.surveys = Surveys(market.survey, unit, streams["surveys"])
        panel = scenario.outputs.panel_every
        self.panel = Panel(panel.steps(unit) if panel is not None else 0, n, self.firm_names, self.segment_names)
        self.event_logs = EventLogs(scenario.outputs.event_logs)
        self.customer_agents = [Customer(self, i) for i in range(n)]
        self._event_targets = scheduled.EventTargets(self.firms, self.firm_names, self.attribute_names,
                                                     self.customers, c.manager_follow)
        self._warmup_steps = scenario.warmup_steps()
        self.firm_after_warmup = self.customers.current.copy()  # the cohorts that loyalty is measured on

        # policies: campaigns, the customers' other categories, loyalty programmes
        self.campaigns = Campaigns(self.firms, self.customers, unit, self.segment_names, self.contractual,
                                   self.params.lapse_steps, streams)
        self.categories: list[Category] = []
        base = len(self.firms)
        for k, spec in enumerate(market.categories):
            self.categories.append(Category(spec, base, n, unit, self.customers.price_sensitivity,
                                            self.params.wallet_decay, streams.child("categories", k)))
            base += len(spec.outlets)
        self.category_log: list[dict] = []
        self.segment_log = SegmentLog(self.firm_names, self.segment_names)
        has_programmes = any(f.spec.programmes for f in self.firms)
        self.programmes = (Book(self.firms, self.categories, n, unit, c, streams["programmes"]) if has_programmes
                           else None)
        self.accounts = Accounts(Membership(self.contractual, self.params.lapse_steps, len(self.firms)),
                                 self.customers)

        # what a step shares between its phases
        self.perks = None
        self.shared: Shared | None = None
        self.variates: Variates | None = None
        self.category_variates: list = []
        self.active_before = self.customers.active.copy()  # customers in the market at the step's start
        self.datacollector = DataCollector(
            model_reporters=self._market_reporters(),
            agenttype_reporters={Firm: {k: (lambda f, k=k: f.metrics[k]) for k in FIRM_METRICS}},
        )

    def _market_reporters(self) -> dict:
        """The ``market`` table's columns."""
        reporters = {
            "in_market": lambda m: int(m.customers.active.sum()),
            "with_a_firm": lambda m: int((m.customers.current >= 0).sum()),
            "prospects": lambda m: int((m.classify_codes("ladder") == 0).sum()),
            "lapsed": lambda m: int((m.classify_codes("ladder") == 5).sum()),
            "mean_satisfaction": lambda m: m.mean_satisfaction(),
            "switching_cost": lambda m: m.events.switching_cost,
            "price_factor": lambda m: m.events.price_factor,
        }
        for a, name in enumerate(self.attribute_names):
            reporters[f"kano_{name}"] = lambda m, a=a: KANO_NAMES[int(m.kano[a])]
            reporters[f"expectation_{name}"] = lambda m, a=a: float(m.customers.expectation[:, a].mean())
        return reporters

    # --- the step: the ODD schedule (section 1.3) -----------------------------------------------------------
    def step(self) -> None:
        """One step, in the order of the ODD's schedule (docs/odd.md, section 1.3; the module docstring lists it)."""
        t = self.steps
        st = self.customers
        self.events.apply(self._event_targets, t)
        drift_kano(self.kano, self.config.market.attributes, st)
        self.offers.record(self.firms, t)
        self.agents_by_type[Firm].do("step")
        self.campaigns.run_rounds(self.firms, st, t)
        self.perks, extra = self._programme_perks(t)
        self.shared = self._shared(t)
        if self.lifetimes is not None:  # each customer's chance of leaving the market (read by the life events)
            trial = (self.arrivals.bought_on_arrival(t - 1) if self.arrivals is not None else None)
            self.shared.p_leave = self.lifetimes.leave_probability(st.step_purchases, trial)
        self.variates = self.streams.step_variates(st.purchase_rate, len(self.firms))
        if extra is not None:  # points pressure: extra purchase occasions
            self.variates.occasions = self.variates.occasions + extra
        if self.arrivals is not None:  # who arrives now enters the market, and buys on its arrival step
            self.shared.p_enter = self.arrivals.enter_probability(t, self.params.p_enter)
            self.variates.occasions = self.arrivals.first_occasions(self.variates.occasions, t)
        if self.outside_option is not None:  # the value of buying elsewhere, to every customer
            self.shared.outside = self.outside_option.draw(len(st))
        self.category_variates = [cat.draw() for cat in self.categories]
        self._repertoires()
        self.active_before = st.active.copy()
        if self.one_at_a_time:
            self.agents_by_type[Customer].do("step")  # each calls step_rows on its own row
        else:
            self.step_rows(slice(None))
        self.campaigns.observe(st, t)
        self.event_logs.record(st, t, self.shared.price)
        if self.programmes is not None:
            self.programmes.settle(st, t, self.seller_prices(), self.params.lapse_steps, self.contractual)
            self.event_logs.record_programmes(self.programmes.ledgers, t)
        self.category_log += category_markets.settle(
            self.categories, self.programmes.firm_totals if self.programmes else None, t)
        self.surveys.take(st, t, self.campaigns.crm)
        self.accounts.settle(st, self.firms, t, self.kano, self.params.loss_aversion, self.classify_codes,
                             self.surveys.answers_at(t), self.programmes.firm_totals if self.programmes else None)
        self.campaigns.record_regains(st, t)
        self.panel.record(st, t, self.classify_codes)
        self.segment_log.record(st, t)
        if t == self._warmup_steps:
            self.firm_after_warmup = st.current.copy()
        elif self.arrivals is not None and t > self._warmup_steps:  # a customer arriving after the warm-up: the
            arrived = self.arrivals.arriving(t)  # firm it chose on arrival
            self.firm_after_warmup[arrived] = st.current[arrived]
        self.datacollector.collect(self)

    def run(self, steps: int | None = None) -> LoyaltyMarket:
        """Run the scenario's horizon (or ``steps`` more steps) and return the model."""
        for _ in range(self.config.steps() if steps is None else steps):
            self.step()
        return self

    def step_rows(self, rows: slice) -> None:
        """The customers in ``rows`` take their step: in the market (the customer rules), then in each category,
        with the step's variates and shared state. The vectorized path steps every row at once, the one-at-a-time
        path each customer's row in turn (:meth:`Customer.step <loyaltysim.model.agents.Customer.step>`)."""
        step_customers(self.customers, rows, self.variates, self.shared, self.params)
        for cat, v in zip(self.categories, self.category_variates, strict=True):
            step_category(cat, rows, v, cat.perks_view(self.perks), self.active_before)

    # --- what the step's phases share ----------------------------------------------------------------------------
    def _repertoires(self) -> None:
        """Tastes drift and awareness moves with the step's news (marketing met, word of mouth, last purchases),
        before the customers step; the customer rules read the tastes and the considered firms from the shared state."""
        if self.tastes is not None:
            self.tastes.before_step()
            self.shared.taste = self.tastes.utility
        if self.consideration is not None:
            present = life_events(self.customers.active, self.variates.u_life, self.params, self.shared.p_leave,
                                  self.shared.p_enter)[2]
            self.consideration.before_step(self.customers, self.shared, self.variates, present)
            self.shared.considered = self.consideration.considered

    def _programme_perks(self, t: int):
        """The programmes' perks (customer x seller) and extra purchase occasions of the step (None, None without
        programmes)."""
        if self.programmes is None:
            return None, None
        return self.programmes.prepare(self.customers, t, self.seller_prices(), self.contractual,
                                       np.array([f.available for f in self.firms]))

    def seller_prices(self) -> np.ndarray:
        """Every seller's price: the market's firms, then each category's outlets."""
        return np.concatenate([[f.price for f in self.firms], *(cat.price for cat in self.categories)])

    def _shared(self, t: int) -> Shared:
        """Firms' offers now, market conditions, and word of mouth from the previous step's customers."""
        window = self.params.attribution_steps
        talk = None if self.programmes is None else self.programmes.talk
        wom_pos, wom_neg = self.word_of_mouth.signals(self.customers, len(self.firms), talk)
        rel_share, rel_said = ((wom_pos + wom_neg, reliability_beliefs.told(self.word_of_mouth, self.customers,
                                                                             len(self.firms)))
                               if self.params.reliability_choice else (None, None))
        levels = np.array([f.levels for f in self.firms])
        available = np.array([f.available for f in self.firms])
        perks = self.perks
        if perks is not None and self.categories:
            perks = category_markets.perks_columns(perks, slice(0, len(self.firms)))
        return Shared(
            t=t,
            available=available,
            price=np.array([f.price for f in self.firms]),
            unit_cost=np.array([f.unit_cost for f in self.firms]),
            price_ref=self.price_ref,
            price_factor=self.events.price_factor,
            levels=levels,
            best_levels=levels[available].max(axis=0),
            kano=self.kano.copy(),
            reliability=np.array([f.reliability for f in self.firms]),
            recovery=np.array([f.recovery for f in self.firms]),
            reach=noticed_reach(np.array([f.reach for f in self.firms]), available, self.params.attention_capacity),
            managers=np.array([f.managers for f in self.firms], dtype=np.int32),
            price_rose=np.array([t - f.price_rise_step <= window for f in self.firms]),
            breached=np.array([t - f.breach_step <= window for f in self.firms]),
            shocked=self.events.shocked(t, window),
            switching_cost=self.events.switching_cost,
            wom_pos=wom_pos,
            wom_neg=wom_neg,
            rel_share=rel_share,
            rel_said=rel_said,
            market_levels=(reference_levels(levels, available, self.customers.current, self.customers.active,
                                            self.params.best_offer_weight)
                           if self.params.market_expectations else None),
            perks=perks,
        )

    # --- measurement ----------------------------------------------------------------------------------
    def classify_codes(self, kind: str) -> np.ndarray:
        """Each customer's class now: ``ladder``, ``dick_basu`` or ``jones_sasser`` (codes, computed once a step)."""
        return self.classifier.codes(kind, self.customers, self.steps)

    def classify(self, kind: str) -> np.ndarray:
        """Each customer's class now, by name."""
        return np.asarray(classifications.NAMES[kind], dtype=object)[self.classify_codes(kind)]

    def mean_satisfaction(self) -> float:
        """Mean satisfaction of the customers who have a firm, with that firm (the classifications' own, in customer
        order: the same numbers and the same sum as gathering them)."""
        st = self.customers
        has = st.current >= 0
        sat = self.classifier.current_satisfaction(st, self.steps)
        return float(sat[has].mean()) if has.any() else float("nan")
