"""A learned ranker over the agreement of a description's claims with a candidate's attributes.

Pair features (``pair_features``): per rule, whether the candidate agrees with what the query states (1/0,
NaN where the rule does not fire or the molecule is unknown), per count rule the difference has - stated, and
the numbers of agreeing and disagreeing rules. The ranker (``fit_ranker``: LightGBM's lambdarank, or a logistic
model) is trained on the training pairs: each query's true molecule against negatives drawn from the training
molecules (those nearest in attributes, and random ones). The ensemble members' scores are not an input: they
are overfit on the training pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from molret.ranking.claims.statements import RULES
from molret.ranking.claims.structure import ATTRIBUTES
from molret.utils.errors import MolretError

RANKERS = ("lambdarank", "logistic")
# rules whose stated value is a count (their difference has - stated is a feature too)
COUNT_RULES = tuple(i for i, r in enumerate(RULES) if r.kind == "eq" or r.name in (
    "chain_carbons", "terpenoid_carbons", "cc_double", "hydroxy", "amino", "carboxy", "phosphate", "sulfo",
    "methoxy", "methyl", "oxo", "nitro", "acetyl", "chloro", "bromo", "fluoro", "iodo", "hydrate"))
RULE_ATTRIBUTE = np.array([ATTRIBUTES.index(r.attribute) for r in RULES], np.int64)
RULE_KIND = np.array([r.kind for r in RULES])


@dataclass
class RankerOptions:
    """How the claims ranker is trained."""
    ranker: str = "lambdarank"
    near_negatives: int = 15      # per training query: the molecules nearest its own in attributes
    random_negatives: int = 15    # and random training molecules
    trees: int = 200
    learning_rate: float = 0.05
    leaves: int = 15
    threads: int = 1              # LightGBM's: 2 threads ran 4x slower than 1 on the 2 shared cores (oversubscribed)
    seed: int = 0

    def check(self) -> None:
        if self.ranker not in RANKERS:
            raise MolretError(f"claims ranker must be one of {', '.join(RANKERS)}, got {self.ranker}")
        if self.near_negatives < 0 or self.random_negatives < 0 or self.near_negatives + self.random_negatives < 1:
            raise MolretError("the claims ranker needs at least one negative per training query")
        if self.trees < 1 or self.leaves < 2 or not 0 < self.learning_rate <= 1 or self.threads < 1:
            raise MolretError("claims ranker: trees >= 1, leaves >= 2, 0 < learning rate <= 1, threads >= 1")


def agreement(stated: np.ndarray, has: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """1 where ``has`` agrees with ``stated`` (per column's kind: ge, eq, sign), 0 where not, NaN where either is
    NaN. Arrays [P, R], kinds [R]."""
    with np.errstate(invalid="ignore"):
        ge = has >= stated
        eq = has == stated
        sign = np.sign(has) == stated
    out = np.where(kinds == "ge", ge, np.where(kinds == "eq", eq, sign)).astype(np.float32)
    out[np.isnan(stated) | np.isnan(has)] = np.nan
    return out


def pair_features(stated: np.ndarray, attrs: np.ndarray, queries: np.ndarray, molecules: np.ndarray) -> np.ndarray:
    """[P, F] features of the pairs (queries[p], molecules[p]): ``stated`` [Q, R] (statements.stated_matrix),
    ``attrs`` [M, A] (structure.attribute_matrix)."""
    s = stated[queries]
    h = attrs[molecules][:, RULE_ATTRIBUTE]
    agree = agreement(s, h, RULE_KIND)
    diff = (h - s)[:, COUNT_RULES]
    n_agree = np.nansum(agree, axis=1, keepdims=True)
    n_disagree = np.sum(agree == 0, axis=1, keepdims=True).astype(np.float32)
    return np.concatenate([agree, diff, n_agree, n_disagree, n_agree - n_disagree], axis=1).astype(np.float32)


def feature_names() -> list:
    """The names of pair_features' columns."""
    return ([f"agree:{r.name}" for r in RULES] + [f"diff:{RULES[i].name}" for i in COUNT_RULES]
            + ["rules agreeing", "rules disagreeing", "agreeing - disagreeing"])


def training_pairs(stated: np.ndarray, attrs: np.ndarray, opts: RankerOptions):
    """(query index, molecule index, label, group sizes) of the training pairs: query i's molecule is i; its
    negatives are the molecules nearest it in (standardised) attributes and random ones; queries with an
    unknown molecule or no claim are left out."""
    rng = np.random.default_rng(opts.seed)
    n = len(stated)
    known = ~np.isnan(attrs).any(axis=1)
    x = np.nan_to_num((attrs - np.nanmean(attrs, axis=0)) / (np.nanstd(attrs, axis=0) + 1e-6))
    pool = np.flatnonzero(known)
    queries, molecules, labels, groups = [], [], [], []
    for i in np.flatnonzero(known & ~np.isnan(stated).all(axis=1)):
        negatives = []
        if opts.near_negatives:
            d = np.sum((x[pool] - x[i]) ** 2, axis=1)
            near = pool[np.argsort(d, kind="stable")[:opts.near_negatives + 1]]
            negatives += [j for j in near if j != i][:opts.near_negatives]
        if opts.random_negatives:
            others = rng.choice(pool, size=min(len(pool), opts.random_negatives + 1), replace=False)
            negatives += [j for j in others if j != i and j not in negatives][:opts.random_negatives]
        chosen = [i] + negatives
        queries += [i] * len(chosen)
        molecules += chosen
        labels += [1] + [0] * len(negatives)
        groups.append(len(chosen))
    return (np.array(queries, np.int64), np.array(molecules, np.int64), np.array(labels, np.int64),
            np.array(groups, np.int64))


STATE_VERSION = 1   # of ClaimsRanker.state (a model file's claims scorer)


class ClaimsRanker:
    """A fitted ranker: ``score(stated, attrs, queries, molecules)`` -> a score per pair (higher: better).

    ``model``: a LightGBM Booster (lambdarank) or (coefficients [F], intercept) of the logistic model; both
    written as plain data by ``state`` and read back by ``from_state`` (the same scores)."""

    def __init__(self, model, ranker: str, threads: int = 1):
        self.model, self.ranker, self.threads = model, ranker, threads

    def score(self, stated: np.ndarray, attrs: np.ndarray, queries: np.ndarray, molecules: np.ndarray) -> np.ndarray:
        x = pair_features(stated, attrs, queries, molecules)
        if self.ranker == "logistic":
            coef, intercept = self.model
            return (np.nan_to_num(x, nan=-1.0).astype(np.float64) @ coef + intercept).astype(np.float64)
        return np.asarray(self.model.predict(x, num_threads=self.threads), np.float64)

    def state(self) -> dict:
        """The fitted ranker as plain data (strings, numbers, lists), with the feature names it was fitted on."""
        if self.ranker == "logistic":
            coef, intercept = self.model
            model = {"coef": [float(c) for c in coef], "intercept": float(intercept)}
        else:
            model = self.model.model_to_string()
        return {"version": STATE_VERSION, "ranker": self.ranker, "features": feature_names(), "model": model}

    @classmethod
    def from_state(cls, state, where: str = "the claims scorer", threads: int = 1) -> "ClaimsRanker":
        """The ranker of ``state`` (``ClaimsRanker.state``); a state fitted on other features (another version
        of the rules) or not a ranker's is one MolretError."""
        redo = "re-run the ensemble (ensemble_method.py --claims --save-model) or turn claims off (--claims none)"
        if not isinstance(state, dict) or state.get("ranker") not in RANKERS or state.get("version") != STATE_VERSION:
            raise MolretError(f"{where}: not a claims ranker this molret reads: {redo}")
        if state.get("features") != feature_names():
            raise MolretError(f"{where} was fitted on other claims rules than this molret's "
                              f"({len(state.get('features') or [])} features, {len(feature_names())} now): {redo}")
        model = state.get("model")
        if state["ranker"] == "logistic":
            coef = model.get("coef") if isinstance(model, dict) else None
            intercept = model.get("intercept") if isinstance(model, dict) else None
            if not isinstance(coef, list) or len(coef) != len(feature_names()) or \
                    not isinstance(intercept, (int, float)):
                raise MolretError(f"{where}: its logistic model is not {len(feature_names())} coefficients and an "
                                  f"intercept: {redo}")
            return cls((np.asarray(coef, np.float64), float(intercept)), "logistic", threads)
        import lightgbm
        if not isinstance(model, str) or not model.startswith("tree"):
            raise MolretError(f"{where}: its LightGBM model is not a model string: {redo}")
        try:
            booster = lightgbm.Booster(model_str=model)
        except lightgbm.basic.LightGBMError as e:
            raise MolretError(f"{where}: its LightGBM model cannot be read ({e}): {redo}") from None
        if booster.num_feature() != len(feature_names()):
            raise MolretError(f"{where}: its LightGBM model has {booster.num_feature()} features, not "
                              f"{len(feature_names())}: {redo}")
        return cls(booster, "lambdarank", threads)


def fit_ranker(stated: np.ndarray, attrs: np.ndarray, opts: RankerOptions) -> ClaimsRanker:
    """The ranker fitted on training queries ``stated`` [N, R] whose molecule i has attributes ``attrs[i]``."""
    opts.check()
    queries, molecules, labels, groups = training_pairs(stated, attrs, opts)
    if not len(groups):
        raise MolretError("the claims ranker has no training query with a claim and a known molecule")
    x = pair_features(stated, attrs, queries, molecules)
    if opts.ranker == "logistic":
        from sklearn.linear_model import LogisticRegression
        model = LogisticRegression(C=1.0, max_iter=2000).fit(np.nan_to_num(x, nan=-1.0), labels)
        return ClaimsRanker((model.coef_[0].astype(np.float64), float(model.intercept_[0])), "logistic",
                            opts.threads)
    import lightgbm
    model = lightgbm.LGBMRanker(objective="lambdarank", n_estimators=opts.trees, learning_rate=opts.learning_rate,
                                num_leaves=opts.leaves, min_child_samples=20, n_jobs=opts.threads,
                                random_state=opts.seed, deterministic=True, force_row_wise=True, verbose=-1)
    model.fit(x, labels, group=groups)
    return ClaimsRanker(model.booster_, "lambdarank", opts.threads)
