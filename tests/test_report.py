"""The study report: ``write_report`` / ``ecg-transfer report`` on a synthetic results.json.

``make_results`` fills every section with plausible numbers (the shapes ``study.results`` writes);
variants drop sections, null values and add failures. A headless-Chromium screenshot checks that the
page renders to something that is not blank (skipped with the reason when no Chromium is installed).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.labels import get_protocol
from ecg_transfer.study.results import REFERENCE

from ecg_transfer.cli import main
from ecg_transfer.evaluation.calibration import reliability_bins
from ecg_transfer.report import ReportError, write_report
from ecg_transfer.report.data import FORMAT

SEED18 = list(get_protocol("seed18").class_names)
CINC24 = list(get_protocol("cinc2020").class_names)


def _iv(rng, value: float, half: float, n_seeds: int = 0, sd: float = 0.004, **scope) -> dict:
    out = {"value": round(value, 4), "ci": [round(value - half, 4), round(value + half * 0.9, 4)], **scope}
    if n_seeds:
        vals = [round(value + float(d), 4) for d in rng.normal(0, sd, n_seeds)]
        out.update(sd=round(float(np.std(vals, ddof=1)), 4), values=vals, n=n_seeds, n_planned=n_seeds)
    return out


def _diff(rng, value: float, half: float, p: float = 0.001, **scope) -> dict:
    """A paired difference: value, CI, p-value and the share of resamples tied at 0."""
    return {
        "value": round(value, 4),
        "ci": [round(value - half, 4), round(value + half * 1.05, 4)],
        "p": p,
        "ties_at_zero": 0.0,
        **scope,
    }


def _reliability(rng, labels: list[str], prevalence: np.ndarray, n: int = 1000) -> dict:
    """Equal-width bins of an over-confident model and of calibrated versions of it."""
    out: dict = {m: {} for m in ("uncalibrated", "temperature", "class-temperature", "platt", "isotonic")}
    for k, name in enumerate(labels):
        z = rng.normal(np.log(prevalence[k] / (1 - prevalence[k])), 1.6, n)
        p_true = 1 / (1 + np.exp(-z))
        y = (rng.random(n) < p_true).astype(float)
        for i, m in enumerate(out):
            scale = 1.9 if m == "uncalibrated" else 1.0 + 0.04 * i
            p = 1 / (1 + np.exp(-(z * scale + (0.6 if m == "uncalibrated" else 0.0))))
            out[m][name] = reliability_bins(y, p, 10, "equal-width").to_dict()
    return out


def make_results(seed: int = 0) -> dict:
    """A complete, plausible results.json: two protocols, three seeds, every experiment."""
    rng = np.random.default_rng(seed)
    headline = []
    for protocol, labels, ft, sa, n_test in (
        ("seed18", SEED18, 0.905, 0.862, 1034),
        ("cinc2020", CINC24, 0.921, 0.889, 1034),
    ):
        n_pos = sorted((int(x) for x in rng.integers(3, 160, len(labels))), reverse=True)
        n_pos[-1] = 0  # one label without positives in the test split
        per_class = []
        for lab, npos in zip(labels, n_pos):
            if npos == 0:
                per_class.append(
                    {"label": lab, "n_pos": 0, "finetuned": None, "standalone": None, "status": "no positives"}
                )
                continue
            a = float(np.clip(ft + rng.normal(0, 0.05), 0.5, 0.995))
            b = float(np.clip(a - 0.04 + rng.normal(0, 0.04), 0.5, 0.995))
            half = 0.3 / np.sqrt(npos)  # few positives: wide, often includes 0
            per_class.append(
                {
                    "label": lab,
                    "n_pos": npos,
                    "finetuned": round(a, 4),
                    "standalone": round(b, 4),
                    "status": "ok",
                    "difference": _diff(rng, a - b, half, 0.5),
                }
            )
        scope = {"n_test": n_test, "n_test_min": n_test, "labels_scored": len(labels) - 1, "n_labels": len(labels)}
        headline.append(
            {
                "protocol": protocol,
                "n_test": n_test,
                "n_val": 1030,
                "n_train": 8276,
                "labels": labels,
                "labels_scored": len(labels) - 1,
                "n_labels": len(labels),
                "finetuned": _iv(rng, ft, 0.013, 3, **scope),
                "standalone": _iv(rng, sa, 0.016, 3, **scope),
                "difference": _diff(rng, ft - sa, 0.012, **scope),
                "metrics": {
                    arm: {
                        "macro_auprc": _iv(rng, base - 0.42, 0.03),
                        "challenge": _iv(rng, base - 0.3, 0.02),
                        "brier": _iv(rng, 0.031 + (0.004 if arm == "standalone" else 0), 0.002),
                        "ece": _iv(rng, 0.012 + (0.003 if arm == "standalone" else 0), 0.002),
                    }
                    for arm, base in (("finetuned", ft), ("standalone", sa))
                },
                "metric_differences": {
                    "macro_auprc": _diff(rng, ft - sa, 0.02),
                    "challenge": _diff(rng, ft - sa, 0.02),
                    "brier": _diff(rng, -0.004, 0.002, 0.01),
                    "ece": _diff(rng, -0.003, 0.005, 0.3),
                },
                "challenge_note": "the challenge's 24 scored classes, one to one",
                "per_class": per_class,
                "runs": {
                    "finetuned": ["runs/aa01", "runs/aa02", "runs/aa03"],
                    "standalone": ["runs/bb01", "runs/bb02", "runs/bb03"],
                },
            }
        )
    exp1: dict = {"protocol": "seed18", "rest": [], "fixed_test": [], "difference": {"rest": [], "fixed_test": []}}
    for variant in ("rest", "fixed_test"):
        for s in (10, 20, 30, 50, 70, 80, 90):
            n_test = int(10344 * (1 - s / 100)) if variant == "rest" else 1034
            half = 0.006 * np.sqrt(9000 / n_test) * (1 if variant == "rest" else 1.0)
            ft = 0.86 + 0.048 * (1 - np.exp(-s / 28))
            sa = 0.70 + 0.17 * (1 - np.exp(-s / 30))
            scope = {"n_test": n_test, "n_test_min": n_test, "labels_scored": 18, "n_labels": 18}
            for arm, v in (("finetuned", ft), ("standalone", sa)):
                exp1[variant].append(
                    {"share": s, "arm": arm, **_iv(rng, v + rng.normal(0, 0.003), half, 3, 0.008, **scope)}
                )
            exp1["difference"][variant].append({"share": s, **_diff(rng, ft - sa, half, **scope)})
    exp2 = []
    for s, pre, ft in ((25, 0.905, 0.842), (50, 0.921, 0.851), (75, 0.927, 0.856), (100, 0.931, 0.858)):
        exp2.append(
            {
                "share": s,
                "target_share": 10,
                "protocol": "seed18",
                "pretrain_test_auc": _iv(rng, pre, 0.009, n_test=2163, labels_scored=44, n_labels=44),
                "n_pretrain_records": int(17418 * s / 100),
                "finetuned": _iv(rng, ft, 0.01, 3),
                "standalone_reference": _iv(rng, 0.742, 0.015, 3),
                "difference": _diff(rng, ft - 0.742, 0.02),
            }
        )
    exp3 = []
    for fs, pre, ft, sa in (
        (50, 0.902, 0.871, 0.835),
        (100, 0.931, 0.902, 0.860),
        (250, 0.935, 0.907, 0.864),
        (500, 0.936, 0.909, 0.866),
    ):
        n_pre = 2163 if fs <= 100 else 2158  # PTB-XL above 100 Hz: the records present at 500 Hz
        exp3.append(
            {
                "fs": float(fs),
                "source_fs": 500 if fs > 100 else 100,
                "n_pretrain_records": 17418,
                "protocol": "seed18",
                "pretrain": _iv(rng, pre, 0.008, n_test=n_pre, labels_scored=44, n_labels=44),
                "finetuned": _iv(rng, ft, 0.013, 3, n_test=1034),
                "standalone": _iv(rng, sa, 0.016, 3, n_test=1034),
                "difference": _diff(rng, ft - sa, 0.012, n_test=1034),
            }
        )
    exp5 = []
    for inp, pre, ft, sa in (
        ("time", 0.931, 0.905, 0.862),
        ("spectrum", 0.842, 0.801, 0.774),
        ("log-spectrum", 0.871, 0.833, 0.801),
        ("stft", 0.915, 0.884, 0.845),
    ):
        exp5.append(
            {
                "input": inp,
                "protocol": "seed18",
                "pretrain": _iv(rng, pre, 0.009),
                "finetuned": _iv(rng, ft, 0.013, 3),
                "standalone": _iv(rng, sa, 0.016, 3),
                "difference": _diff(rng, ft - sa, 0.03, 0.04),
            }
        )
    exp6 = []
    for model in ("xresnet1d50", "s4"):
        for strategy, gain in (
            ("none", 0.0),
            ("supervised:diagnostic", 0.06),
            ("supervised:rhythm", 0.03),
            ("self-supervised", 0.045),
        ):
            for share in (10, 50):
                base = 0.74 + 0.1 * share / 50
                row = {
                    "model": model,
                    "strategy": strategy,
                    "share": share,
                    "protocol": "seed18",
                    "arm": "standalone" if strategy == "none" else "finetuned",
                    **_iv(rng, base + gain, 0.015, 2, n_test=int(10344 * (1 - share / 100))),
                    "pretrain": (
                        _iv(rng, 0.93, 0.008, n_test=2163)
                        if strategy.startswith("supervised")
                        else {"value": None, "ci": None}
                    ),
                    "difference_to_none": (
                        _diff(rng, gain, 0.012) if strategy != "none" else {"value": None, "ci": None, "p": None}
                    ),
                }
                exp6.append(row)
    exp4 = []
    for protocol, labels in (("seed18", SEED18), ("cinc2020", CINC24)):
        prevalence = np.clip(rng.beta(1.2, 12, len(labels)), 0.01, 0.4)
        for arm, worse in (("finetuned", 0.0), ("standalone", 0.004)):
            methods = {}
            for i, m in enumerate(("uncalibrated", "temperature", "class-temperature", "platt", "isotonic")):
                ece = (0.031 if m == "uncalibrated" else 0.012 - 0.001 * i) + worse
                methods[m] = {
                    "ece": _iv(rng, ece, 0.003),
                    "ece_macro": _iv(rng, ece * 1.6, 0.005),
                    "brier": _iv(rng, 0.0342 - (0.002 if m != "uncalibrated" else 0) + worse, 0.002),
                    "max_auc_change": 0.0 if m in ("uncalibrated", "temperature") else 0.0013 * i,
                }
                if m != "uncalibrated":
                    methods[m]["vs_uncalibrated"] = {
                        "ece": _diff(rng, ece - 0.031 - worse, 0.004),
                        "ece_macro": _diff(rng, -0.02, 0.006),
                        "brier": _diff(rng, -0.002, 0.003, 0.2),
                    }
            exp4.append(
                {
                    "protocol": protocol,
                    "arm": arm,
                    "methods": methods,
                    "runs": ["runs/aa01", "runs/aa02"],
                    "n_seeds": 3,
                    "n_planned": 3,
                    "n_test": 1034,
                    "fitted_on": "validation",
                    "n_val": 1030,
                    "reliability_run": "runs/aa01",
                    "reliability_seed": 0,
                    "reliability": _reliability(rng, labels, prevalence),
                }
            )
    pre_labels = [
        "NORM",
        "IMI",
        "ASMI",
        "LVH",
        "NDT",
        "LAFB",
        "IRBBB",
        "CLBBB",
        "NST_",
        "ISC_",
        "CRBBB",
        "1AVB",
        "IVCD",
        "ISCAL",
        "IPLMI",
        "ILMI",
        "AMI",
        "ALMI",
        "ISCIN",
        "INJAS",
        "LMI",
        "ISCIL",
        "LPFB",
        "ISCAS",
        "INJAL",
        "ISCLA",
        "RVH",
        "ANEUR",
        "RAO/RAE",
        "EL",
        "WPW",
        "ILBBB",
        "IPMI",
        "ISCAN",
        "2AVB",
        "LAO/LAE",
        "SEHYP",
        "INJIN",
        "PMI",
        "3AVB",
        "INJIL",
        "INJLA",
        "LNGQT",
        "ANEUR2",
    ]
    return {
        "format": FORMAT,
        "study": {
            "name": "ptbxl_to_g12ec",
            "profile": None,
            "machinery_check": False,
            "spec": "studies/ptbxl_to_g12ec.toml",
            "spec_digest": "3f5a9c0e1b7d" + "0" * 52,
            "generated": "2025-06-01T12:00:00+00:00",
            "model": "xresnet1d101",
            "seeds": [0, 1, 2],
            "source": {
                "dataset": "ptbxl",
                "labels": "diagnostic",
                "fs": 500.0,
                "n_train": 17418,
                "train_fraction": 1.0,
                "epochs": 50,
                "coverage": {
                    "records_at_500hz": {"train": 17418, "val": 2180, "test": 2158},
                    "records_at_100hz": {"train": 17441, "val": 2193, "test": 2163},
                    "missing_at_500hz": {"val": 13, "test": 5},
                },
            },
            "target": {
                "dataset": "cinc",
                "name": "G12EC",
                "protocols": ["seed18", "cinc2020"],
                "finetune": {"policy": "gradual"},
                "standalone_epochs": 40,
            },
            "bootstrap": 1000,
            "wall_seconds": 187654.3,
            "wall_seconds_note": "sum of the finished runs' training + evaluation times",
            "environment": {
                "python": "3.11.2",
                "torch": "2.13.0",
                "numpy": "2.1.0",
                "ecg_transfer": "0.1.0",
                "host": "gpu-node-3",
                "threads": 16,
            },
        },
        "statistics": {
            "interval": "95 % percentile bootstrap interval, 1000 resamples of the test records",
            "resampling": "PTB-XL benchmark rule: a resample in which a label scored on the test set has "
            "no positive or no negative record is drawn again",
            "p_value": "two-sided, by inverting the percentile interval",
            "small_test": 30,
            "fallbacks": [],
        },
        "status": {
            "total": 137,
            "done": 134,
            "failed": 1,
            "running": 1,
            "left": 1,
            "interrupted": 0,
            "failed_runs": [
                {
                    "key": "ab12cd34",
                    "name": "exp5/stft/finetuned/s2",
                    "error": "TrainingDivergedError: loss is nan at epoch 3 (lr 0.01)",
                }
            ],
        },
        "reference": copy.deepcopy(REFERENCE),
        "headline": headline,
        "pretrain": {
            "labels": "diagnostic",
            "fs": 500.0,
            "test_macro_auc": _iv(rng, 0.936, 0.008, n_test=2163, labels_scored=44, n_labels=44),
            "val_macro_auc": 0.931,
            "run": "runs/pp01",
            "n_train": 17418,
            "per_class": [
                {
                    "label": lab,
                    "n_pos": int(max(1, 900 * np.exp(-i / 6))),
                    "auc": round(float(np.clip(0.94 + rng.normal(0, 0.03), 0.6, 0.999)), 4),
                }
                for i, lab in enumerate(pre_labels)
            ],
        },
        "exp1": exp1,
        "exp2": exp2,
        "exp3": exp3,
        "exp4": exp4,
        "exp5": exp5,
        "exp6": exp6,
    }


def _write(tmp_path: Path, results: dict, name: str = "study") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "results.json").write_text(json.dumps(results))
    return d


def _text(html: str) -> str:
    """The page's visible text (tags and data URIs removed, whitespace collapsed)."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&amp;", "&")


