"""The PhysioNet/CinC 2020 challenge metric, our implementation of the official 2020 scorer's definition.

Definition (``evaluate_12ECG_score.py`` of physionetchallenges/evaluation-2020, final version):

- classes: the 24 scored classes of ``weights.csv`` with the equivalent codes merged
  (:func:`ecg_transfer.labels.load_weights`); labels and binary outputs are multi-hot over them;
- a multi-label confusion matrix ``A`` (rows: labels, columns: outputs): each record adds
  ``1 / max(1, |labels U outputs|)`` to ``A[j, k]`` for every label j and every output k it has;
- the score is ``sum(weights * A)``, normalised as ``(observed - inactive) / (correct - inactive)``,
  where "correct" outputs the labels themselves and "inactive" outputs sinus rhythm (426783006)
  alone; so always predicting sinus rhythm scores 0 and a perfect classifier 1. When correct equals
  inactive the official scorer returns 0.0, and so do we.

Unlike the official script (which uses ``np.bool`` and fails on NumPy >= 1.24) this works on
current NumPy. The score is a sum over records of a per-record term (:func:`record_terms`), which is
what makes the bootstrap of it one matrix product.

Which classes a run is scored on (:func:`challenge_mapping`): a ``protocol:cinc2020`` run has the 24
classes one to one; any other label set is scored over the intersection of its classes with the 24
(via their SNOMED codes; PTB-XL statements through the challenge's own SCP -> SNOMED conversion),
which is *not* the challenge metric proper, and the result says so. When sinus rhythm is not among
the intersected classes, the "inactive" classifier outputs nothing over them (predicting sinus
rhythm alone means predicting none of these classes), so its score still anchors 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..labels import canonical_code, load_weights
from ..labels.mapping import scp_to_snomed
from ..labels.protocols import PROTOCOLS, get_protocol
from ..labels.snomed import snomed_lookup

#: The challenge's normal class (sinus rhythm), whose always-on classifier scores 0.
NORMAL_CLASS = "426783006"


def modified_confusion_matrix(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The scorer's ``(M, M)`` matrix: each record spreads 1 over its labels x outputs, divided by
    ``max(1, |labels U outputs|)``."""
    L = np.asarray(labels).astype(np.float64)
    O = np.asarray(outputs).astype(np.float64)
    norm = np.maximum(((L + O) > 0).sum(axis=1), 1)
    return (L / norm[:, None]).T @ O


