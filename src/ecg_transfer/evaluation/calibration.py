"""Post-hoc calibrators and reliability bins.

Calibrators are fitted on *validation* predictions and applied to *test* predictions; the original
study fitted its temperature on the test fold (its error 3), which flatters calibration. Contract
(scikit-learn-like): ``fit(val_probs, val_y)`` returns the calibrator, ``transform(probs)`` returns
calibrated probabilities, and the fitted parameters are the whole state (``to_dict`` / ``from_dict``,
:func:`save_calibrator` / :func:`load_calibrator` as JSON): nothing of the fitting data is kept.

- ``temperature``: one temperature T for all classes, ``sigmoid(logit(p) / T)``, T minimising the
  validation NLL (scipy, bounded to [0.05, 20]);
- ``class-temperature``: one such T per class;
- ``platt``: per class ``sigmoid(a * logit(p) + b)``, a logistic regression on the logit
  (scikit-learn); the slope is kept >= 0 (a negative slope would reverse the ranking, so such a
  class gets a = 0, i.e. its validation prevalence);
- ``isotonic``: per class, scikit-learn's isotonic regression (increasing, clipped to [0, 1]).

Ranking is preserved, exactly. All four maps are non-decreasing but not strictly: isotonic
regression is a step function, so it would merge distinct scores into ties and change the AUC, and
a steep temperature or Platt map saturates at 0 or 1 in float64, with the same effect. So every
calibrator returns ``(1 - eps) * f(p) + eps * s(p)`` with ``eps = 2e-5`` and ``s`` the input's
logit mapped linearly from its float64 range onto [0, 1]: ties are broken by the original score,
the calibrated probability moves by at most 2e-5, and any two different float32 probabilities (what
runs save) keep their order, whatever ``f`` does, so every class keeps its AUC (the tests check all
four, and every pair of adjacent float32 values). Float64 inputs closer than float32 resolution
may still tie.

A class whose validation labels are all 0 or all 1 cannot be fitted: it keeps T = 1 (temperature),
its validation prevalence (Platt), or the constant isotonic fit; ``notes`` lists such classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from ..atomic import atomic_write_json
from .metrics import bin_index

#: Weight of the rank guard (see the module docstring).
RANK_EPS = 2e-5
T_BOUNDS = (0.05, 20.0)
_P_LOW = np.finfo(np.float64).smallest_subnormal
_P_HIGH = np.nextafter(1.0, 0.0)


def logit(p: np.ndarray | float) -> np.ndarray:
    """``log(p / (1 - p))`` in float64, finite: 0 and 1 are moved to the nearest float64 inside (0, 1),
    which keeps every float32 probability in order."""
    p = np.clip(np.asarray(p, dtype=np.float64), _P_LOW, _P_HIGH)
    return np.log(p) - np.log1p(-p)


_Z_LOW, _Z_HIGH = float(logit(_P_LOW)), float(logit(_P_HIGH))


def rank_guard(calibrated: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Blend a non-decreasing map's output with a strictly increasing function of the input.

    ``s`` is linear in the logit so that its resolution is the same everywhere: adjacent float32
    probabilities differ by at least ~6e-8 in logit, i.e. ``eps * 6e-8 / 782`` ~ 1.5e-15 in output,
    several float64 steps even next to 1.
    """
    s = (logit(probs) - _Z_LOW) / (_Z_HIGH - _Z_LOW)
    return (1.0 - RANK_EPS) * np.asarray(calibrated, dtype=np.float64) + RANK_EPS * s


@overload
def _check(probs: np.ndarray, y: None = None) -> tuple[np.ndarray, None]: ...
@overload
def _check(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
def _check(probs: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities (and 0/1 labels of the same shape, when given) as float64, checked."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (records, classes), got shape {p.shape}")
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError("probabilities must be finite and in [0, 1]")
    if y is None:
        return p, None
    y = np.asarray(y)
    if y.shape != p.shape or not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1 of the same shape as the probabilities {p.shape}, got {y.shape}")
    return p, y.astype(np.float64)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of ``sigmoid(z)`` against y, computed stably from logits."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    res = minimize_scalar(
        lambda lt: _nll(z / np.exp(lt), y), bounds=np.log(T_BOUNDS), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(res.x))


def _one_label(y: np.ndarray) -> bool:
    return bool(y.min() == y.max())


