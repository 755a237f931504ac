"""Smoke test of the declared version floors (run by .ci/floors.sh in a venv holding exactly them).

Not collected by pytest (no ``test_`` prefix) and needs no test tools: a tiny study through the CLI
on WFDB/CinC trees written here (caches, pre-training, fine-tuning, standalone, a spectrum input,
calibration, bootstrap evaluation, the report with its plots and explanation gallery), then one of
its runs predicted, exported (ONNX, both exporters, and TorchScript, each checked against PyTorch
by the exporter), explained and carded; first, the console script renders the configuration
reference, compared with docs/configuration.md, and must print nothing on stderr. Every step asserts on what it wrote, so a floor that installs but misbehaves
fails here. ``python tests/floors_smoke.py [WORKDIR]``; prints the installed versions and timings.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # wfdb_fixtures: the test suite's own tree writers

SPEC = """
[study]
name = "floors"
out = "{out}"
model = "fcn_wang"
model_kwargs = {{filters = [8, 8], kernel_sizes = [5, 3], head_hidden = [8], head_dropout = 0.1}}
fs = 100
seeds = [0]
bootstrap = 50
cache_dir = "{data}/cache"
lengths = [1, 2]

[source]
root = "{data}/ptbxl"
epochs = 1
allow_missing = true

[target]
root = "{data}/g12ec"

[finetune]
policy = "gradual"
stages = [{{epochs = 1, train = "head", lr = 0.01}}, {{epochs = 1, train = "all", lr = [1e-4, 1e-3]}}]

[standalone]
epochs = 1

[experiments.target_share]
enabled = false

[experiments.source_share]
enabled = false

[experiments.sampling_rate]
enabled = false

[experiments.calibration]
methods = ["temperature", "isotonic"]

[experiments.frequency]
enabled = true
inputs = ["stft"]
"""

DISTRIBUTIONS = [
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "wfdb",
    "matplotlib",
    "tqdm",
    "iterative-stratification",
    "pydantic",
    "pydantic-core",
    "pyarrow",
    "filelock",
    "jinja2",
    "captum",
    "onnx",
    "onnxruntime",
    "onnxscript",
]


def cli(*args: str) -> str:
    """``ecg-transfer ARGS`` in this process; its stdout; a non-zero exit code fails the smoke test
    (with what the command printed; its notes on stderr are shown only then)."""
    from ecg_transfer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if code != 0:
        raise SystemExit(f"ecg-transfer {' '.join(args)} exited {code}:\n{out.getvalue()}{err.getvalue()}")
    return out.getvalue()


def step(name: str, t0: list[float]) -> None:
    now = time.perf_counter()
    print(f"  {name}: {now - t0[0]:.1f} s", flush=True)
    t0[0] = now


def write_data(data: Path) -> None:
    from wfdb_fixtures import make_cinc_tree, make_ptbxl_tree

    make_ptbxl_tree(data / "ptbxl", n_records=60)
    make_cinc_tree(data / "g12ec", n_records=40)


def headline_run(study: Path) -> Path:
    """The fine-tuned run of the headline experiment (a finished run directory)."""
    plan = json.loads((study / "plan.json").read_text())["runs"]
    key = next(
        r["key"]
        for r in plan
        if any(u["name"].startswith("headline/") and "/finetuned/" in u["name"] for u in r["uses"])
    )
    return study / "runs" / key


def check_study(study: Path) -> None:
    res = json.loads((study / "results.json").read_text())
    assert res["status"]["failed"] == 0 and res["status"]["done"] == res["status"]["total"], res["status"]
    assert res["headline"] and all(r["finetuned"]["value"] is not None for r in res["headline"])
    assert [r["input"] for r in res["exp5"]] == ["time", "stft"] and res["exp5"][1]["pretrain"]["value"] is not None
    assert set(res["exp4"][0]["methods"]) == {"uncalibrated", "temperature", "isotonic"}
    html = (study / "report" / "index.html").read_text()
    assert "Headline" in html and "data:image/png;base64," in html
    gallery = json.loads((study / "explain" / "gallery.json").read_text())
    assert gallery["entries"] and all((study / e["png"]).is_file() for e in gallery["entries"])


def check_run(run: Path, data: Path, out: Path) -> None:
    """Predict, export (three ways), explain and card one finished run."""
    records = data / "g12ec"
    cli("predict", str(run), str(records), "--out", str(out / "pred.csv"))
    import pandas as pd

    pred = pd.read_csv(out / "pred.csv")
    assert len(pred) == 40, pred.shape
    for fmt, exporter in (("onnx", "dynamo"), ("onnx", "legacy"), ("torchscript", "auto")):
        path = out / f"model.{exporter}.{fmt}"
        cli("export", str(run), "--format", fmt, "--exporter", exporter, "--out", str(path))
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        assert meta["verification"]["max_abs_diff"] < 1e-5, (fmt, exporter, meta["verification"])
    cli("explain", str(run), str(records / "E00001"), "--out", str(out / "explain"))
    assert list((out / "explain").glob("E00001__*.png")) and (out / "explain" / "E00001.json").is_file()
    cli("model-card", str(run))
    assert "AUC" in (run / "MODEL_CARD.md").read_text()


def check_reference() -> None:
    """The console script starts without a word on stderr (no warning from a floor version) and the
    settings layer's schema (pydantic) renders the committed reference, byte for byte."""
    import subprocess

    exe = Path(sys.executable).parent / "ecg-transfer"
    proc = subprocess.run([str(exe), "config", "reference"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or proc.stderr:
        raise SystemExit(f"{exe} config reference exited {proc.returncode}, stderr:\n{proc.stderr}")
    docs = HERE.parent / "docs" / "configuration.md"
    if proc.stdout != docs.read_text():
        import difflib

        diff = "".join(
            list(
                difflib.unified_diff(
                    docs.read_text().splitlines(True),
                    proc.stdout.splitlines(True),
                    "docs/configuration.md",
                    "config reference",
                )
            )[:60]
        )
        raise SystemExit(f"the configuration reference differs at these versions:\n{diff}")


def main(argv: list[str]) -> int:
    for dist in DISTRIBUTIONS:
        try:
            print(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            print(f"{dist}: not installed")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(argv[0]) if argv else Path(tmp)
        data, study, out = work / "data", work / "study", work / "out"
        t0 = [time.perf_counter()]
        check_reference()
        step("config reference (console script)", t0)
        write_data(data)
        step("fixtures", t0)
        spec = work / "spec.toml"
        spec.write_text(SPEC.format(out=study.as_posix(), data=data.as_posix()))
        cli("study", "run", str(spec), "--no-progress", "--report")
        check_study(study)
        step("study (train, evaluate, report)", t0)
        check_run(headline_run(study), data, out)
        step("predict, export, explain, model card", t0)
    print("floors smoke test: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