def _minimal() -> dict:
    return {"format": FORMAT, "study": {"name": "empty"}}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The report of the complete synthetic study, written once for the tests that only read it."""
    res = make_results()
    d = _write(tmp_path_factory.mktemp("full"), res)
    return res, d, write_report(d)


# ---------------------------------------------------------------------------------------------


def test_full_report_files_and_content(full):
    res, d, paths = full
    html = paths["html"].read_text()
    md = paths["markdown"].read_text()
    assert paths["html"] == d / "report" / "index.html" and paths["markdown"] == d / "report" / "report.md"
    figs = {k: v for k, v in paths.items() if k not in ("dir", "html", "markdown")}
    for name in (
        "headline",
        "exp1",
        "exp2",
        "exp3",
        "exp5",
        "exp6",
        "exp4_metrics",
        "exp4_reliability_seed18",
        "exp4_reliability_cinc2020",
        "per_class_seed18",
        "per_class_cinc2020",
    ):
        assert name in figs, name
        assert figs[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name}.png)" in md and (paths["markdown"].parent / f"{name}.png").is_file()
    # no temporary files left behind by the atomic writes
    assert not [p for p in (d / "report").iterdir() if p.name.startswith(".")]

    text = _text(html)
    # headline numbers with their CIs and the paired difference, and the original study beside them
    h = res["headline"][0]
    ft, sa, diff = h["finetuned"], h["standalone"], h["difference"]
    assert f"{ft['value']:.3f} [{ft['ci'][0]:.3f}, {ft['ci'][1]:.3f}]" in text  # table: value, CI below
    assert f"[{sa['ci'][0]:.3f}, {sa['ci'][1]:.3f}]" in text
    assert f"{diff['value']:+.3f}" in text and f"[{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]" in text
    assert "p = 0.001" in text
    assert "0.919" in text and "0.843" in text and "+0.076" in text  # original headline and its difference
    assert "not directly comparable" in text and "RBBB" in text and "Single runs" in text
    # the Markdown carries the same headline
    assert f"{ft['value']:.3f} [{ft['ci'][0]:.3f}, {ft['ci'][1]:.3f}]" in md
    assert f"{diff['value']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]" in md
    # every section is there
    for sid in ("headline", "exp1", "exp2", "exp3", "exp4", "exp5", "exp6", "per-class", "status", "metadata"):
        assert f'id="{sid}"' in html, sid
    for title in (
        "Experiment 1",
        "Experiment 2",
        "Experiment 3",
        "Experiment 4",
        "Experiment 5",
        "Experiment 6",
        "Per-label AUC",
    ):
        assert title in text and title in md
    # experiment 6: one row per backbone, strategy and share; each strategy's paired difference to none
    e6 = next(r for r in res["exp6"] if r["model"] == "s4" and r["strategy"] == "self-supervised" and r["share"] == 50)
    d6 = e6["difference_to_none"]
    assert f"{e6['value']:.3f}" in text and "supervised (rhythm)" in text and "none (random weights)" in text
    assert f"[{d6['ci'][0]:+.3f}, {d6['ci'][1]:+.3f}]" in text and "s4" in text
    # experiment numbers: exp1 share rows, exp3 rates, exp5 inputs, exp4 ECE of the uncalibrated model
    e1 = next(r for r in res["exp1"]["fixed_test"] if r["share"] == 30 and r["arm"] == "standalone")
    assert f"{e1['value']:.3f}" in text and "fixed test fold" in text and "30 %" in text
    assert "250 Hz" in text and "log-spectrum" in text and "stft" in text
    ece = res["exp4"][0]["methods"]["uncalibrated"]["ece"]
    assert f"{ece['value']:.4f}" in text and "isotonic" in text
    # per-class table: n_pos and both arms' AUC, the better one highlighted where the paired CI excludes 0,
    # the label without positives says so
    pc = next(p for p in h["per_class"] if p["n_pos"] > 0)
    assert pc["label"] in text and f"{pc['finetuned']:.3f}" in text and f"{pc['standalone']:.3f}" in text
    win = next(p for p in h["per_class"] if p["n_pos"] and p["difference"]["ci"][0] > 0)
    assert re.search(r'<td class="num better">' + re.escape(f"{win['finetuned']:.3f}"), html)
    assert "no positives" in text
    # status and metadata
    assert "exp5/stft/finetuned/s2" in text and "loss is nan at epoch 3" in text
    assert "134 of 137 runs done" in text
    assert res["study"]["spec_digest"] in text and "studies/ptbxl_to_g12ec.toml" in text
    assert "torch 2.13.0" in text and "52 h 07 min" in text


def test_html_is_self_contained(full):
    html = full[2]["html"].read_text()
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) >= 10 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.findall(r"url\((?!data:)", html)
    assert "<style>" in html


@pytest.mark.usefixtures("undrawn_figures")
def test_missing_sections_say_not_run(tmp_path):
    d = _write(tmp_path, _minimal())
    paths = write_report(d)
    text = _text(paths["html"].read_text())
    md = paths["markdown"].read_text()
    for sid in ("headline", "exp1", "exp2", "exp3", "exp4", "exp5", "exp6", "per-class"):
        body = re.search(rf'id="{sid}">(.*?)</section>', paths["html"].read_text(), re.S).group(1)
        assert "not run" in body, sid
    assert text.count("not run") >= 8
    assert md.count("*not run*") >= 7
    assert set(paths) == {"dir", "html", "markdown"}  # no figure without data
    assert write_report(d)["html"].read_text() == paths["html"].read_text()  # rewritten in place, same page


@pytest.mark.usefixtures("undrawn_figures")
def test_disabled_experiment_and_nulls_pending(tmp_path):
    res = make_results()
    res["exp3"] = None  # experiment disabled
    del res["exp5"]
    res["status"].update(done=100, left=30, running=5)
    h = res["headline"][1]
    h["standalone"] = {"value": None, "ci": None, "sd": None, "values": [], "n": 0, "n_planned": 3}
    h["difference"] = {"value": None, "ci": None, "p": None}
    for r in res["exp1"]["rest"]:
        if r["share"] >= 70:
            r.update(value=None, ci=None, values=[], sd=None)
    res["exp2"][3]["pretrain_test_auc"] = {"value": None, "ci": None}
    res["exp4"][3] = {"protocol": "cinc2020", "arm": "standalone", "methods": {}, "reliability": {}}
    d = _write(tmp_path, res)
    paths = write_report(d)
    html = paths["html"].read_text()
    # figures are still drawn from what is there (the missing points are left out and marked)
    assert {"headline", "exp1", "exp2", "exp4_reliability_cinc2020"} <= set(paths)
    assert "exp3" not in paths and "exp5" not in paths
    assert "not run" in re.search(r'id="exp3">(.*?)</section>', html, re.S).group(1)
    assert "not run" in re.search(r'id="exp5">(.*?)</section>', html, re.S).group(1)
    head = re.search(r'id="headline">(.*?)</section>', html, re.S).group(1)
    assert "pending" in head and "failed" in head  # 35 runs left and one failure: "pending or failed"
    assert "pending" in re.search(r'id="exp1">(.*?)</section>', html, re.S).group(1)
    assert "pending" in re.search(r'id="exp4">(.*?)</section>', html, re.S).group(1)
    # the other protocol's numbers are still shown
    assert f"{res['headline'][0]['difference']['value']:+.3f}" in html


@pytest.mark.usefixtures("undrawn_figures")
def test_all_done_with_failures_says_failed(tmp_path):
    res = make_results()
    res["status"].update(total=137, done=136, failed=1, running=0, left=0)
    res["exp2"][0]["finetuned"] = {"value": None, "ci": None, "values": [], "n": 0, "n_planned": 3}
    d = _write(tmp_path, res)
    html = write_report(d)["html"].read_text()
    body = re.search(r'id="exp2">(.*?)</section>', html, re.S).group(1)
    assert re.search(r'class="num missing">failed', body)


def test_weird_values_do_not_crash(tmp_path):
    res = make_results()
    res["headline"][0]["finetuned"] = {"value": "NaN", "ci": [None, None]}
    res["headline"][0]["per_class"] = [{"label": "X"}, "junk", {"label": "Y", "n_pos": 3, "finetuned": 0.7}]
    res["exp1"] = {"protocol": "seed18", "rest": [{"share": "ten", "arm": "finetuned", "value": 0.8}], "fixed_test": []}
    res["exp3"] = [{"fs": None, "pretrain": 0.9}]
    res["exp4"][0]["reliability"]["uncalibrated"]["1AVB"] = {"count": [1, 2], "mean_pred": [None, 0.5]}
    res["reference"] = {"headline": "?"}
    res["status"] = {"failed_runs": [{"name": "x"}]}
    res["study"] = {"environment": {}}
    d = _write(tmp_path, res)
    paths = write_report(d)
    assert paths["html"].stat().st_size > 10_000


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "results.json: not found"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"format": "something-else/2"}), "\"format\" is 'something-else/2'"),
        (json.dumps({"study": {}}), '"format" is None'),
        (json.dumps({"format": FORMAT, "headline": {"a": 1}}), 'section "headline" must be a JSON array'),
    ],
)
def test_bad_study_dir_errors_name_the_file(tmp_path, content, match):
    d = tmp_path / "s"
    d.mkdir()
    if content is not None:
        (d / "results.json").write_text(content)
    with pytest.raises(ReportError, match=re.escape(match)) as exc:
        write_report(d)
    assert str(d / "results.json") in str(exc.value)
    assert not (d / "report").exists()


def test_not_a_directory(tmp_path):
    with pytest.raises(ReportError, match="not a directory"):
        write_report(tmp_path / "nope")


def test_cli(tmp_path, capsys):
    d = _write(tmp_path, _minimal())
    assert main(["report", str(d)]) == 0
    out = capsys.readouterr().out
    assert str(d / "report" / "index.html") in out and (d / "report" / "report.md").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "self-contained" in capsys.readouterr().out


def test_cli_open_uses_webbrowser(tmp_path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    d = _write(tmp_path, _minimal())
    assert main(["report", str(d), "--open"]) == 0
    assert opened == [(d / "report" / "index.html").resolve().as_uri()]


# ---------------------------------------------------------------------------------------------
# screenshot


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, png: Path, height: int = 9000, width: int = 1400) -> None:
    """Render ``html`` in headless Chromium to ``png`` (no network, throwaway profile)."""
    exe = _chromium()
    assert exe is not None
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)


def test_screenshot_is_not_blank(full, tmp_path):
    if _chromium() is None:
        pytest.skip(
            "no Chromium found (chromium / chromium-browser / google-chrome on PATH): "
            "`apt-get install chromium` to run the screenshot test"
        )
    from PIL import Image

    html = full[2]["html"]
    png = tmp_path / "shot.png"
    screenshot(html, png, height=6000)
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert img.shape[0] == 6000 and img.shape[1] == 1400
    # not blank: real variation, several distinct colours (hero, cards, figures), and the page's
    # content reaches far down (the bottom third is not a uniform background)
    assert img.std() > 20
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 200
    assert img[4000:].std() > 10
    # the hero banner is dark blue, the cards white
    assert img[40:120, 100:600].mean() < 120
    assert (img[800:5000] > 250).all(axis=2).mean() > 0.3


def test_reliability_grid_leaves_out_labels_without_positives():
    from ecg_transfer.report.figures import top_labels

    def bins(pos):  # one bin holding 10 records, `pos` of them positive
        return {
            "strategy": "equal-width",
            "lower": [0.0],
            "upper": [1.0],
            "count": [10],
            "mean_pred": [0.5],
            "frac_pos": [pos / 10],
        }

    entry = {"reliability": {"uncalibrated": {"A": bins(3), "B": bins(0), "C": bins(5)}}}
    assert top_labels(entry, k=4) == [("C", 5), ("A", 3)]


# ---------------------------------------------------------------------------------------------
# the report never contradicts itself and never oversells (issue 11, section 2)


def _section_html(html: str, sid: str) -> str:
    return re.search(rf'id="{sid}">(.*?)</section>', html, re.S).group(1)


def _small_study() -> dict:
    """The seed18 headline of a tiny target: 3 test records, its macro AUC averaging 3 of 18 labels."""
    res = make_results()
    h = res["headline"][0]
    scope = {"n_test": 3, "n_test_min": 3, "labels_scored": 3, "n_labels": 18}
    h.update(n_test=3, labels_scored=3, n_labels=18)
    for k in ("finetuned", "standalone", "difference"):
        h[k].update(scope)
    for r in res["exp1"]["rest"]:
        r.update(n_test=5, n_test_min=4, labels_scored=2, labels_scored_max=4, n_labels=18)
    for e in res["exp4"]:
        if e["protocol"] == "seed18":
            e["n_test"] = 3
    res["pretrain"]["test_macro_auc"].update(n_test=12, labels_scored=5, n_labels=44)
    return res


@pytest.mark.usefixtures("undrawn_figures")
def test_small_test_sets_and_labels_scored_are_shown_beside_every_macro_value(tmp_path):
    paths = write_report(_write(tmp_path, _small_study()))
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    head = _text(_section_html(html, "headline"))
    card = _text(re.search(r'<div class="kpi">(.*?)<div class="verdict', html, re.S).group(1))
    assert "3 of 18 labels scored" in card and "only 3 test records" in card  # the seed18 card
    table = _text(re.search(r"<table>.*?</table>", _section_html(html, "headline"), re.S).group(0))
    assert table.count("3 of 18 labels scored") >= 3 and table.count("only 3 test records") >= 3
    assert "23 of 24 labels scored" in table and "only 1034" not in table  # the other protocol: no warning
    assert "5 of 44 labels scored" in head and "only 12 test records" in head  # the pre-training (one run)
    e1 = _text(_section_html(html, "exp1"))
    assert "2–4 of 18 labels scored" in e1 and "only 4 test records" in e1
    assert "18 of 18 labels scored" in e1  # the fixed test fold: every label scored, and it says so
    e4 = _text(_section_html(html, "exp4"))
    assert "only 3 test records" in e4
    per = _text(_section_html(html, "per-class"))
    assert "only 3 test records" in per
    assert "3 of 18 labels scored" in md and "only 3 test records" in md and "2–4 of 18 labels scored" in md


@pytest.mark.usefixtures("undrawn_figures")
def test_labels_learnt_from_few_training_records_are_said_beside_the_value(tmp_path):
    """A small target share leaves rare labels a handful of training positives: the scope of each
    value it enters says how many (from the runs' label_counts.json), and nothing where none did."""
    res = _small_study()
    h = res["headline"][0]
    for k in ("finetuned", "standalone", "difference"):
        h[k]["labels_few_train"] = 7
    for r in res["exp1"]["rest"]:
        r["labels_few_train"] = 11
    res["pretrain"]["test_macro_auc"]["labels_few_train"] = 0
    paths = write_report(_write(tmp_path, res))
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    from html import unescape

    table = unescape(_text(re.search(r"<table>.*?</table>", _section_html(html, "headline"), re.S).group(0)))
    assert table.count("7 of 18 labels learnt from < 10 training positives") == 3  # both arms and the difference
    assert "11 of 18 labels learnt from < 10 training positives" in unescape(_text(_section_html(html, "exp1")))
    assert "of 44 labels learnt from" not in html  # the pre-training: none under the floor, nothing said
    assert "7 of 18 labels learnt from < 10 training positives" in md


def _cells_of(html: str, sid: str) -> list[str]:
    return re.findall(r'<td class="([^"]*)">([^<]*)', _section_html(html, sid))


@pytest.mark.usefixtures("undrawn_figures")
def test_winner_is_highlighted_only_when_its_paired_ci_excludes_zero(tmp_path):
    res = make_results()
    h0, h1 = res["headline"]
    h0["difference"].update(value=0.043, ci=[0.031, 0.056])  # excludes 0: fine-tuned highlighted
    h1["difference"].update(value=0.032, ci=[-0.004, 0.07], p=0.09)  # includes 0: nobody highlighted
    for r in res["exp1"]["difference"]["fixed_test"]:
        r.update(ci=[-0.01, 0.2] if r["share"] == 30 else [0.01, 0.2])
    html = write_report(_write(tmp_path, res))["html"].read_text()
    rows_ = re.findall(
        r"<tr>(.*?)</tr>", re.search(r"<table>.*?</table>", _section_html(html, "headline"), re.S).group(0), re.S
    )
    seed18 = next(r for r in rows_ if ">seed18<" in r)
    cinc = next(r for r in rows_ if ">cinc2020<" in r)
    assert f'class="num better">{h0["finetuned"]["value"]:.3f}' in seed18
    assert "better" not in cinc
    e1 = _section_html(html, "exp1")
    fixed = [r for r in re.findall(r"<tr>(.*?)</tr>", e1, re.S) if "fixed test fold" in r]
    at30 = next(r for r in fixed if ">30 %<" in r)
    assert "better" not in at30 and all("better" in r for r in fixed if r is not at30)
    # the per-label table: a label whose difference CI includes 0 is never highlighted
    per = _section_html(html, "per-class")
    for p in h0["per_class"]:
        if p.get("difference") and p["difference"]["ci"][0] <= 0 <= p["difference"]["ci"][1]:
            row = next(r for r in re.findall(r"<tr>(.*?)</tr>", per, re.S) if f">{p['label']}<" in r)
            assert "better" not in row, p["label"]


@pytest.mark.usefixtures("undrawn_figures")
def test_difference_without_a_paired_ci_highlights_nothing(tmp_path):
    """Results written before paired differences existed: point values only, no winner named."""
    res = make_results()
    for row in res["headline"]:
        del row["difference"]["ci"]
        del row["metric_differences"]
        for p in row["per_class"]:
            p.pop("difference", None)
    del res["exp1"]["difference"]
    html = write_report(_write(tmp_path, res))["html"].read_text()
    for sid in ("headline", "exp1", "per-class"):
        assert 'class="num better"' not in _section_html(html, sid), sid


@pytest.mark.usefixtures("undrawn_figures")
def test_challenge_metric_is_shown_or_says_why_not(tmp_path):
    res = make_results()
    res["headline"][0]["metrics"]["finetuned"].pop("challenge")
    res["headline"][0]["metrics"]["standalone"].pop("challenge")
    res["headline"][0]["challenge_note"] = "no label of this run is among the challenge's 24 scored classes"
    html = write_report(_write(tmp_path, res))["html"].read_text()
    other = _text(
        re.search(
            r"<summary>Other metrics: AUPRC, challenge metric, Brier, ECE</summary>(.*?)</details>", html, re.S
        ).group(1)
    )
    c = res["headline"][1]["metrics"]["finetuned"]["challenge"]
    assert other.count("challenge metric") == 2 + 1  # both protocols' rows and the caption
    assert f"{c['value']:.3f}" in other
    assert "not computed: no label of this run is among" in other


@pytest.mark.usefixtures("undrawn_figures")
def test_original_numbers_stand_only_beside_their_protocol(tmp_path):
    res = make_results()
    paths = write_report(_write(tmp_path, res))
    html = paths["html"].read_text()
    rows_ = re.findall(
        r"<tr>(.*?)</tr>", re.search(r"<table>.*?</table>", _section_html(html, "headline"), re.S).group(0), re.S
    )
    assert "original 0.919" in next(r for r in rows_ if ">seed18<" in r)
    assert not re.search(r"original \d", next(r for r in rows_ if ">cinc2020<" in r))
    # experiments on another protocol than the original's: no original numbers beside them
    res["exp1"]["protocol"] = "cinc2020"
    for key in ("exp2", "exp3", "exp5"):
        for r in res[key]:
            r["protocol"] = "cinc2020"
    html = write_report(_write(tmp_path, res, "other"))["html"].read_text()
    assert not re.search(r"original \d", _text(_section_html(html, "exp1")))
    e3 = _text(_section_html(html, "exp3"))
    assert "original 0.490" not in e3 and "original 0.930" in e3  # PTB-XL pre-training numbers stay


@pytest.mark.usefixtures("undrawn_figures")
def test_machinery_check_says_so_in_the_header(tmp_path):
    res = make_results()
    res["study"].update(profile="smoke")
    del res["study"]["machinery_check"]  # older results: the profile name decides
    paths = write_report(_write(tmp_path, res))
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    hero = re.search(r'<header class="hero">(.*?)</header>', html, re.S).group(1)
    assert hero.index('class="machinery"') < hero.index("<h1>")  # above the title
    assert "Machinery check — not an answer" in hero and "say nothing about whether pre-training helps" in hero
    assert md.splitlines()[2].startswith("> ## ⚠ MACHINERY CHECK")
    # the resolved spec's flag wins over the profile name
    res["study"].update(profile="laptop", machinery_check=True)
    assert 'class="machinery"' in write_report(_write(tmp_path, res, "flag"))["html"].read_text()
    res["study"].update(profile="smoke", machinery_check=False)
    assert 'class="machinery"' not in write_report(_write(tmp_path, res, "noflag"))["html"].read_text()
    res["study"].update(profile=None, machinery_check=False)


@pytest.mark.usefixtures("undrawn_figures")
def test_method_note_p_value_ties_and_sampling_rate_records(tmp_path):
    res = make_results()
    res["headline"][0]["difference"].update(value=0.02, ci=[0.0, 0.05], p=0.959, ties_at_zero=0.48)
    res["statistics"]["fallbacks"] = [
        {
            "where": "exp1-rest/share90/repeat0/seed18/finetuned/s0",
            "n_test": 4,
            "values": 3,
            "reason": "pinned",
            "variation_kept": 0.0,
            "note": "...",
        },
        {"where": "headline seed18", "n_test": 3, "values": 1, "reason": "impossible"},
    ]
    paths = write_report(_write(tmp_path, res))
    head = _text(_section_html(paths["html"].read_text(), "headline"))
    assert "How the numbers are made" in head and "PTB-XL benchmark rule" in head
    assert "inverting the percentile interval" in head
    assert "rule not applied to 2 test sets" in head and "where it would pin the test set" in head
    assert (
        "exp1-rest/share90/repeat0/seed18/finetuned/s0 (4 records, 3 values): the rule would keep 0 % of the "
        "variation; headline seed18 (3 records): the rule could not be met."
    ) in head
    assert "p = 0.959 (48 % of resamples tie at 0)" in head
    assert "no clear difference" in head
    e3 = _text(_section_html(paths["html"].read_text(), "exp3"))
    assert "2,158 test records" in e3 and "2,163 test records" in e3 and "1,034 test records" in e3
    assert "5 test and 13 validation records missing at 500 Hz" in e3
    md = paths["markdown"].read_text()
    assert "p = 0.959 (48 % of resamples tie at 0)" in md and "PTB-XL benchmark rule" in md


def test_per_label_table_is_not_squeezed_beside_its_figure(full):
    html = full[2]["html"].read_text()
    per = _section_html(html, "per-class")
    assert "grid2" not in per and 'class="perclass-fig"' in per


# ----- figures: nothing drawn over anything ---------------------------------------------------


@pytest.fixture
def kept_figures(monkeypatch):
    """The report's figures as matplotlib figures (not PNG bytes), to measure what is where."""
    import matplotlib.pyplot as plt

    from ecg_transfer.report import figures as F

    kept: list = []
    monkeypatch.setattr(F, "_png", lambda fig: kept.append(fig) or fig)
    yield F
    for f in kept:
        plt.close(f)


def _points(ax) -> np.ndarray:
    """Display coordinates of every marker drawn in ``ax`` (lines with markers and scatter points)."""
    pts = [
        ax.transData.transform(line.get_xydata())
        for line in ax.get_lines()
        if line.get_marker() not in (None, "None", "", " ") and len(line.get_xydata())
    ]
    pts += [ax.transData.transform(c.get_offsets()) for c in ax.collections if len(c.get_offsets())]
    return np.vstack(pts) if pts else np.zeros((0, 2))


def _inside(bbox, pts: np.ndarray, pad: float = 3.0) -> np.ndarray:
    return (
        (pts[:, 0] > bbox.x0 - pad)
        & (pts[:, 0] < bbox.x1 + pad)
        & (pts[:, 1] > bbox.y0 - pad)
        & (pts[:, 1] < bbox.y1 + pad)
    )


def test_headline_value_labels_are_not_drawn_over_markers(kept_figures):
    res = make_results()
    res["headline"][0]["finetuned"]["value"] = 0.921  # the original's 0.919 right beside it
    fig = kept_figures.headline_figure(res)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        pts = _points(ax)
        for t in ax.texts:
            assert not _inside(t.get_window_extent(r), pts).any(), t.get_text()


def test_per_label_legend_covers_no_point(kept_figures):
    row = copy.deepcopy(make_results()["headline"][0])
    row["per_class"][-2].update(finetuned=0.52, standalone=0.55)  # bottom left, where a legend would go
    fig = kept_figures.per_class_figure(row, "G12EC")
    fig.canvas.draw()
    ax = fig.axes[0]
    r = fig.canvas.get_renderer()
    legend = (fig.legends or [ax.get_legend()])[0].get_window_extent(r)
    assert not _inside(legend, _points(ax), 0).any()
    assert legend.y1 < ax.xaxis.label.get_window_extent(r).y0  # below the axis title, not on it


def test_close_shares_do_not_overlap_on_the_source_share_axis(kept_figures):
    res = make_results()
    res["exp2"] = res["exp2"][:2]
    res["exp2"][0]["share"], res["exp2"][1]["share"] = 5, 10  # the quick profile's shares, beside 25-100
    fig = kept_figures.exp2_figure(res)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(r) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) >= 2
        for a, b in zip(boxes, boxes[1:]):
            assert a.x1 < b.x0, [t.get_text() for t in ax.get_xticklabels()]


