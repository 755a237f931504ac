"""``ecg-transfer predict``, ``export``, ``model-card`` and ``explain``: using a finished run.

Exit codes of ``predict``: 0 every record predicted; 3 some records failed (listed on stderr and in
the errors file, the others written); 2 no record predicted, or a usage error (bad run directory,
missing calibrator, bad threshold rule).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..evaluation.cli import METHODS

if TYPE_CHECKING:
    from ..datasets.base import RecordProblem
    from .explain import Explanation


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a finished run directory (holding model.pt)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="WFDB or CinC-format records (NAME, NAME.hea, NAME.dat or NAME.mat), folders of them "
        "(searched recursively, also for .npy), or .npy arrays in mV: (leads, samples), "
        "(samples, leads) or (records, leads, samples), at --fs Hz",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("predictions.csv"),
        help="predictions CSV (default predictions.csv); beside it OUT.json (thresholds, settings, "
        "errors) and OUT_errors.csv",
    )
    p.add_argument("--fs", type=float, default=None, help="sampling rate of .npy inputs in Hz (required for them)")
    p.add_argument(
        "--calibrate",
        default=None,
        metavar="METHOD",
        choices=METHODS,
        help=f"apply the run's calibrator ({', '.join(METHODS)}), fitted on validation by "
        "`ecg-transfer evaluate RUN_DIR --calibrate METHOD`",
    )
    p.add_argument(
        "--threshold",
        default="fmax",
        metavar="RULE",
        help="decision thresholds: fmax (per class F1-maximising on the validation predictions, "
        "default), sensitivity:S (per class the largest threshold with validation sensitivity "
        ">= S), or a fixed number in [0, 1]",
    )
    p.add_argument("--batch-size", type=int, default=128, help="windows per forward pass (default 128)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")


def run_predict(args: argparse.Namespace) -> int:
    from .predict import Predictor, exit_code, print_problem, sidecar_paths, write_outputs

    sidecar_paths(args.out)  # refuse a bad --out before any work
    predictor = Predictor.from_run(
        args.run_dir, calibrate=args.calibrate, threshold=args.threshold, batch_size=args.batch_size, device=args.device
    )
    for note in predictor.thresholds.notes if predictor.thresholds else ():
        print(f"ecg-transfer predict: note: {note}", file=sys.stderr)
    result = predictor.predict_paths(args.inputs, fs=args.fs, on_error=print_problem)
    if not result.record_ids:  # empty files would pass for results: write none
        print(
            f"ecg-transfer predict: error: no record could be predicted ({len(result.errors)} failed, listed "
            f"above); nothing written to {args.out}",
            file=sys.stderr,
        )
        return exit_code(result)
    paths = write_outputs(args.out, result, predictor)
    print(
        f"{len(result.record_ids)} record(s) predicted, {len(result.errors)} failed; written: {paths['predictions']} "
        f"(thresholds {predictor.describe()['thresholds']['rule']}: {paths['metadata']}"
        + (f"; errors: {paths['errors']})" if result.errors else ")")
    )
    return exit_code(result)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a finished run directory (holding model.pt)")
    p.add_argument(
        "--format",
        dest="fmt",
        required=True,
        choices=["onnx", "torchscript"],
        help="onnx (needs the export extra: onnx, onnxruntime, onnxscript) or torchscript",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write (default RUN_DIR/export/model.onnx or model.torchscript.pt); "
        "OUT.json beside it says how to use it",
    )
    p.add_argument(
        "--threshold",
        default=None,
        metavar="RULE",
        help="also write decision thresholds into the JSON (fmax, sensitivity:S or a number)",
    )
    p.add_argument(
        "--calibrate",
        default=None,
        metavar="METHOD",
        choices=METHODS,
        help="also write the run's fitted calibrator into the JSON (applied by the caller)",
    )
    p.add_argument(
        "--exporter",
        default="auto",
        choices=["auto", "dynamo", "legacy"],
        help="ONNX exporter: torch.export-based (dynamo, needs onnxscript), the legacy TorchScript-"
        "based one, or auto (dynamo when onnxscript is installed)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's default)")


def run_export(args: argparse.Namespace) -> int:
    from .export import export_model

    res = export_model(
        args.run_dir,
        args.fmt,
        args.out,
        threshold=args.threshold,
        calibrate=args.calibrate,
        exporter=args.exporter,
        opset=args.opset,
    )
    v = res.metadata.get("verification") or {}
    check = (
        f"max |difference| to PyTorch {v['max_abs_diff']:.2g} on {v['windows']} windows"
        if "max_abs_diff" in v
        else f"not verified ({v.get('skipped', 'skipped')})"
    )
    print(f"{res.path} ({args.fmt}, {res.metadata['exporter']}): {check}; how to use it: {res.metadata_path}")
    return 0


def add_model_card_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run directory")
    p.add_argument(
        "--resamples",
        type=int,
        default=200,
        help="bootstrap resamples for the macro AUC interval when evaluation/metrics.json is absent (default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def run_model_card(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .modelcard import write_model_card

    if not args.run_dir.is_dir():
        raise ConfigError(f"{args.run_dir} is not a run directory")
    print(write_model_card(args.run_dir, n_resamples=args.resamples, seed=args.seed))
    return 0


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a finished run directory (holding model.pt)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RECORD",
        help="records as predict takes them: WFDB or CinC-format records, folders of them, .npy arrays "
        "in mV (with --fs)",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="labels to explain (default: each record's --top most probable labels)",
    )
    p.add_argument("--top", type=int, default=3, help="without --labels: how many of the most probable labels (3)")
    p.add_argument(
        "--method",
        default="ig",
        choices=["ig", "gradcam"],
        help="ig: integrated gradients, per lead and sample, any model and input (default); gradcam: "
        "Grad-CAM of the body's last layer, over time only (convolutional models on time-domain input)",
    )
    p.add_argument("--steps", type=int, default=50, help="integrated gradients: integration steps (default 50)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("explanations"),
        help="folder for RECORD.json and RECORD__LABEL.png (default explanations/)",
    )
    p.add_argument("--fs", type=float, default=None, help="sampling rate of .npy inputs in Hz (required for them)")


def run_explain(args: argparse.Namespace) -> int:
    from .explain import explain_inputs

    def skipped(problem: RecordProblem) -> None:
        print(f"ecg-transfer explain: skipped {problem.record}: {problem.problem}", file=sys.stderr)

    done = 0  # records explained, counted as they come

    def explained(record_id: str, explanations: list[Explanation], paths: list[Path]) -> None:
        nonlocal done
        done += 1
        labels = ", ".join(f"{e.label} p={e.probability:.3f}" for e in explanations)
        print(f"{record_id}: {labels} -> {paths[0]}")

    found = explain_inputs(
        args.run_dir,
        args.inputs,
        labels=args.labels,
        method=args.method,
        steps=args.steps,
        top=args.top,
        fs=args.fs,
        out=args.out,
        on_error=skipped,
        on_record=explained,
    )
    failed = len(found.errors)
    print(f"{done} record(s) explained, {failed} failed; written to {args.out}")
    return 2 if not done else (3 if failed else 0)
