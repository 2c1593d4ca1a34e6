"""Named random streams spawned from one root seed.

Every random number in a run comes from one of these generators. Each stream is the child
``SeedSequence(entropy, spawn_key=root_key + (index,))`` of the run's root, with a fixed index per name, so
two runs that differ only in one firm's policy share the population and every draw the policy does not
touch (common random numbers). New streams are only ever appended to :data:`STREAM_NAMES`, never inserted,
so existing streams keep their numbers.

The step's random numbers (ODD 3.3.6) are drawn by :meth:`Streams.step_variates`, full-size whatever the state, so
that runs which differ in what happens still draw the same numbers for the same customers. The choice's Gumbel shocks
are drawn as the uniforms ``Generator.gumbel`` transforms (:func:`gumbel_uniforms`), and only the few customers who
choose in a step have theirs worked out (``Variates.shocks``): the same numbers, from the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loyaltysim.model.state import Variates

STREAM_NAMES: tuple[str, ...] = (
    "mesa",  # handed to mesa.Model(rng=...): Mesa's own shuffles
    "population",  # customer traits and starting state
    "network",  # the social graph
    "occasions",  # purchase occasions
    "choice",  # search decisions and taste shocks
    "service",  # service failures
    "marketing",  # exposure to firms' marketing
    "word_of_mouth",  # who talks in a step
    "life_events",  # natural churn and re-entry
    "surveys",  # who is asked, and answer noise
    "policies",  # firm policies: one child per firm
    "programmes",  # loyalty programmes: joining effort, birthdays; each step's extra occasions, awareness, redemption
    "categories",  # the customers' other categories: one child per category (traits, occasions, choices)
    "tastes",  # repertoire tastes: each customer's brand propensities, and their renewals
    "consideration",  # consideration sets: which firms each customer knows at the start
    "lifetimes",  # heterogeneous lifetimes: each customer's exit propensity
    "arrivals",  # arrivals over time: each customer's arrival step
    "outside_option",  # the outside option: each step's Gumbel shock of buying elsewhere
)


@dataclass
class Streams:
    """The named generators of one run."""

    entropy: int
    spawn_key: tuple[int, ...] = ()
    _cache: dict[str, np.random.Generator] = field(default_factory=dict, repr=False)

    @classmethod
    def from_seed(cls, seed: int | np.random.SeedSequence) -> Streams:
        if isinstance(seed, np.random.SeedSequence):
            if not isinstance(seed.entropy, int):
                raise ValueError("a SeedSequence with a pooled (non-integer) entropy cannot be recorded")
            return cls(int(seed.entropy), tuple(int(k) for k in seed.spawn_key))
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return cls(int(seed), ())

    def seed_sequence(self, name: str, *sub: int) -> np.random.SeedSequence:
        try:
            index = STREAM_NAMES.index(name)
        except ValueError:
            raise KeyError(f"unknown random stream '{name}'; known: {', '.join(STREAM_NAMES)}") from None
        return np.random.SeedSequence(self.entropy, spawn_key=(*self.spawn_key, index, *sub))

    def __getitem__(self, name: str) -> np.random.Generator:
        gen = self._cache.get(name)
        if gen is None:
            gen = np.random.Generator(np.random.PCG64(self.seed_sequence(name)))
            self._cache[name] = gen
        return gen

    def policy(self, firm_index: int) -> np.random.Generator:
        """The policy stream of one firm: a firm's own decisions never shift another firm's draws."""
        return self.child("policies", firm_index)

    def child(self, name: str, index: int) -> np.random.Generator:
        """The ``index``-th child of a stream (one per firm, one per category), independent of its siblings."""
        key = f"{name}/{index}"
        gen = self._cache.get(key)
        if gen is None:
            gen = np.random.Generator(np.random.PCG64(self.seed_sequence(name, index)))
            self._cache[key] = gen
        return gen

    def step_variates(self, purchase_rate: np.ndarray, n_firms: int) -> Variates:
        """The customers' random numbers of one step, from their streams, in a fixed order."""
        n = purchase_rate.shape[0]
        choice = self["choice"]
        service = self["service"]
        return Variates(
            occasions=self["occasions"].poisson(purchase_rate),
            u_search=choice.random(n),
            u_attention=choice.random(n),
            u_variety=choice.random(n),
            **gumbel_uniforms(choice, (n, n_firms)),
            u_fail=service.random(n),
            u_complain=service.random(n),
            u_recover=service.random(n),
            u_market=self["marketing"].random((n, n_firms)),
            u_life=self["life_events"].random(n),
        )


def gumbel_uniforms(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray | None]:
    """``rng.gumbel(size=shape)``'s draws, as ``{"u_gumbel": uniforms, "gumbel": None}`` (the shocks worked out where
    used, by :func:`~loyaltysim.model.state.gumbel_of`), leaving the stream where ``rng.gumbel`` leaves it.

    ``Generator.gumbel`` draws one uniform ``u`` per shock (``next_double``, as ``Generator.random`` does) and returns
    ``0 - 1 * log(-log(1 - u))``, drawing again for ``u == 0``. Should a uniform be exactly 0 (a chance of 2**-53
    each), the stream is set back and the shocks are drawn by ``rng.gumbel`` itself: ``{"gumbel": shocks,
    "u_gumbel": None}``."""
    before = rng.bit_generator.state
    u = rng.random(shape)
    if u.min() > 0.0:
        return {"gumbel": None, "u_gumbel": u}
    rng.bit_generator.state = before
    return {"gumbel": rng.gumbel(size=shape), "u_gumbel": None}