def test_sampling_rate_figure_names_its_test_records(kept_figures):
    fig = kept_figures.exp3_figure(make_results())
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "250 Hz\nPTB-XL test 2,158\nG12EC test 1,034" in labels
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in fig.axes[0].get_xticklabels()]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))


def test_reliability_curves_styles_count_axis_and_singular(kept_figures):
    from ecg_transfer.report.figures import METHOD_COLORS

    def bins(pos):
        return {
            "strategy": "equal-width",
            "lower": [0.0, 0.5],
            "upper": [0.5, 1.0],
            "count": [8, 2],
            "mean_pred": [0.2, 0.7],
            "frac_pos": [0.0, pos / 2],
        }

    entry = {
        "arm": "finetuned",
        "reliability_seed": 0,
        "reliability": {m: {"A": bins(1), "B": bins(2)} for m in ("uncalibrated", "temperature")},
    }
    fig = kept_figures.reliability_figure([entry])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "A · 1 positive" in titles and "B · 2 positives" in titles
    panel = next(ax for ax in fig.axes if ax.get_title() == "A · 1 positive")
    style = {line.get_color(): line.get_linestyle() for line in panel.get_lines()}
    assert style[METHOD_COLORS["uncalibrated"]] == "-"
    assert style[METHOD_COLORS["temperature"]] not in ("-", "None")  # calibrators: another line style
    # the bars have their own axis: a twin of the panel whose ticks say the largest count
    twins = [ax for ax in fig.axes if ax is not panel and ax.bbox.bounds == panel.bbox.bounds]
    assert twins and "8" in [t.get_text() for t in twins[0].get_yticklabels()]
    assert "seed 0" in fig.axes[0].get_ylabel()