def record_terms(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each record's share of ``sum(weights * A)``: ``labels_i' W outputs_i / max(1, |labels_i U outputs_i|)``."""
    L = np.asarray(labels).astype(np.float64)
    O = np.asarray(outputs).astype(np.float64)
    norm = np.maximum(((L + O) > 0).sum(axis=1), 1)
    return np.einsum("ij,jk,ik->i", L, np.asarray(weights, dtype=np.float64), O) / norm


def inactive_outputs(n_records: int, n_classes: int, normal_index: int | None) -> np.ndarray:
    """The reference classifier: sinus rhythm only (nothing, when sinus rhythm is not scored here)."""
    out = np.zeros((n_records, n_classes), dtype=bool)
    if normal_index is not None:
        out[:, normal_index] = True
    return out


def normalise(observed: np.ndarray | float, correct: np.ndarray | float, inactive: np.ndarray | float) -> np.ndarray:
    """``(observed - inactive) / (correct - inactive)``, 0.0 where the denominator is 0 (official rule)."""
    observed, correct, inactive = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (observed, correct, inactive))
    )
    den = correct - inactive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den != 0, (observed - inactive) / np.where(den != 0, den, 1.0), 0.0)


def challenge_score(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray, normal_index: int | None) -> float:
    """The normalised challenge metric of binary ``outputs`` against ``labels`` (both ``(N, M)``)."""
    labels = np.asarray(labels).astype(bool)
    outputs = np.asarray(outputs).astype(bool)
    if labels.shape != outputs.shape or labels.ndim != 2:
        raise ValueError(
            f"labels and outputs must be the same (records, classes) shape, got {labels.shape} and {outputs.shape}"
        )
    W = np.asarray(weights, dtype=np.float64)
    observed = float(np.sum(W * modified_confusion_matrix(labels, outputs)))
    correct = float(np.sum(W * modified_confusion_matrix(labels, labels)))
    n_records, n_classes = labels.shape
    inactive = float(
        np.sum(W * modified_confusion_matrix(labels, inactive_outputs(n_records, n_classes, normal_index)))
    )
    return float(normalise(observed, correct, inactive))


@dataclass(frozen=True)
class ChallengeMapping:
    """How a run's label columns become the scorer's classes.

    ``columns[m]`` lists the run's label columns that count for scored class ``m``; a class is
    positive (label or output) when any of them is. ``weights`` is restricted to these classes.
    """

    classes: tuple[tuple[str, ...], ...]
    weights: np.ndarray
    columns: tuple[tuple[int, ...], ...]
    normal_index: int | None
    complete: bool  # True: the run's label set is the challenge's 24 classes, one to one
    note: str
    unmatched_labels: tuple[str, ...] = field(default=())

    def apply(self, y_true: np.ndarray, binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run columns -> ``(labels, outputs)`` over the mapped scored classes, both ``(N, M)`` bool."""
        y_true = np.asarray(y_true).astype(bool)
        binary = np.asarray(binary).astype(bool)
        labels = np.stack([y_true[:, list(c)].any(axis=1) for c in self.columns], axis=1)
        outputs = np.stack([binary[:, list(c)].any(axis=1) for c in self.columns], axis=1)
        return labels, outputs

    def to_dict(self) -> dict:
        return {
            "classes": ["|".join(c) for c in self.classes],
            "complete": self.complete,
            "sinus_rhythm_scored": self.normal_index is not None,
            "note": self.note,
            "unmatched_labels": list(self.unmatched_labels),
        }


def _label_codes(label_names: list[str], labels_spec: str | None) -> list[set[str]]:
    """SNOMED codes of each run label, from its protocol, or read as a SNOMED code / SCP statement."""
    if labels_spec and labels_spec.startswith("protocol:") and labels_spec.split(":", 1)[1] in PROTOCOLS:
        proto = get_protocol(labels_spec.split(":", 1)[1])
        by_name = {c.name: set(c.snomed_codes) for c in proto.classes}
        if all(n in by_name for n in label_names):
            return [by_name[n] for n in label_names]
    lookup = snomed_lookup()
    scp = scp_to_snomed(source="cinc2020")
    cinc_names = {c.name: set(c.snomed_codes) for c in get_protocol("cinc2020").classes}
    codes: list[set[str]] = []
    for name in label_names:
        parts = name.split("|")
        if all(c in lookup for c in parts):  # a SNOMED code, or codes joined by "|" (2021 weights style)
            codes.append(set(parts))
        elif name in cinc_names:
            codes.append(cinc_names[name])
        else:
            codes.append(set(scp.get(name, ())))
    return codes


def challenge_mapping(label_names: list[str], labels_spec: str | None = None) -> ChallengeMapping:
    """Map a run's labels to the scorer's classes (see the module docstring for the rules).

    ``labels_spec`` is the run's ``task.labels`` (e.g. ``"protocol:cinc2020"``, ``"diagnostic"``);
    without it, each label name is read as a SNOMED code (or codes joined by ``|``), a cinc2020 class
    name, or a PTB-XL SCP statement, in that order.
    """
    all_classes, all_weights = load_weights()
    index = {canonical_code(code): m for m, cls in enumerate(all_classes) for code in cls}
    label_names = [str(n) for n in label_names]
    cols: dict[int, list[int]] = {}
    unmatched: list[str] = []
    for j, codes in enumerate(_label_codes(label_names, labels_spec)):
        hits = sorted({index[canonical_code(c)] for c in codes if canonical_code(c) in index})
        if not hits:
            unmatched.append(label_names[j])
        for m in hits:
            cols.setdefault(m, []).append(j)
    keep = sorted(cols)
    complete = (
        len(keep) == len(all_classes)
        and len(label_names) == len(all_classes)
        and all(len(cols[m]) == 1 for m in keep)
        and not unmatched
    )
    normal_m = index[NORMAL_CLASS]
    normal_index = keep.index(normal_m) if normal_m in keep else None
    if complete:
        note = "the challenge's 24 scored classes, one to one"
    elif not keep:
        note = "no label of this run is among the challenge's 24 scored classes: not computed"
    else:
        note = (
            f"not the official challenge metric: computed over the {len(keep)} of the 24 scored "
            f"classes that this run's labels map to ({len(unmatched)} run label(s) not among them)"
            + (
                ""
                if normal_index is not None
                else "; sinus rhythm is not among them, so the reference classifier outputs nothing"
            )
        )
    return ChallengeMapping(
        classes=tuple(all_classes[m] for m in keep),
        weights=all_weights[np.ix_(keep, keep)],
        columns=tuple(tuple(cols[m]) for m in keep),
        normal_index=normal_index,
        complete=complete,
        note=note,
        unmatched_labels=tuple(unmatched),
    )


def challenge_terms(
    mapping: ChallengeMapping, y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-record observed, correct and inactive terms ``(N,)`` each; outputs are ``probs >= threshold``.

    ``normalise(w @ observed, w @ correct, w @ inactive)`` is the score under record weights ``w``.
    """
    labels, outputs = mapping.apply(y_true, np.asarray(probs) >= threshold)
    n_records, n_classes = labels.shape
    inactive = inactive_outputs(n_records, n_classes, mapping.normal_index)
    W = mapping.weights
    return record_terms(labels, outputs, W), record_terms(labels, labels, W), record_terms(labels, inactive, W)


__all__ = [
    "NORMAL_CLASS",
    "ChallengeMapping",
    "challenge_mapping",
    "challenge_score",
    "challenge_terms",
    "modified_confusion_matrix",
    "normalise",
    "record_terms",
]
