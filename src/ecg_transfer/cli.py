"""The ``ecg-transfer`` command line: one subcommand per step of the pipeline.

ecg-transfer download ptbxl|g12ec --root DIR       fetch a dataset from PhysioNet (checksummed)
ecg-transfer data summary --dataset D --root DIR   what a dataset holds and what is wrong in it
ecg-transfer data cache --dataset D --root DIR     build the memory-mapped signal cache
ecg-transfer data audit ROOT [ROOT ...]            duplicate signals within and across datasets
ecg-transfer train CONFIG --run-dir DIR            one run (pretrain, finetune, standalone are
                                                   the same with the transfer checks on)
ecg-transfer study run SPEC [--profile laptop]     the whole transfer study, resumable
ecg-transfer report STUDY_DIR                      the study's HTML + Markdown report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import ConfigError, EcgTransferError

if TYPE_CHECKING:  # the CLI imports its machinery lazily, per command
    from .datasets.task import TaskData
    from .settings import RunConfig
    from .training.run import RunResult
    from .training.ssl import SslData


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        required=True,
        choices=["ptbxl", "cinc", "g12ec"],
        help="ptbxl: a PTB-XL tree (ptbxl_database.csv, records100/...); "
        "cinc (alias g12ec): a folder of CinC 2020/2021-format records (*.hea + *.mat)",
    )
    p.add_argument("--root", required=True, type=Path, help="the dataset's folder")
    p.add_argument(
        "--fs",
        type=int,
        default=None,
        help="PTB-XL: which records to read, 100 (records100, default) or 500 (records500)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="PTB-XL at 500 Hz: use the records present when some are missing (says how many)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where signal caches live (default $ECG_TRANSFER_CACHE or ~/.cache/ecg-transfer)",
    )
    p.add_argument(
        "--strict", action="store_true", help="stop at the first bad record instead of skipping it and listing it"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from .datasets.summary import format_summary, summarise

    s = summarise(
        args.dataset,
        args.root,
        fs=args.fs,
        cache_dir=args.cache_dir,
        allow_missing=args.allow_missing,
        strict=args.strict,
        progress=not args.no_progress,
        signals=args.signals,
    )
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0


def _cmd_data_cache(args: argparse.Namespace) -> int:
    from .datasets.cache import load_or_build
    from .datasets.registry import open_dataset

    adapter = open_dataset(args.dataset, args.root, fs=args.fs, allow_missing=args.allow_missing, strict=args.strict)
    cached = load_or_build(
        adapter,
        fs=args.to_fs,
        seconds=args.seconds,
        cache_dir=args.cache_dir,
        strict=args.strict,
        progress=not args.no_progress,
        rebuild=args.rebuild,
        verify=args.verify,
    )
    meta = cached.meta
    checked = "every byte verified" if args.verify or cached.built else "sizes and sampled checksum verified"
    print(
        f"{cached.path}: {len(cached.table)} records, {cached.signals.n_leads} leads, "
        f"{meta['samples_per_lead']} samples per lead summed over the records at {cached.fs:g} Hz "
        f"({meta['store']['bytes'] / 2**20:.1f} MiB; "
        f"{'built' if cached.built else checked}), {len(cached.problems)} problem(s)"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """train / pretrain / standalone / finetune: the command's own checks, then :func:`api.train`
    (which loads the data, trains and writes the model card), then one line of results."""
    from .api import train
    from .training.config import load_config
    from .training.distributed import is_main_process

    config = load_config(args.config)
    _check_command(config, args)
    if args.command == "finetune":
        from .settings.run import finetune_default

        config = finetune_default(config)
    result = train(
        config,
        args.run_dir,
        init_from=args.init_from,
        resume=args.resume,
        progress=not args.no_progress,
        on_data=lambda data: _announce(config, data),
    )
    line = _result_line(config, result)
    if line and is_main_process():
        print(line)
    return 0


def _check_command(config: RunConfig, args: argparse.Namespace) -> None:
    """What the four training commands promise: finetune starts from a run, the others from random
    weights; an ``[ssl]`` table only with pretrain/train; a config names its data."""
    from .settings.run import ssl_refusal

    pretrained = args.init_from is not None or config.finetune.pretrained_run is not None
    if args.command == "finetune" and not pretrained:
        raise ConfigError("finetune needs a pre-trained run: --from RUN_DIR or finetune.pretrained_run in the config")
    if args.command in ("standalone", "pretrain") and pretrained:
        raise ConfigError(f"{args.command} starts from random weights: drop --from / finetune.pretrained_run")
    refusal = ssl_refusal(config, args.command, from_run=args.init_from is not None)
    if refusal:
        raise ConfigError(f"{args.config} {refusal}")
    if config.task is None:
        raise ConfigError(
            f"{args.config} has no [task] table: it must name the data to train on (see docs/configuration.md)"
        )


def _announce(config: RunConfig, data: TaskData | SslData) -> None:
    """What the run trains on, to stderr: the [ssl] sets' records, or the labels and split sizes."""
    from .training import ssl

    if isinstance(data, ssl.SslData):
        for src in data.sources:
            print(
                f"[ssl] {src['dataset']} {src['root']}: train {src['train']}, val {src['val']} records; "
                f"{src['left_out']} never read (test folds {src['test_folds']}, folds not listed, unreadable)",
                file=sys.stderr,
            )
        return
    left_out = data.left_out_line()  # records with none of the task's labels: the benchmark's rule
    print(
        f"{len(data.label_names)} labels; train {len(data.splits['train'])}, val {len(data.splits['val'])}, "
        f"test {len(data.splits['test'])} records{f' ({left_out})' if left_out else ''} at {config.fs:g} Hz",
        file=sys.stderr,
    )
    from .runfiles import FEW_TRAINING_POSITIVES, few_training_labels

    few = len(few_training_labels(dict(zip(data.label_names, data.Y[data.splits["train"]].sum(axis=0)))))
    if few:
        print(
            f"warning: {few} of {len(data.label_names)} labels have fewer than {FEW_TRAINING_POSITIVES} positive "
            "training records: their AUCs are unreliable (the model card names them). A larger task.train_fraction "
            "gives them more; task.min_count leaves out labels with fewer positives over all folds (at a share f "
            f"of the training folds, about {FEW_TRAINING_POSITIVES}/f of them)",
            file=sys.stderr,
        )


