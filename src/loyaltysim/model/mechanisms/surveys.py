"""Surveys (ODD 3.3.16): on survey steps a random sample of the customers with a firm answer the 1-5 satisfaction
item and the 0-10 recommendation item about it, each with its own answer noise.

The answer maps true satisfaction plus noise through the survey's cutpoints (:func:`~loyaltysim.model.rules.
survey_score`, :func:`~loyaltysim.model.rules.recommend_score`). A customer's last answer is kept (it is what a
firm's records know, and the defections table's ``last_score``), and so is its last answer about each firm (the
defections table's ``score_about_left``: a defector's last answer may be about another firm, one it left before);
every answer goes to the ``surveys`` table, and
each firm's answers of the step to its row of the ``firms`` table (counts by score, NPS).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loyaltysim.model import rules
from loyaltysim.model.logs import concat
from loyaltysim.model.mechanisms.crm import CRM
from loyaltysim.model.state import CustomerState

COLUMNS = ["step", "customer", "firm", "score", "recommend", "true_satisfaction"]


class Surveys:
    """The survey instrument (``market.survey``) and every answer given."""

    def __init__(self, spec, unit: str, rng: np.random.Generator):
        self.spec = spec
        self.every = spec.every.steps(unit)
        self.cutpoints = np.asarray(spec.cutpoints, dtype=np.float64)
        self.rng = rng
        self.responses: list[dict[str, np.ndarray]] = []

    def take(self, st: CustomerState, t: int, records: CRM | None) -> None:
        """Ask a random sample of customers (on survey steps) both items, with answer noise."""
        if t % self.every:
            return
        survey = self.spec
        n = len(st)
        u = self.rng.random(n)
        z = self.rng.standard_normal((n, 2))  # drawn for everyone; scaled into answer noise for those asked
        asked = np.flatnonzero(st.active & (st.current >= 0) & (u < survey.sample))
        firm = st.current[asked]
        true = st.satisfaction[asked, firm]
        score = rules.survey_score(true + survey.noise * z[asked, 0], self.cutpoints)
        nps = rules.recommend_score(true + survey.noise * z[asked, 1], survey.nps_scale)
        st.last_score[asked] = score
        st.scores[asked, firm] = score
        if records is not None:
            records.surveyed(asked, firm, score, t)
        self.responses.append({"step": np.full(asked.size, t, np.int32), "customer": asked.astype(np.int32),
                               "firm": firm, "score": score, "recommend": nps, "true_satisfaction": true})

    def answers_at(self, t: int) -> dict[str, np.ndarray] | None:
        """The answers given at step ``t`` (None if no survey was taken then)."""
        latest = self.responses[-1] if self.responses else None
        return latest if latest is not None and latest["step"][:1].tolist() == [t] else None

    @staticmethod
    def firm_metrics(responses: dict[str, np.ndarray] | None, j: int) -> dict[str, float]:
        """Firm ``j``'s answers in one survey: how many were asked, the count of each score, and the NPS."""
        if responses is None:
            return {"surveyed": 0, **{f"score_{s}": 0 for s in range(1, 6)}, "nps": float("nan")}
        mine = responses["firm"] == j
        scores = responses["score"][mine]
        rec = responses["recommend"][mine]
        out: dict[str, float] = {"surveyed": int(mine.sum())}
        out.update({f"score_{s}": int((scores == s).sum()) for s in range(1, 6)})
        out["nps"] = 100.0 * ((rec >= 9).mean() - (rec <= 6).mean()) if rec.size else float("nan")
        return out

    def table(self, firm_names: np.ndarray) -> pd.DataFrame:
        """Every answer: step, customer, the firm it was about, the two scores and the true satisfaction."""
        srv = concat(self.responses, COLUMNS)
        return pd.DataFrame({
            "step": srv["step"].astype(np.int32),
            "customer": srv["customer"].astype(np.int32),
            "firm": firm_names[srv["firm"].astype(int)],
            "score": srv["score"].astype(np.int8),
            "recommend": srv["recommend"].astype(np.int8),
            "true_satisfaction": srv["true_satisfaction"].astype(np.float64),
        })
