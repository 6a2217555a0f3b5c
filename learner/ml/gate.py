"""The promotion gate's decision on paired audit predictions, and its repeated-looks error by simulation (arrays only).

Three comparisons, each on the same audit items for both models:

- **First model** against the majority-class baseline: promoted when a one-sided McNemar test
  (mid-p) finds it better at the look's α.
- **not_worse** (a routine retrain, or any retrain of a model known to be stale): promoted unless
  the audit labels show it worse: a one-sided exact McNemar test finds it worse at α with an
  accuracy more than ``margin`` below the champion's on the same items (a significant drop
  within the margin is tolerated), or a class's recall drop is confidently beyond
  ``max_recall_drop``, judged only on classes with at least ``RECALL_VETO_MIN_SUPPORT`` audit
  items. A point estimate alone never keeps a retrain out: the champion was chosen on the same
  audit items, so on a small audit set it looks better than it is (the winner's curse), and a
  bar on the point estimate would keep every later retrain out.
- **better** (the rule ``better``, and every change of kind): promoted when the one-sided McNemar
  test (mid-p) finds it better at the look's α with at least ``min_gain``, and no class vetoes.

Repeated looks: the gate looks at overlapping audit sets after every retrain, so a test that
promotes at α on each look would promote an equal-quality candidate far more often than α over
a run of looks. Every look that can promote on a test of "better" (the first model's and rule
``better``'s) spends α_k = α / (k (k + 1)) at its k-th look in the same comparison (against the
baseline before any model is live; against the same champion after). The α_k sum to α, so by
the union bound no run of looks, however long and however correlated, promotes an
equal-quality candidate with probability above α. ``not_worse`` promotes equal candidates by
design: its error is keeping a good one out, which the next retrain repairs, so it tests at α.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from learner.ml import evaluation
from stats.paired import mcnemar_mid_p

# A class's recall is judged only with this many audit items of the class: below it, one miss
# moves the recall by more than 10 points and no bound says anything useful.
RECALL_VETO_MIN_SUPPORT = 10

LIVE, NOT_PROMOTED, REJECTED = "live", "not_promoted", "rejected"


def _mid_p(test: evaluation.McNemar) -> float:
    """The one-sided McNemar mid-p value that ``test``'s candidate is better."""
    return mcnemar_mid_p(candidate_only_right=test.only_candidate_right, champion_only_right=test.only_champion_right)


def look_alpha(alpha: float, look: int) -> float:
    """The α the k-th look of one comparison spends: α / (k (k + 1)), which sums to α over every look.

    Look 0 stands for a single, unrepeated test: the whole α.
    """
    if look <= 0:
        return alpha
    return alpha / (look * (look + 1))


@dataclass(frozen=True)
class GateSettings:
    """A project's gate settings, as the decision reads them."""

    rule: str = "not_worse"
    alpha: float = 0.05
    margin: float = 0.02
    min_gain: float = 0.0
    min_audit: int = 30
    min_audit_first: int = 10
    max_recall_drop: float = 0.05


@dataclass
class Decision:
    """What the gate decided, the test it used, its figures, and the sentence a manager reads."""

    verdict: str  # LIVE, NOT_PROMOTED or REJECTED
    comparison: str  # "first_model", "not_worse" or "better"
    reason: str
    figures: dict = field(default_factory=dict)

    @property
    def promote(self) -> bool:
        return self.verdict == LIVE

    def as_dict(self) -> dict:
        return {"promote": self.promote, "verdict": self.verdict, "comparison": self.comparison,
                "worse": self.verdict == REJECTED, "reason": self.reason, **self.figures}


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else 0.0


def decide_first(
    y_audit: np.ndarray, candidate_pred: np.ndarray, *, majority: int, settings: GateSettings, look: int
) -> Decision:
    """The first model goes live when it beats always answering the labels' most frequent class."""
    n = len(y_audit)
    base = {"audit_n": n, "min_audit": settings.min_audit_first, "alpha": settings.alpha, "look": look}
    if n < settings.min_audit_first:
        return Decision(NOT_PROMOTED, "first_model",
                        f"Not promoted: not enough evidence yet ({n} audit labels, {settings.min_audit_first} needed).",
                        base)
    alpha_look = look_alpha(settings.alpha, look)
    baseline = np.full(n, majority)
    test = evaluation.mcnemar_on_predictions(y_audit, baseline, candidate_pred)
    p = _mid_p(test)
    figures = {**base, "alpha_look": alpha_look, "test": test.as_dict(), "p_mid": p, "baseline_label": majority,
               "accuracy": _accuracy(y_audit, candidate_pred), "baseline_accuracy": _accuracy(y_audit, baseline)}
    said = (f"audit accuracy {figures['accuracy']:.3f} against {figures['baseline_accuracy']:.3f} for always "
            f"answering the most frequent label, on {n} audit items; McNemar mid-p = {p:.4f}, "
            f"α = {alpha_look:.4g} at look {look}")
    if p < alpha_look and test.gain >= settings.min_gain:
        return Decision(LIVE, "first_model", f"Promoted: beats the majority-class baseline ({said}).", figures)
    worse = evaluation.mcnemar_on_predictions(y_audit, candidate_pred, baseline).p_value < settings.alpha
    if worse:
        return Decision(REJECTED, "first_model", f"Rejected: worse than the majority-class baseline ({said}).",
                        figures)
    return Decision(NOT_PROMOTED, "first_model",
                    f"Not promoted: not enough evidence yet that it beats the majority-class baseline ({said}).",
                    figures)