def _result_line(config: RunConfig, result: RunResult) -> str | None:
    """The run's last word: macro AUCs, or for an [ssl] run its loss and how to fine-tune it."""
    if config.ssl is None:

        def fmt(auc: float | None) -> str:
            return "n/a (no class with both positives and negatives)" if auc is None else f"{auc:.4f}"

        line = (
            f"{result.run_dir}: val macro AUC {fmt(result.val_macro_auc)}, test macro AUC {fmt(result.test_macro_auc)}"
        )
        if config.keep == "best-val" and result.kept_epoch is not None:
            line += f" (the weights of epoch {result.kept_epoch} of {len(result.history)}: best validation macro AUC)"
        return line
    if not result.history:
        return None
    last = result.history[-1]
    val = "n/a" if last["val_loss"] is None else f"{last['val_loss']:.4f}"
    return (
        f"{result.run_dir}: {config.ssl.method} SSL loss after epoch {last['epoch']}: train "
        f"{last['train_loss']:.4f}, val {val}; fine-tune it with `ecg-transfer finetune CONFIG --from "
        f"{result.run_dir}`"
    )


def _write_report(study_dir: Path) -> Path:
    from .report import write_report

    return Path(write_report(study_dir)["html"])


def _cmd_config_schema(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_json
    from .settings import json_schemas

    schemas = json_schemas()
    if args.out is None:
        print(json.dumps(schemas, indent=2))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        atomic_write_json(args.out / f"{name}.schema.json", schema)
        print(args.out / f"{name}.schema.json")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    from .settings import RunConfig, read_settings_file, spec_from_dict

    raw = read_settings_file(args.config)
    if {"study", "source", "target", "profiles"} & set(raw):  # a study spec
        try:
            spec = spec_from_dict(raw, path=args.config, profile=args.profile)
        except ConfigError as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
        print(json.dumps(spec.data, indent=2))
        return 0
    if args.profile:
        raise ConfigError(f"{args.config} is a run config: --profile applies to study specs only")
    try:
        config = RunConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    shown = {**config.to_dict(), "# stages (what runs)": [st.to_dict() for st in config.stages()]}
    print(json.dumps({**shown, **_finetune_stages(config)}, indent=2))
    return 0


def _finetune_stages(config: RunConfig) -> dict[str, object]:
    """With policy "none" one file serves ``train``/``standalone`` and ``finetune``, which turns it
    into the head-then-all preset: the stages ``finetune`` would run, or why it would refuse the file."""
    if config.finetune.policy != "none":
        return {}
    from .settings.run import finetune_default, ssl_refusal

    key = "# stages with `ecg-transfer finetune` (policy none becomes head-then-all)"
    refusal = ssl_refusal(config, "finetune")
    if refusal:
        return {key: f"refused: the file {refusal}"}
    try:
        return {key: [st.to_dict() for st in finetune_default(config).stages()]}
    except ConfigError as exc:
        return {key: f"refused: {exc}"}


def _add_config_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="check a run config or study spec: its JSON Schema, its resolved settings",
        description="Run configs and study specs are validated by one settings layer; these "
        "commands show what it accepts and what it makes of a file.",
    )
    csub = p.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND", required=True)
    q = csub.add_parser(
        "schema",
        help="JSON Schemas of run configs and study specs, for editors",
        description="Print (or write to --out DIR as run-config.schema.json and "
        "study-spec.schema.json) the JSON Schemas of run configs and study specs. "
        "Point a TOML editor at them (e.g. a `#:schema ./run-config.schema.json` "
        "first line with Taplo / Even Better TOML) to check files as you type.",
    )
    q.add_argument("--out", type=Path, default=None, metavar="DIR", help="write the two schema files into DIR")
    q.set_defaults(func=_cmd_config_schema)
    q = csub.add_parser(
        "reference",
        help="the configuration reference (Markdown), every key with its default",
        description="Print the configuration reference generated from the settings layer "
        "(the source of docs/configuration.md).",
    )
    q.set_defaults(
        func=lambda args: (
            print(__import__("ecg_transfer.settings.reference", fromlist=["x"]).reference_markdown(), end="") or 0
        )
    )
    q = csub.add_parser(
        "show",
        help="the resolved settings of a run config or study spec, defaults filled in",
        description="Validate CONFIG (a run config or a study spec, .toml or .json) and print "
        "every setting with its default filled in. For a run config, the stages it "
        "trains (fine-tuning presets resolved) are listed too, and with policy none (one file for "
        "standalone and finetune) the stages `finetune` would train, or why it would refuse the file.",
    )
    q.add_argument("config", type=Path, help="a run config or a study spec (.toml or .json)")
    q.add_argument("--profile", default=None, help="study specs: merge this [profiles.NAME] table first")
    q.set_defaults(func=_cmd_config_show)


