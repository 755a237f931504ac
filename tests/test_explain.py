"""``ecg-transfer explain``: attributions of a run's record probability to leads and samples.

The check that attributions mean something: a synthetic set where label ``L3`` is a 10 Hz burst in
lead 3 only and ``L7`` one in lead 7 only (every lead carries noise); after a few seconds of
training, integrated gradients give each label's own lead the largest share, at least twice any other's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training_synth import FS, tiny_config

from ecg_transfer.cli import main
from ecg_transfer.errors import ConfigError
from ecg_transfer.training import train_run
from ecg_transfer.training.modelfile import load_model_file

pytest.importorskip("captum", reason="explanations need captum (pip install 'ecg-transfer[explain]')")
from ecg_transfer.inference.explain import explain_record, explanation_json, record_probability_module  # noqa: E402

LEADS = {"L3": 3, "L7": 7}


def one_lead_data(n: int = 80, t: int = 400, seed: int = 0):
    """Each label is a 10 Hz burst in its own lead; every lead has noise; labels are coin flips."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, len(LEADS))) < 0.5).astype(np.uint8)
    Y[0], Y[1] = 1, 0
    X = rng.normal(0.0, 0.3, size=(n, 12, t)).astype(np.float32)
    tt = np.arange(t) / FS
    for j, lead in enumerate(LEADS.values()):
        phase = rng.uniform(0, 2 * np.pi, size=n)
        X[:, lead, :] += (Y[:, j, None] * np.sin(2 * np.pi * 10 * tt[None, :] + phase[:, None])).astype(np.float32)
    perm = rng.permutation(n)
    splits = {"train": np.sort(perm[:56]), "val": np.sort(perm[56:68]), "test": np.sort(perm[68:])}
    return X, Y, [f"rec{i:03d}" for i in range(n)], splits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    X, Y, ids, splits = one_lead_data()
    run = tmp_path_factory.mktemp("explain") / "run"
    threads = torch.get_num_threads()
    try:
        res = train_run(
            tiny_config(epochs=6, model_kwargs={"head_dropout": 0.0}),
            X,
            Y,
            ids,
            splits,
            list(LEADS),
            run,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    assert res.test_macro_auc > 0.9  # the task is learnt, so the attributions have something to find
    return run, X, Y, splits


def test_the_label_s_own_lead_receives_most_of_the_attribution(trained):
    run, X, Y, splits = trained
    lm = load_model_file(run)
    for j, (label, lead) in enumerate(LEADS.items()):
        positives = [i for i in splits["test"] if Y[i, j]][:3]
        shares = np.mean([explain_record(lm, X[i], [label], steps=32)[0].per_lead_share for i in positives], axis=0)
        others = np.delete(shares, lead)
        print(label, np.round(shares, 3))
        assert int(np.argmax(shares)) == lead
        assert shares[lead] > 2 * others.max(), shares  # uniform would be 1/12 each


def test_integrated_gradients_add_up_to_the_probability_change(trained):
    run, X, Y, splits = trained
    lm = load_model_file(run)
    x = X[splits["test"][0]]
    e = explain_record(lm, x, ["L3"], steps=64)[0]
    f = record_probability_module(lm)
    with torch.no_grad():
        p, p0 = (float(f(torch.from_numpy(v)[None])[0, 0]) for v in (x, np.zeros_like(x)))
    assert e.probability == pytest.approx(p, abs=1e-6)
    assert e.attribution.shape == x.shape
    assert e.attribution.sum() == pytest.approx(p - p0, abs=max(2 * e.convergence_delta, 1e-4))
    assert e.per_lead_share.sum() == pytest.approx(1.0)


def test_the_explained_function_is_the_run_s_record_probability(trained):
    run, X, Y, splits = trained
    lm = load_model_file(run)
    rows = splits["test"][:4]
    with torch.no_grad():
        got = record_probability_module(lm)(torch.from_numpy(X[rows])).numpy()
    assert np.abs(got - lm.predict(X, rows)).max() < 1e-6  # windows, standardisation, aggregation: the run's


def test_gradcam_is_a_map_over_time_of_the_windows_seen(trained):
    run, X, Y, splits = trained
    x = np.concatenate([X[splits["test"][0]], X[splits["test"][1]][:, :90]], axis=1)  # 490: last 115 unseen
    e = explain_record(run, x, ["L3", "L7"], method="gradcam")
    for ex in e:
        assert ex.attribution.shape == (490,) and ex.per_lead_share is None
        assert (ex.per_time >= 0).all() and ex.per_time.max() > 0
        assert np.all(ex.per_time[375:] == 0)  # windows at 0, 125 and 250 end at 375
    d = explanation_json("r", [f"l{i}" for i in range(12)], FS, e)
    assert (
        d["method"] == "gradcam"
        and "attribution" not in d["labels"]["L3"]
        and len(d["labels"]["L7"]["per_time"]) == 490
    )


def test_default_labels_are_the_most_probable_and_bad_ones_are_named(trained):
    run, X, Y, splits = trained
    x = X[splits["test"][0]]
    e = explain_record(run, x, top=2, steps=8)
    assert [ex.probability for ex in e] == sorted((ex.probability for ex in e), reverse=True) and len(e) == 2
    with pytest.raises(ConfigError, match="unknown label"):
        explain_record(run, x, ["nope"])
    with pytest.raises(ConfigError, match="gradcam"):
        explain_record(run, x, method="shap")
    with pytest.raises(ValueError, match="shape"):
        explain_record(run, x[:, :100])


def test_cli_writes_png_and_json_per_record_and_label(trained, tmp_path, capsys):
    run, X, Y, splits = trained
    np.save(tmp_path / "two.npy", X[splits["test"][:2]])
    np.save(tmp_path / "short.npy", X[0][:, :100])
    out = tmp_path / "expl"
    code = main(
        [
            "explain",
            str(run),
            str(tmp_path / "two.npy"),
            str(tmp_path / "short.npy"),
            "--fs",
            "100",
            "--labels",
            "L7",
            "--steps",
            "8",
            "--out",
            str(out),
        ]
    )
    assert code == 3  # the short record fails, the others are written
    assert "short" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["two_0.json", "two_0__L7.png", "two_1.json", "two_1__L7.png"]
    d = json.loads((out / "two_0.json").read_text())
    assert d["record"] == "two[0]" and d["method"] == "ig" and list(d["labels"]) == ["L7"]
    lab = d["labels"]["L7"]
    assert len(lab["attribution"]) == 12 and len(lab["attribution"][0]) == X.shape[2]
    assert set(lab["per_lead_share"]) == set(d["leads"]) and abs(sum(lab["per_lead_share"].values()) - 1) < 1e-4
    assert (out / "two_0__L7.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        main(
            [
                "explain",
                str(run),
                str(tmp_path / "two.npy"),
                "--fs",
                "100",
                "--labels",
                "nope",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