@dataclass
class Calibrator:
    """Base class: subclasses implement ``_fit`` and ``_map`` and list their parameters in ``params``."""

    name: ClassVar[str] = ""
    n_classes: int | None = None
    notes: list[str] = field(default_factory=list)

    def fit(self, probs: np.ndarray, y: np.ndarray) -> "Calibrator":
        p, yy = _check(probs, y)
        self.n_classes = p.shape[1]
        self.notes = []
        self._fit(p, yy)
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        if self.n_classes is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        p, _ = _check(probs)
        if p.shape[1] != self.n_classes:
            raise ValueError(f"fitted on {self.n_classes} classes, got {p.shape[1]}")
        return rank_guard(np.clip(self._map(p), 0.0, 1.0), p)

    def fit_transform(self, probs: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.fit(probs, y).transform(probs)

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "n_classes": self.n_classes,
            "notes": list(self.notes or []),
            "rank_eps": RANK_EPS,
            **self.params(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibrator":
        target = CALIBRATORS.get(d.get("method", ""))
        if target is None:
            raise ValueError(f"unknown calibrator {d.get('method')!r}; allowed: {', '.join(CALIBRATORS)}")
        obj = target()
        obj.n_classes = int(d["n_classes"])
        obj.notes = list(d.get("notes", []))
        obj._load(d)
        return obj

    # subclass hooks
    def _fit(self, p: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _map(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _load(self, d: dict[str, Any]) -> None:
        raise NotImplementedError


@dataclass
class TemperatureScaling(Calibrator):
    """One temperature for every class (the original study's choice, fitted here on validation)."""

    name: ClassVar[str] = "temperature"
    temperature: float = 1.0

    def _fit(self, p, y):
        self.temperature = _fit_temperature(logit(p).ravel(), y.ravel())

    def _map(self, p):
        return expit(logit(p) / self.temperature)

    def params(self):
        return {"temperature": self.temperature}

    def _load(self, d):
        self.temperature = float(d["temperature"])


@dataclass
class ClassTemperatureScaling(Calibrator):
    """A temperature per class: classes differ in how over-confident the network is."""

    name: ClassVar[str] = "class-temperature"
    temperatures: list[float] | None = None

    def _fit(self, p, y):
        z = logit(p)
        self.temperatures = []
        for k in range(p.shape[1]):
            if _one_label(y[:, k]):
                self.notes.append(f"class {k}: validation labels all {int(y[0, k])}; temperature left at 1")
                self.temperatures.append(1.0)
            else:
                self.temperatures.append(_fit_temperature(z[:, k], y[:, k]))

    def _map(self, p):
        return expit(logit(p) / np.asarray(self.temperatures)[None, :])

    def params(self):
        return {"temperatures": list(self.temperatures or [])}

    def _load(self, d):
        self.temperatures = [float(t) for t in d["temperatures"]]


def _prevalence_logit(y: np.ndarray) -> float:
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    return float(np.log(rate) - np.log1p(-rate))


@dataclass
class PlattScaling(Calibrator):
    """Per class ``sigmoid(a * logit(p) + b)``, fitted by scikit-learn's logistic regression."""

    name: ClassVar[str] = "platt"
    slopes: list[float] | None = None
    intercepts: list[float] | None = None

    def _fit(self, p, y):
        from sklearn.linear_model import LogisticRegression

        z = logit(p)
        self.slopes, self.intercepts = [], []
        for k in range(p.shape[1]):
            if _one_label(y[:, k]):
                self.notes.append(f"class {k}: validation labels all {int(y[0, k])}; constant at its prevalence")
                a, b = 0.0, _prevalence_logit(y[:, k])
            else:
                # C = 1e6: effectively unpenalised, on every scikit-learn version we support
                lr = LogisticRegression(C=1e6, max_iter=1000).fit(z[:, k : k + 1], y[:, k].astype(int))
                a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
                if a <= 0:
                    self.notes.append(
                        f"class {k}: fitted slope {a:.3g} <= 0 (would reverse the ranking); constant at its prevalence"
                    )
                    a, b = 0.0, _prevalence_logit(y[:, k])
            self.slopes.append(a)
            self.intercepts.append(b)

    def _map(self, p):
        return expit(logit(p) * np.asarray(self.slopes)[None, :] + np.asarray(self.intercepts)[None, :])

    def params(self):
        return {"slopes": list(self.slopes or []), "intercepts": list(self.intercepts or [])}

    def _load(self, d):
        self.slopes = [float(a) for a in d["slopes"]]
        self.intercepts = [float(b) for b in d["intercepts"]]


@dataclass
class IsotonicCalibration(Calibrator):
    """Per class isotonic regression; kept as its breakpoints, applied by linear interpolation
    (what scikit-learn's ``predict`` does), so the JSON holds the whole fitted map."""

    name: ClassVar[str] = "isotonic"
    x: list[list[float]] | None = None
    y: list[list[float]] | None = None

    def _fit(self, p, y):
        from sklearn.isotonic import IsotonicRegression

        self.x, self.y = [], []
        for k in range(p.shape[1]):
            if _one_label(y[:, k]):
                self.notes.append(f"class {k}: validation labels all {int(y[0, k])}; constant fit")
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(p[:, k], y[:, k])
            self.x.append([float(v) for v in iso.X_thresholds_])
            self.y.append([float(v) for v in iso.y_thresholds_])

    def _map(self, p):
        xs, ys = self.x, self.y
        if xs is None or ys is None:
            raise RuntimeError("IsotonicCalibration is not fitted")
        return np.stack([np.interp(p[:, k], xs[k], ys[k]) for k in range(p.shape[1])], axis=1)

    def params(self):
        return {"x": self.x or [], "y": self.y or []}

    def _load(self, d):
        self.x = [[float(v) for v in row] for row in d["x"]]
        self.y = [[float(v) for v in row] for row in d["y"]]


CALIBRATORS: dict[str, type[Calibrator]] = {
    c.name: c for c in (TemperatureScaling, ClassTemperatureScaling, PlattScaling, IsotonicCalibration)
}


def make_calibrator(method: str) -> Calibrator:
    """A new, unfitted calibrator by name (one of :data:`CALIBRATORS`)."""
    if method not in CALIBRATORS:
        raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIBRATORS)}")
    return CALIBRATORS[method]()


def save_calibrator(calibrator: Calibrator, path: str | Path) -> Path:
    atomic_write_json(path, calibrator.to_dict())
    return Path(path)


def load_calibrator(path: str | Path) -> Calibrator:
    return Calibrator.from_dict(json.loads(Path(path).read_text()))


@dataclass
class ReliabilityBins:
    """One class's reliability diagram: per bin its probability range, count, mean prediction and
    observed frequency (None for an empty bin)."""

    strategy: str
    lower: list[float]
    upper: list[float]
    count: list[int]
    mean_pred: list[float | None]
    frac_pos: list[float | None]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10, strategy: str = "equal-width") -> ReliabilityBins:
    """Reliability bins of one class.

    ``equal-width``: [0, 0.1), ..., [0.9, 1.0] (the ECE's bins; empty bins kept, count 0).
    ``equal-mass``: records sorted by p and cut into ``n_bins`` groups of equal size (sizes differ by
    at most one; a tie may straddle two groups), so every bin has data where the model puts it;
    ``lower``/``upper`` are the smallest and largest p in the group.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError("y and p must have the same length")
    lower, upper, count, mean_pred, frac_pos = [], [], [], [], []
    if strategy == "equal-width":
        b = bin_index(p, n_bins)
        for i in range(n_bins):
            m = b == i
            lower.append(i / n_bins)
            upper.append((i + 1) / n_bins)
            count.append(int(m.sum()))
            mean_pred.append(float(p[m].mean()) if m.any() else None)
            frac_pos.append(float(y[m].mean()) if m.any() else None)
    elif strategy == "equal-mass":
        order = np.argsort(p, kind="mergesort")
        for chunk in np.array_split(order, min(n_bins, max(p.size, 1))):
            if chunk.size == 0:
                continue
            lower.append(float(p[chunk].min()))
            upper.append(float(p[chunk].max()))
            count.append(int(chunk.size))
            mean_pred.append(float(p[chunk].mean()))
            frac_pos.append(float(y[chunk].mean()))
    else:
        raise ValueError(f"unknown bin strategy {strategy!r}; allowed: equal-width, equal-mass")
    return ReliabilityBins(strategy, lower, upper, count, mean_pred, frac_pos)