_TRAIN_HELP = {
    "train": "train one model as the config says (pre-training, fine-tuning or standalone)",
    "pretrain": "train from random weights on the source dataset (e.g. PTB-XL); with an [ssl] table, "
    "self-supervised on its unlabelled signals",
    "finetune": "fine-tune a pre-trained run on the target: new head, then the policy's stages",
    "standalone": "train from random weights on the target, same split and evaluation as finetune",
}
_TRAIN_DESCRIPTION = (
    "CONFIG is a TOML or JSON run config: every key is validated and defaults to the "
    "PTB-XL benchmark recipe; its [task] table says which data, labels and folds. Every key, "
    "its default and what is allowed: `ecg-transfer config reference` (docs/configuration.md); "
    "the resolved settings of a file: `ecg-transfer config show CONFIG`."
)


def _add_download_parser(sub: argparse._SubParsersAction) -> None:
    """``download``: its options live beside the downloader, which also runs it."""
    from .datasets.download import add_download_arguments, run_download

    p = sub.add_parser(
        "download",
        help="download PTB-XL or G12EC from PhysioNet, resumable, checksummed",
        description="Download a dataset from PhysioNet into its own folder (--root DIR: DIR is the "
        "dataset's folder, as for `ecg-transfer data`; default data/ptbxl or data/g12ec), resuming "
        "partial files, retrying failures and verifying SHA256SUMS where published.",
    )
    add_download_arguments(p)
    p.set_defaults(func=run_download)


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """``evaluate``: its options live in evaluation/cli.py, next to the code that reads them."""
    from .evaluation.cli import add_evaluate_arguments, run_evaluate

    p = sub.add_parser(
        "evaluate",
        help="metrics with bootstrap CIs, calibration and paired comparisons of runs",
        description="Evaluate a run from its saved predictions: macro/per-class AUC, AUPRC, "
        "F-max, Brier, ECE and the CinC 2020 challenge metric with bootstrap CIs; "
        "calibrators fitted on validation predictions; reliability diagrams; paired "
        "bootstrap against another run. Writes RUN_DIR/evaluation/.",
    )
    add_evaluate_arguments(p)
    p.set_defaults(func=run_evaluate)