def _vetoes(
    y_audit: np.ndarray, champion_pred: np.ndarray, candidate_pred: np.ndarray, classes: list[int],
    settings: GateSettings,
) -> tuple[dict, dict]:
    """Recall drops of every class with audit items, and those that veto (enough support, bound beyond the limit)."""
    drops = evaluation.recall_drops(y_audit, champion_pred, candidate_pred, classes, confidence=1 - settings.alpha)
    vetoes = {
        label: drop for label, drop in drops.items()
        if drop.support >= RECALL_VETO_MIN_SUPPORT and drop.lower_bound > settings.max_recall_drop
    }
    return drops, vetoes


def decide_against_champion(
    y_audit: np.ndarray,
    champion_pred: np.ndarray,
    candidate_pred: np.ndarray,
    *,
    champion: int,
    classes: list[int],
    settings: GateSettings,
    comparison: str,
    look: int,
    stale: str = "",
) -> Decision:
    """Decide a candidate against the live model ``champion`` by ``comparison`` ("not_worse" or "better").

    ``stale`` names why the live model is known to be stale (drift, degradation); a not-worse
    comparison then needs no minimum of audit labels: evidence only holds back a healthy model.
    """
    n = len(y_audit)
    min_audit = settings.min_audit_first if comparison == "not_worse" else settings.min_audit
    if stale and comparison == "not_worse":
        min_audit = 0
    base = {"audit_n": n, "min_audit": min_audit, "alpha": settings.alpha, "champion": champion, "look": look,
            "min_audit_class": RECALL_VETO_MIN_SUPPORT, "max_recall_drop": settings.max_recall_drop}
    if stale:
        base["stale"] = stale
    if n < min_audit or (n == 0 and comparison == "better"):
        return Decision(NOT_PROMOTED, comparison,
                        f"Not promoted: not enough evidence yet ({n} audit labels, {min_audit} needed).", base)
    champion_accuracy, candidate_accuracy = _accuracy(y_audit, champion_pred), _accuracy(y_audit, candidate_pred)
    better = evaluation.mcnemar_on_predictions(y_audit, champion_pred, candidate_pred)
    # The same test with the roles swapped: its p-value is that the candidate is worse.
    worse = evaluation.mcnemar_on_predictions(y_audit, candidate_pred, champion_pred)
    drops, vetoes = _vetoes(y_audit, champion_pred, candidate_pred, classes, settings)
    figures = {**base, "test": better.as_dict(), "p_worse": worse.p_value, "accuracy": candidate_accuracy,
               "champion_accuracy": champion_accuracy, "gain": better.gain, "margin": settings.margin,
               "recall_drops": {label: drop.as_dict() for label, drop in drops.items()},
               "classes_judged": sum(drop.support >= RECALL_VETO_MIN_SUPPORT for drop in drops.values())}
    on = f"on {n} audit items" if n else "with no audit items yet"
    accuracies = f"accuracy {candidate_accuracy:.3f} against {champion_accuracy:.3f} {on}"
    if vetoes:
        label, drop = max(vetoes.items(), key=lambda kv: kv[1].lower_bound)
        return Decision(REJECTED, comparison,
                        f"Rejected: worse than v{champion} on class {label} (recall down {drop.drop:.3f} on "
                        f"{drop.support} audit items, lower {1 - settings.alpha:.0%} bound {drop.lower_bound:.3f} > "
                        f"{settings.max_recall_drop}).", {**figures, "veto_label": label})
    shown_worse = worse.p_value < settings.alpha
    if comparison == "not_worse":
        if shown_worse and better.gain < -settings.margin:
            return Decision(REJECTED, comparison,
                            f"Rejected: worse than v{champion} ({accuracies}, {better.gain:+.3f} beyond the margin of "
                            f"{settings.margin}; exact McNemar p = {worse.p_value:.4f} for 'worse', "
                            f"α = {settings.alpha}).", figures)
        why = f"the live model is stale ({stale}); " if stale else ""
        return Decision(LIVE, comparison,
                        f"Promoted: not worse than v{champion} ({why}{accuracies}; exact McNemar p = "
                        f"{worse.p_value:.4f} for 'worse').", figures)
    if shown_worse:
        return Decision(REJECTED, comparison,
                        f"Rejected: worse than v{champion} ({accuracies}; exact McNemar p = {worse.p_value:.4f} "
                        f"for 'worse', α = {settings.alpha}).", figures)
    alpha_look = look_alpha(settings.alpha, look)
    figures["alpha_look"] = alpha_look
    p = _mid_p(better)
    figures["p_mid"] = p
    said = f"{accuracies}; McNemar mid-p = {p:.4f}, α = {alpha_look:.4g} at look {look}"
    if p < alpha_look and better.gain >= settings.min_gain:
        return Decision(LIVE, comparison, f"Promoted: better than v{champion} ({said}).", figures)
    return Decision(NOT_PROMOTED, comparison,
                    f"Not promoted: not enough evidence yet that it is better than v{champion} ({said}).", figures)


