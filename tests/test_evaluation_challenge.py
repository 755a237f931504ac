"""The CinC 2020 challenge metric: hand-computed cases, its anchors (sinus rhythm 0, perfect 1), and
how a run's label set maps onto the 24 scored classes."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_transfer.evaluation.challenge import (
    NORMAL_CLASS,
    challenge_mapping,
    challenge_score,
    challenge_terms,
    modified_confusion_matrix,
    normalise,
)
from ecg_transfer.labels import get_protocol, load_weights

# three classes A, B and N (the normal one); A and B give each other half credit
W3 = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
LABELS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
OUTPUTS = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 1]], dtype=bool)


def test_confusion_matrix_by_hand():
    # r1: {A} vs {A}, norm 1 -> A[A,A] += 1
    # r2: {B} vs {A}, norm |{A,B}| = 2 -> A[B,A] += 1/2
    # r3: {N} vs {A,N}, norm 2 -> A[N,A] += 1/2, A[N,N] += 1/2
    expected = np.array([[1.0, 0, 0], [0.5, 0, 0], [0.5, 0, 0.5]])
    assert np.allclose(modified_confusion_matrix(LABELS, OUTPUTS), expected)
    # a record with no label and no output adds nothing (normalised by max(1, 0))
    assert np.allclose(modified_confusion_matrix(np.zeros((1, 3)), np.zeros((1, 3))), 0)


def test_score_by_hand():
    # observed = 1*1 + .5*.5 + (0*.5 + 1*.5) = 1.75; correct = 3; inactive (N only):
    # r1 {A} vs {N}: norm 2, weight W[A,N] = 0; r2 likewise 0; r3 {N} vs {N}: 1 -> 1
    # score = (1.75 - 1) / (3 - 1)
    assert challenge_score(LABELS, OUTPUTS, W3, normal_index=2) == pytest.approx(0.375)
    assert challenge_score(LABELS, LABELS, W3, 2) == pytest.approx(1.0)
    inactive = np.zeros_like(LABELS)
    inactive[:, 2] = True
    assert challenge_score(LABELS, inactive, W3, 2) == pytest.approx(0.0)
    # without a normal class the reference outputs nothing: observed / correct
    assert challenge_score(LABELS, OUTPUTS, W3, None) == pytest.approx(1.75 / 3)
    # official rule: correct == inactive (every record is normal only) -> 0.0, not NaN
    only_normal = np.zeros((2, 3), dtype=bool)
    only_normal[:, 2] = True
    assert challenge_score(only_normal, np.ones((2, 3), dtype=bool), W3, 2) == 0.0


def test_record_terms_sum_to_the_score():
    rng = np.random.default_rng(0)
    classes, W = load_weights()
    labels = rng.random((40, len(classes))) < 0.1
    outputs = rng.random((40, len(classes))) < 0.1
    n = [c[0] for c in classes].index(NORMAL_CLASS)
    m = challenge_mapping(["|".join(c) for c in classes])  # read as codes: the full 24 (canonical)
    obs, cor, ina = challenge_terms(m, labels, outputs.astype(float), 0.5)
    assert normalise(obs.sum(), cor.sum(), ina.sum()) == pytest.approx(challenge_score(labels, outputs, W, n))
    # weights: a resample counted twice is the same as the records duplicated
    w = rng.integers(0, 3, 40).astype(float)
    rows = np.repeat(np.arange(40), w.astype(int))
    assert normalise(w @ obs, w @ cor, w @ ina) == pytest.approx(challenge_score(labels[rows], outputs[rows], W, n))


def test_real_weights_anchor_sinus_rhythm_at_zero_and_perfect_at_one():
    classes, W = load_weights()
    assert len(classes) == 24
    n = [c[0] for c in classes].index(NORMAL_CLASS)
    rng = np.random.default_rng(1)
    labels = rng.random((60, 24)) < 0.08
    labels[~labels.any(axis=1), n] = True
    sinus = np.zeros_like(labels)
    sinus[:, n] = True
    assert challenge_score(labels, sinus, W, n) == pytest.approx(0.0, abs=1e-12)
    assert challenge_score(labels, labels, W, n) == pytest.approx(1.0)
    # the anchors hold whatever the labels: outputs = labels is the maximum, sinus rhythm the zero
    rand = rng.random(labels.shape) < 0.2
    assert challenge_score(labels, rand, W, n) < 1.0


def test_cinc2020_protocol_maps_one_to_one():
    names = list(get_protocol("cinc2020").class_names)
    m = challenge_mapping(names, "protocol:cinc2020")
    assert m.complete and len(m.classes) == 24
    assert m.columns == tuple((j,) for j in range(24))  # the protocol is in the scorer's order
    assert m.classes[m.normal_index][0] == NORMAL_CLASS
    assert "one to one" in m.note


def test_other_label_sets_use_the_intersection_and_say_so():
    names = list(get_protocol("seed18").class_names)
    m = challenge_mapping(names, "protocol:seed18")
    assert not m.complete and 0 < len(m.classes) < 18
    assert "not the official challenge metric" in m.note and "sinus rhythm is not among them" in m.note
    assert m.normal_index is None
    assert "CRBBB" not in m.unmatched_labels and "2AVB" in m.unmatched_labels
    crbbb = [c[0] for c in m.classes].index("713427006")
    assert m.columns[crbbb] == (names.index("CRBBB"),)


def test_equivalent_codes_count_as_one_class():
    # a run labelled by SNOMED code, with RBBB and CRBBB as separate columns: both feed CRBBB|RBBB
    m = challenge_mapping(["59118001", "713427006", "426783006", "999999999"])
    assert [c[0] for c in m.classes] == ["713427006", "426783006"]  # in weights.csv order
    crbbb = [c[0] for c in m.classes].index("713427006")
    assert set(m.columns[crbbb]) == {0, 1}
    assert m.unmatched_labels == ("999999999",)
    y = np.array([[1, 0, 0, 0], [0, 0, 1, 0]])
    probs = np.array([[0.1, 0.9, 0.2, 0.0], [0.0, 0.0, 0.7, 0.0]])
    labels, outputs = m.apply(y, probs >= 0.5)
    assert labels[0, crbbb] and outputs[0, crbbb]  # RBBB label, CRBBB output: the same diagnosis


def test_ptbxl_statements_map_through_the_challenge_conversion():
    m = challenge_mapping(["NORM", "AFIB", "IMI"], "diagnostic")
    codes = [c[0] for c in m.classes]
    assert NORMAL_CLASS in codes and "164889003" in codes  # NORM -> sinus rhythm (the challenge's choice)
    assert m.unmatched_labels == ("IMI",)  # MI is not scored


def test_no_overlap_is_reported():
    m = challenge_mapping(["foo", "bar"])
    assert m.classes == () and "not computed" in m.note