def _add_inference_parsers(sub: argparse._SubParsersAction) -> None:
    """``predict``, ``export``, ``model-card`` and ``explain``: the commands that use a trained run,
    whose options live in inference/cli.py."""
    from .inference.cli import (
        add_explain_arguments,
        add_export_arguments,
        add_model_card_arguments,
        add_predict_arguments,
        run_explain,
        run_export,
        run_model_card,
        run_predict,
    )

    p = sub.add_parser(
        "predict",
        help="predict new records (WFDB, CinC, folders, .npy) with a trained run",
        description="Predict WFDB / CinC-format records, folders of them or .npy arrays with a "
        "run: resampled to its rate, its standardisation, windows and aggregation, "
        "optionally its calibrator, thresholds chosen on its validation split. Exit "
        "code 0: all predicted; 3: some records failed (listed); 2: none predicted.",
    )
    add_predict_arguments(p)
    p.set_defaults(func=run_predict)
    p = sub.add_parser(
        "export",
        help="export a run's network to ONNX or TorchScript",
        description="Export the window-level network with the standardisation inside (raw mV "
        "windows in, per-window probabilities out, dynamic batch), checked against "
        "PyTorch; a JSON beside it says how to window, aggregate and threshold.",
    )
    add_export_arguments(p)
    p.set_defaults(func=run_export)
    p = sub.add_parser(
        "model-card",
        help="write RUN_DIR/MODEL_CARD.md (data, labels, metrics with CIs, limits)",
        description="Write the run's model card from its files; quotes evaluation/metrics.json "
        "when `ecg-transfer evaluate` has been run.",
    )
    add_model_card_arguments(p)
    p.set_defaults(func=run_model_card)
    p = sub.add_parser(
        "explain",
        help="why a run decided: per-lead, per-time attributions of records (PNG + JSON)",
        description="Attribute a run's record probabilities (its windows and aggregation) to the "
        "leads and samples of each record: integrated gradients (captum; baseline a "
        "flat 0 mV line) or Grad-CAM; writes OUT/RECORD__LABEL.png (the leads with the "
        "attribution shaded) and OUT/RECORD.json. Exit code 0: all explained; 3: some "
        "records failed; 2: none.",
    )
    add_explain_arguments(p)
    p.set_defaults(func=run_explain)


def _add_study_and_report_parsers(sub: argparse._SubParsersAction) -> None:
    """``study``, ``config`` and ``report``, in the order ``--help`` lists them. The study's
    ``--report`` gets the report writer from here: the report is a layer above the study."""
    from .report.cli import add_report_parser
    from .study.cli import add_study_parser

    add_study_parser(sub, write_report=_write_report)
    _add_config_parser(sub)
    add_report_parser(sub)