def simulate_looks(
    *,
    comparison: str,
    alpha: float = 0.05,
    margin: float = 0.02,
    looks: int = 20,
    audit_start: int = 10,
    audit_per_look: int = 3,
    accuracy: float = 0.85,
    candidate_accuracy: float | None = None,
    candidate_change: float = 0.15,
    runs: int = 2000,
    classes: int = 5,
    seed: int = 0,
    spend: bool = True,
) -> dict:
    """Run ``runs`` sequences of ``looks`` gate decisions on a growing, overlapping audit set: how often they promote.

    ``comparison`` is "first_model" (against the majority-class baseline), "better" or
    "not_worse" (against a champion of accuracy ``accuracy``). Each item has a difficulty: a model
    of accuracy a is right on the items whose draw, shared with every model and nudged for each,
    is below a, so models agree as real ones do. Each candidate (of ``candidate_accuracy``,
    default the champion's: equal quality) differs from the previous one on a
    ``candidate_change`` share of items, as a model retrained on a few more labels does. The audit
    set starts at ``audit_start`` items and grows by ``audit_per_look`` before each look.

    Returns the share of runs in which some look promoted (``promoted_any``: the repeated-looks
    error for "better" and "first_model" with equal quality) and the share of single looks that
    promoted (``promoted_per_look``: how prompt "not_worse" is, or how often it lets a worse
    candidate through). ``spend=False`` tests every look at the full α instead, to show what the
    spending prevents.
    """
    rng = np.random.default_rng(seed)
    candidate_accuracy = accuracy if candidate_accuracy is None else candidate_accuracy
    settings = GateSettings(rule=comparison, alpha=alpha, margin=margin, min_audit=0, min_audit_first=0)
    total = audit_start + audit_per_look * looks
    labels = list(range(classes))
    any_hits, look_hits = 0, 0
    for _ in range(runs):
        y = rng.integers(0, classes, total)
        difficulty = rng.random(total)

        def predictions(draw: np.ndarray, right_share: float) -> np.ndarray:
            wrong = (y + 1 + rng.integers(0, classes - 1, total)) % classes
            return np.where(draw < right_share, y, wrong)

        def nudged() -> np.ndarray:
            return np.clip(difficulty + rng.normal(0.0, 0.25, total), 0.0, 1.0)

        champion = predictions(nudged(), accuracy)
        draw = nudged()
        promoted = False
        for look in range(1, looks + 1):
            changed = rng.random(total) < candidate_change
            draw = np.where(changed, nudged(), draw)
            candidate = predictions(draw, candidate_accuracy)
            n = audit_start + audit_per_look * look
            look_number = look if spend else 0  # look 0 spends nothing: α / (0 · 1) is taken as α below
            if comparison == "first_model":
                decision = decide_first(y[:n], candidate[:n], majority=int(np.bincount(y[:n]).argmax()),
                                        settings=settings, look=look_number)
            else:
                decision = decide_against_champion(
                    y[:n], champion[:n], candidate[:n], champion=1, classes=labels, settings=settings,
                    comparison=comparison, look=look_number,
                )
            look_hits += decision.promote
            promoted = promoted or decision.promote
            if decision.promote and comparison != "not_worse":
                break  # a promotion ends the comparison: the candidate is the new champion
        any_hits += promoted
    return {"comparison": comparison, "alpha": alpha, "margin": margin, "looks": looks, "runs": runs,
            "audit_start": audit_start, "audit_per_look": audit_per_look, "accuracy": accuracy,
            "candidate_accuracy": candidate_accuracy, "candidate_change": candidate_change, "classes": classes,
            "spend": spend, "promoted_any": any_hits / runs, "promoted_per_look": look_hits / (runs * looks)}