def test_html_escapes_names_from_results_json():
    """Names come from results.json, which anyone can edit: a study, dataset or label called
    ``<script>`` is shown as text, in the template's header and in the tables alike."""
    from ecg_transfer.report.html import render_html

    evil = "<script>alert(1)</script>"
    res = make_results()
    res["study"]["name"] = evil
    res["study"]["target"]["name"] = "G12EC" + evil
    res["study"]["model"] = evil
    res["headline"][0]["per_class"][0]["label"] = evil
    html = render_html(res, {})
    assert "<script" not in html.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<title>Study report: {escaped}</title>" in html  # the template's autoescape
    assert f"G12EC{escaped}: does pre-training help?</h1>" in html and f"model {escaped}</span>" in html
    assert f'<td class="label">{escaped}' in _section_html(html, "per-class")  # the table model's cells


def test_page_carries_the_css_file_unchanged(full):
    from importlib.resources import files

    css = files("ecg_transfer.templates").joinpath("report.css").read_text(encoding="utf-8")
    html = full[2]["html"].read_text()
    assert re.search(r"<style>\n(.*?)</style>", html, re.S).group(1) == css


def test_study_metadata_shows_the_settings_that_were_set_not_a_row_of_nulls():
    """The report's metadata listed ``all_epochs=null, epochs=null, ...`` before the fine-tuning
    policy: unset keys are the defaults and hid what was set."""
    from ecg_transfer.report.tables import _compact

    shown = _compact(
        {"all_epochs": None, "policy": "gradual", "stages": [{"epochs": 2, "frozen_bn": None, "lr": 0.01}], "lr": None}
    )
    assert shown == 'policy="gradual", stages=[{"epochs":2,"lr":0.01}]'