def _add_data_summary_parser(dsub: argparse._SubParsersAction) -> None:
    """``data summary``: what a dataset holds and what is wrong in it, before anything is trained."""
    p = dsub.add_parser(
        "summary",
        help="records, rates, folds, class counts and every problem found",
        description="Read the headers and index files and print what the dataset holds: "
        "records, sampling rates, lengths, folds, class counts per PTB-XL task and "
        "per label protocol, and every problem found. With --signals every signal is "
        "read too (through the cache: a full cache build the first time). Bad records "
        "are skipped and listed unless --strict.",
    )
    _add_dataset_args(p)
    p.add_argument("--json", action="store_true", help="print JSON (keys: records, tasks, problems, ...)")
    p.add_argument(
        "--signals",
        action="store_true",
        help="also read every signal (through the cache): signal problems and amplitude statistics",
    )
    p.set_defaults(func=_cmd_data_summary)


def _add_data_cache_parser(dsub: argparse._SubParsersAction) -> None:
    """``data cache``: build the signal cache ahead of training (a cluster's login node, say)."""
    p = dsub.add_parser(
        "cache",
        help="build (or reuse) the memory-mapped signal cache",
        description="Build the float32 signal cache for a dataset at a sampling rate, "
        "resampling with scipy.signal.resample_poly; every record is stored at its "
        "own length. Reused while inputs and settings are unchanged; checked on every "
        "open (sizes, sampled checksum) and rebuilt with a warning when damaged.",
    )
    _add_dataset_args(p)
    p.add_argument("--to-fs", type=float, default=None, help="resample to this rate in Hz (default: native)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="keep only the first SECONDS of each record (default: whole records)",
    )
    p.add_argument("--rebuild", action="store_true", help="build again even if a matching cache exists")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every byte of an existing cache against its checksums (rebuilt if damaged)",
    )
    p.set_defaults(func=_cmd_data_cache)


def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    """``data summary|cache|audit``: the dataset commands, grouped so that ``--help`` stays short."""
    from .datasets.audit_cli import DESCRIPTION as AUDIT_DESCRIPTION, add_audit_arguments, run_audit

    data = sub.add_parser(
        "data",
        help="inspect datasets and build signal caches",
        description="Inspect datasets and build their memory-mapped signal caches.",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    _add_data_summary_parser(dsub)
    _add_data_cache_parser(dsub)
    p = dsub.add_parser(
        "audit",
        help="exact and near-duplicate signals within and across datasets (leakage)",
        description=AUDIT_DESCRIPTION,
    )
    add_audit_arguments(p)
    p.set_defaults(func=run_audit)


def _add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """``train``, ``pretrain``, ``finetune`` and ``standalone``: one training command under four
    names, so that the name states the intent and :func:`_cmd_train` checks it against the config
    (``finetune`` needs a pre-trained run; ``pretrain`` and ``standalone`` start from random
    weights, so they have no ``--from``)."""
    for name, help_text in _TRAIN_HELP.items():
        p = sub.add_parser(
            name, help=help_text, description=help_text[0].upper() + help_text[1:] + ". " + _TRAIN_DESCRIPTION
        )
        p.add_argument("config", type=Path, help="run config (.toml or .json)")
        p.add_argument(
            "--run-dir",
            type=Path,
            required=True,
            help="where the run is written: config, environment, checkpoint, metrics, model.pt, "
            "predictions_val.csv and predictions_test.csv",
        )
        p.add_argument(
            "--resume", action="store_true", help="continue an interrupted run in --run-dir from its last checkpoint"
        )
        if name in ("train", "finetune"):
            p.add_argument(
                "--from",
                dest="init_from",
                type=Path,
                default=None,
                help="a pre-trained run directory (or its model.pt) to start from",
            )
        else:
            p.set_defaults(init_from=None)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_train)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Each group of subcommands is added by its own function; the calls'
    order is the order ``--help`` lists the commands in."""
    parser = argparse.ArgumentParser(
        prog="ecg-transfer",
        description="Transfer learning on 12-lead ECGs: read PTB-XL and CinC-format sets (G12EC), "
        "pre-train, fine-tune, evaluate with confidence intervals.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_download_parser(sub)
    _add_evaluate_parser(sub)
    _add_inference_parsers(sub)
    _add_study_and_report_parsers(sub)
    _add_data_parser(sub)
    _add_train_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at exit
        return code
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141  # as if killed by SIGPIPE, what shells report for a writer whose reader left
    except EcgTransferError as exc:
        print(f"ecg-transfer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ecg-transfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
