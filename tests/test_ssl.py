"""Self-supervised pre-training (``[ssl]``): the augmentations do what they say, every objective
learns on both backbones, CPC encodes each patch on its own, a test fold is never read, the result fine-tunes under every policy, a
killed run resumes exactly, and the ``[ssl]`` table is validated like every other."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from ecg_transfer import models
from ecg_transfer.cli import main
from ecg_transfer.errors import ConfigError
from ecg_transfer.settings import RunConfig
from ecg_transfer.settings.run import SslConfig
from ecg_transfer.training.modelfile import load_model_file
from ecg_transfer.training.run import missing_outputs, train_run
from ecg_transfer.training.ssl import SslModel, augment, load_ssl_data
from ecg_transfer.training.ssl.model import span_mask

from training_synth import LABELS, Killed, kill_after, make_data, tiny_config
from wfdb_fixtures import make_ptbxl_tree, write_cinc, write_record

TINY = {"xresnet1d18": {"stem_widths": [8, 8, 8], "width": 8, "head_hidden": [8]}, "s4": {"d_model": 16, "n_layers": 1}}
SENTINEL_MV = 7.777  # every sample of a fold-10 record: impossible to miss if it were ever read


def _batch(b: int = 6, c: int = 12, t: int = 500, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, c, t)).astype(np.float32))


# ----- augmentations -----------------------------------------------------------------------------


def test_random_resized_crop_keeps_a_share_stretched_back():
    torch.manual_seed(0)
    t = 400
    ramp = torch.arange(t, dtype=torch.float32).repeat(8, 3, 1)  # value = sample index
    assert torch.allclose(augment.random_resized_crop(ramp, (1.0, 1.0)), ramp, atol=1e-3)  # all of it: unchanged
    out = augment.random_resized_crop(ramp, (0.5, 0.7))
    assert out.shape == ramp.shape
    span = out[:, 0, -1] - out[:, 0, 0]  # how much of the ramp the view covers
    assert ((span >= 0.5 * (t - 1) - 1e-3) & (span <= 0.7 * (t - 1) + 1e-3)).all()
    steps = out[:, 0, 1:] - out[:, 0, :-1]  # stretched evenly: a constant slope = the share kept
    assert torch.allclose(steps, (span / (t - 1))[:, None].expand_as(steps), atol=1e-3)
    assert (out[:, 0, 0] >= 0).all() and (out[:, 0, -1] <= t - 1).all()
    assert torch.equal(out[:, 0], out[:, 2])  # the same crop in every lead


def test_time_out_zeroes_one_contiguous_share_in_every_lead():
    torch.manual_seed(1)
    x = _batch(t=500) + 10  # no sample is 0 by chance
    out = augment.time_out(x, (0.2, 0.4))
    assert out.shape == x.shape
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # the same samples in every lead
    for row in zero[:, 0]:
        idx = torch.nonzero(row).flatten()
        assert 0.2 * 500 <= idx.numel() <= 0.4 * 500
        assert idx[-1] - idx[0] + 1 == idx.numel()  # contiguous
    assert torch.equal(out[~zero], x[~zero])  # the rest untouched


def test_baseline_wander_is_slow_and_bounded():
    torch.manual_seed(2)
    fs, unit = 100.0, 0.5
    x = _batch(t=2000)
    added = (augment.baseline_wander(x, 0.2, fs, unit) - x).numpy()
    assert np.abs(added).max() <= 0.2 / unit + 1e-5 and np.abs(added).max() > 0.01
    spectrum = np.abs(np.fft.rfft(added * np.hanning(2000), axis=-1)) ** 2  # windowed: no leakage
    freqs = np.fft.rfftfreq(2000, 1 / fs)
    assert spectrum[..., freqs > 1.0].sum() < 0.01 * spectrum.sum()  # below 1 Hz: a drift, not an ECG wave


def test_gaussian_noise_has_the_asked_standard_deviation_in_mv():
    torch.manual_seed(3)
    x = _batch(b=8, t=4000)
    added = augment.gaussian_noise(x, 0.02, unit=0.1) - x
    assert abs(float(added.std()) - 0.2) < 0.005 and abs(float(added.mean())) < 0.005  # 0.02 mV = 0.2 units


def test_powerline_noise_is_a_50_or_60_hz_hum():
    torch.manual_seed(4)
    fs = 500.0
    x = _batch(b=16, t=1000)
    added = (augment.powerline_noise(x, 0.05, fs, unit=0.05) - x).numpy()
    assert np.abs(added).max() <= 1.0 + 1e-5
    freqs = np.fft.rfftfreq(1000, 1 / fs)
    peaks = {float(freqs[np.argmax(np.abs(np.fft.rfft(added[i].sum(axis=0))))]) for i in range(16)}
    assert peaks == {50.0, 60.0}  # both mains frequencies occur, nothing else


def test_lead_dropout_zeroes_whole_leads_and_keeps_one():
    torch.manual_seed(5)
    x = _batch(b=400, t=50) + 10
    out = augment.lead_dropout(x, 0.3)
    dropped = (out == 0).all(dim=2)
    assert torch.equal(out[~dropped], x[~dropped])  # a lead is either untouched or zero throughout
    assert abs(float(dropped.float().mean()) - 0.3) < 0.02
    nearly_all = augment.lead_dropout(x, 0.99)
    assert ((nearly_all != 0).any(dim=2).sum(dim=1) >= 1).all()  # never every lead


def test_augmenter_applies_the_listed_augmentations_in_mv():
    ssl = SslConfig.from_dict({"method": "contrastive", "augmentations": ["gaussian-noise"], "gaussian_noise_mv": 0.05})
    x = torch.zeros(4, 12, 3000)
    torch.manual_seed(6)
    half = float(augment.make_augmenter(ssl, 100.0, unit=0.1)(x).std())
    torch.manual_seed(6)
    full = float(augment.make_augmenter(ssl, 100.0, unit=0.05)(x).std())
    assert abs(half - 0.5) < 0.01 and abs(full - 1.0) < 0.02  # amplitudes are mV, divided by the unit
    with pytest.raises(ValueError, match="unit"):
        augment.make_augmenter(ssl, 100.0, unit=0.0)


def test_span_mask_covers_about_the_asked_share():
    torch.manual_seed(7)
    mask = span_mask(200, 250, 25, 0.5)
    assert mask.shape == (200, 250)
    assert 0.3 < float(mask.float().mean()) <= 0.5  # overlapping spans mask a little less than asked


# ----- the objectives learn on both backbones ----------------------------------------------------------


@pytest.mark.parametrize("method", ["contrastive", "masked", "cpc"])
@pytest.mark.parametrize("name", ["xresnet1d18", "s4"])
def test_ssl_loss_decreases_on_a_tiny_synthetic_set(method, name):
    torch.manual_seed(0)
    X, _, _, _ = make_data(n=24, t=250)
    x = torch.from_numpy((X - X.mean()) / X.std())
    model = SslModel(
        models.build(name, 12, 1, **TINY[name]),
        SslConfig.from_dict({"method": method}),
        fs=100.0,
        crop_len=250,
        unit=float(X.std()),
    )

    def loss_at_fixed_draws() -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            return float(model(x))

    before = loss_at_fixed_draws()
    # the tiny S4 sits at chance (ln 47) for 40 steps at 3e-3: its kernels need a larger step
    opt = torch.optim.Adam(model.parameters(), lr={"xresnet1d18": 3e-3, "s4": 1e-2}[name])
    for _ in range(40):
        loss = model(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_at_fixed_draws()
    assert math.isfinite(before) and after < 0.9 * before, (before, after)


@pytest.mark.parametrize("name", ["xresnet1d18", "s4"])
def test_cpc_encodes_each_patch_on_its_own_and_predicts_only_from_the_past(name):
    """A change inside patch 2 moves z_2 only (no encoding sees a neighbour's samples, which would
    leak the future into the context), and the context c_t only from t = 2 on (the GRU is causal)."""
    torch.manual_seed(0)
    model = SslModel(
        models.build(name, 12, 1, **TINY[name]),
        SslConfig.from_dict({"method": "cpc", "patch_seconds": 0.5, "predict_steps": 2}),
        fs=100.0,
        crop_len=260,
        unit=1.0,
    ).eval()  # eval: BatchNorm's running statistics, so the rows of a batch do not mix
    x = _batch(4, t=260)
    changed = x.clone()
    changed[1, :, 110:130] += 2.0  # record 1, inside patch 2 (samples 100-149); samples 250-259 are dropped
    with torch.no_grad():
        z, z_changed = model.patch_encodings(x), model.patch_encodings(changed)
        c, c_changed = model.head.context(z)[0], model.head.context(z_changed)[0]
    assert z.shape[:2] == (4, 5)
    moved = (z - z_changed).abs().amax(dim=2)  # (record, patch)
    assert moved[1, 2] > 0 and torch.count_nonzero(moved) == 1, moved
    context_moved = (c - c_changed).abs().amax(dim=2)
    assert torch.all(context_moved[1, :2] == 0) and torch.all(context_moved[1, 2:] > 0), context_moved
    assert torch.all(context_moved[[0, 2, 3]] == 0)  # the other records' contexts do not move


def test_cpc_info_nce_is_low_when_each_prediction_is_its_target():
    from ecg_transfer.training.ssl.model import cpc_info_nce

    z = torch.nn.functional.one_hot(torch.arange(12)).float().view(2, 6, 12) * 20  # 12 distinct patches
    perfect = torch.stack([torch.roll(z, -k, dims=1) for k in (1, 2)], dim=2)  # prediction t, k = z_{t+k}
    shuffled = perfect[:, [3, 0, 5, 1, 4, 2]]
    assert float(cpc_info_nce(z, perfect)) < 0.01
    assert float(cpc_info_nce(z, shuffled)) > 1.0


def test_the_encoder_is_the_backbones_body():
    backbone = models.build("xresnet1d18", 12, 1, **TINY["xresnet1d18"])
    model = SslModel(backbone, SslConfig.from_dict({"method": "masked"}), fs=100.0, crop_len=250, unit=1.0)
    assert model.body is backbone.body  # what SSL trains is what model.pt saves
    assert model.samples_per_step == 32  # xresnet: one step per 32 samples
    s4 = SslModel(
        models.build("s4", 12, 1, **TINY["s4"]),
        SslConfig.from_dict({"method": "masked"}),
        fs=100.0,
        crop_len=250,
        unit=1.0,
    )
    assert s4.samples_per_step == 1  # s4: one step per sample
    groups = model.layer_groups()
    assert sum(len(g) for g in groups) == len(list(model.parameters()))


# ----- runs: test folds never read, fine-tuning, resume ------------------------------------------------


def _sentinel_ptbxl(root: Path, n_records: int = 30) -> Path:
    """A PTB-XL tree whose fold-10 records hold SENTINEL_MV in every sample."""
    make_ptbxl_tree(root, n_records=n_records)
    for i in range(10, n_records + 1, 10):  # strat_fold = (i - 1) % 10 + 1
        write_record(root / "records100" / "00000", f"{i:05d}_lr", np.full((1000, 12), SENTINEL_MV), 100)
    return root


def _ssl_run_config(root: Path, cache: Path, **ssl) -> dict:
    return {
        "model": "xresnet1d18",
        "model_kwargs": TINY["xresnet1d18"],
        "fs": 100.0,
        "batch_size": 8,
        "epochs": 1,
        "seed": 0,
        "device": "cpu",
        "task": {"dataset": "ptbxl", "root": str(root), "labels": "form", "cache_dir": str(cache)},
        "ssl": ssl,
    }


def _fold_records(root: Path, folds: list[int]) -> list[str]:
    import pandas as pd

    db = pd.read_csv(root / "ptbxl_database.csv")
    return [f"{i:05d}" for i in db.loc[db["strat_fold"].isin(folds), "ecg_id"]]


def test_pretrain_never_reads_the_test_fold_and_finetunes_end_to_end(tmp_path, capsys):
    root = _sentinel_ptbxl(tmp_path / "ptbxl")
    config = _ssl_run_config(root, tmp_path / "cache", method="contrastive")  # cpc: its own end-to-end test
    data = load_ssl_data(RunConfig.from_dict(config), progress=False)
    assert sorted(data.record_ids) == sorted(_fold_records(root, list(range(1, 10))))
    assert all(np.abs(data.X.record(i)).max() < SENTINEL_MV - 1 for i in range(len(data.X)))  # not even addressable

    cfg_path = tmp_path / "ssl.json"
    cfg_path.write_text(json.dumps(config))
    run_dir = tmp_path / "ssl-run"
    assert main(["pretrain", str(cfg_path), "--run-dir", str(run_dir), "--no-progress"]) == 0
    assert "contrastive SSL loss" in capsys.readouterr().out
    splits = json.loads((run_dir / "splits.json").read_text())
    assert not (run_dir / "label_counts.json").exists()  # an SSL run reads no labels: nothing to count
    # every record of folds 1-8, labelled for the task or not (only a quarter have a 'form' label)
    assert sorted(splits["train"]) == sorted(_fold_records(root, list(range(1, 9))))
    assert sorted(splits["val"]) == sorted(_fold_records(root, [9])) and splits["test"] == []
    pre = load_model_file(run_dir, encoder_ok=True)
    train = np.concatenate(
        [wfdb.rdsamp(str(root / "records100" / "00000" / f"{int(r):05d}_lr"))[0].ravel() for r in splits["train"]]
    )
    assert pre.scaler.mean_ == pytest.approx(train.mean(), abs=1e-6)  # fold 10 would move it by ~0.8 mV
    assert pre.scaler.std_ == pytest.approx(train.std(), rel=1e-5)
    assert pre.label_names == [] and missing_outputs(run_dir) == []
    card = (run_dir / "MODEL_CARD.md").read_text()  # a card that says what the encoder is and is not
    assert "Self-supervised encoder" in card and "predicts no labels" in card and "Task: none" in card
    np.save(tmp_path / "x.npy", np.zeros((12, 1000), np.float32))
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(tmp_path / "x.npy"), "--fs", "100", "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err  # an encoder with a placeholder head predicts nothing
    assert "self-supervised encoder" in err and "ecg-transfer finetune CONFIG --from" in err
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] > 0 and history[-1]["val_loss"] > 0 and history[-1]["val_macro_auc"] is None

    ft = {**config, "task": {**config["task"], "labels": "superdiagnostic"}, "finetune": {"policy": "linear-probe"}}
    del ft["ssl"]
    ft_path = tmp_path / "ft.json"
    ft_path.write_text(json.dumps(ft))
    ft_dir = tmp_path / "ft-run"
    assert main(["finetune", str(ft_path), "--from", str(run_dir), "--run-dir", str(ft_dir), "--no-progress"]) == 0
    tuned = load_model_file(ft_dir)
    for key, value in pre.model.body.state_dict().items():  # linear probe: the SSL encoder, unchanged
        assert torch.equal(tuned.model.body.state_dict()[key], value), key
    assert (ft_dir / "predictions_test.csv").exists() and len(tuned.label_names) == 4


def test_extra_cinc_set_unlabelled_records_used_test_fold_left_out(tmp_path):
    from ecg_transfer.datasets.cache import load_or_build
    from ecg_transfer.datasets.registry import open_dataset
    from ecg_transfer.datasets.splits import record_folds

    root = make_ptbxl_tree(tmp_path / "ptbxl", n_records=20)
    cinc = tmp_path / "cinc"
    rng = np.random.default_rng(0)
    for i in range(40):
        write_cinc(
            cinc, f"E{i:05d}", rng.integers(-800, 800, (12, 5000)).astype(np.int16), "" if i % 4 == 0 else "426783006"
        )  # every 4th record has no label at all
    cache = tmp_path / "cache"
    config = _ssl_run_config(root, cache, extra_tasks=[{"dataset": "cinc", "root": str(cinc), "cache_dir": str(cache)}])
    data = load_ssl_data(RunConfig.from_dict(config), progress=False)
    folds = record_folds(load_or_build(open_dataset("cinc", cinc), fs=100.0, cache_dir=cache, progress=False))
    cinc_ids = {r.split(":", 1)[1] for r in data.record_ids if r.startswith("cinc:")}
    assert cinc_ids == {r for r, f in folds.items() if f <= 9}  # fold 10 left out, nothing else
    assert {f"E{i:05d}" for i in range(0, 40, 4)} & cinc_ids  # records without labels are used
    assert sum(r.startswith("ptbxl:") for r in data.record_ids) == 18
    train_ids = {data.record_ids[i] for i in data.splits["train"]}
    assert {r for r in train_ids if r.startswith("cinc:")} == {f"cinc:{r}" for r, f in folds.items() if f <= 8}
    assert len(data.X) == len(data.record_ids) == len(set(data.record_ids))


def _ssl_arrays(method: str, out: Path) -> Path:
    X, _, ids, splits = make_data(n=40, t=300)
    cfg = {**tiny_config(epochs=2, ssl={"method": method}), "model": "xresnet1d18", "model_kwargs": TINY["xresnet1d18"]}
    train_run(
        cfg,
        X,
        np.zeros((40, 0), np.uint8),
        ids,
        {"train": splits["train"], "val": splits["val"]},
        [],
        out,
        progress=False,
    )
    return out


@pytest.mark.parametrize("policy", ["head-then-all", "gradual", "all", "linear-probe"])
def test_an_ssl_run_finetunes_with_every_policy(tmp_path, policy):
    ssl_dir = _ssl_arrays("masked", tmp_path / "ssl")
    X, Y, ids, splits = make_data(n=40, t=300)
    finetune = {"policy": policy}
    if policy == "head-then-all":
        finetune.update(head_epochs=1, all_epochs=1)
    elif policy == "gradual":
        finetune["stages"] = [{"epochs": 1, "train": "head"}, {"epochs": 1, "train": "all", "lr": [1e-4, 1e-3]}]
    else:
        finetune["epochs"] = 1
    cfg = {**tiny_config(finetune=finetune), "model": "xresnet1d18", "model_kwargs": {}}
    seen = []
    result = train_run(
        cfg,
        X,
        Y,
        ids,
        splits,
        LABELS,
        tmp_path / "ft",
        init_from=ssl_dir,
        progress=False,
        callbacks=[lambda row, model: seen.append(row["stage"])],
    )
    assert result.val_macro_auc is not None and missing_outputs(tmp_path / "ft") == []
    assert len(seen) == sum(s.epochs for s in RunConfig.from_dict(cfg).stages())
    if policy == "linear-probe":
        body = load_model_file(ssl_dir, encoder_ok=True).model.body.state_dict()
        for key, value in load_model_file(tmp_path / "ft").model.body.state_dict().items():
            assert torch.equal(body[key], value), key


def test_a_cpc_run_pretrains_and_finetunes(tmp_path):
    ssl_dir = _ssl_arrays("cpc", tmp_path / "ssl")
    history = [json.loads(line) for line in (ssl_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in history)
    X, Y, ids, splits = make_data(n=40, t=300)
    cfg = {**tiny_config(finetune={"policy": "all", "epochs": 1}), "model": "xresnet1d18", "model_kwargs": {}}
    result = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "ft", init_from=ssl_dir, progress=False)
    assert result.val_macro_auc is not None and missing_outputs(tmp_path / "ft") == []


def test_a_killed_ssl_run_resumes_to_the_same_weights(tmp_path):
    X, _, ids, splits = make_data(n=40, t=300)
    cfg = {
        **tiny_config(epochs=2, ssl={"method": "contrastive"}),
        "model": "xresnet1d18",
        "model_kwargs": TINY["xresnet1d18"],
    }
    args = (X, np.zeros((40, 0), np.uint8), ids, {"train": splits["train"], "val": splits["val"]}, [])
    train_run(cfg, *args, tmp_path / "straight", progress=False)
    with pytest.raises(Killed):
        train_run(cfg, *args, tmp_path / "killed", progress=False, callbacks=[kill_after(1)])
    train_run(cfg, *args, tmp_path / "killed", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_cli_refuses_ssl_outside_pretrain(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_ssl_run_config(tmp_path, tmp_path / "cache")))
    assert main(["standalone", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "`ecg-transfer pretrain`, not `standalone`" in capsys.readouterr().err


# ----- the [ssl] table -------------------------------------------------------------------------------------

TASK = {"dataset": "ptbxl", "root": "data/ptbxl", "labels": "diagnostic"}


@pytest.mark.parametrize(
    "ssl, extra, message",
    [
        ({"methd": "masked"}, {}, r"unknown config key 'ssl\.methd'; allowed keys in 'ssl': .*method"),
        (
            {"extra_tasks": [{"dataset": "cinc", "root": "x", "labels": "dx"}]},
            {},
            r"unknown config key 'ssl\.extra_tasks\[0\]\.labels'",
        ),
        ({"method": "masked", "temperature": 0.1}, {}, r"'ssl\.temperature': applies to ssl\.method = 'contrastive'"),
        ({"mask_ratio": 0.3}, {}, r"'ssl\.mask_ratio': applies to ssl\.method = 'masked'"),
        (
            {"method": "contrastive", "augmentations": ["time-out"], "gaussian_noise_mv": 0.1},
            {},
            r"'ssl\.gaussian_noise_mv': sets the "
            r"'gaussian-noise' augmentation, which ssl\.augmentations does not list",
        ),
        (
            {"method": "contrastive", "augmentations": ["time-out", "time-out"]},
            {},
            r"'ssl\.augmentations': a non-empty list of distinct",
        ),
        (
            {"method": "contrastive", "augmentations": ["time-outt"]},
            {},
            r"'ssl\.augmentations\[0\]': 'time-outt' is not allowed",
        ),
        ({"method": "contrastive", "crop_scale": [0.9, 0.5]}, {}, r"'ssl\.crop_scale': \[low, high\] with low <= high"),
        ({"method": "contrastive", "temperature": True}, {}, r"'ssl\.temperature': expected a number"),
        ({"method": "masked", "mask_seconds": 3.0}, {}, r"'ssl\.mask_seconds': 3\.0 s at fs=100\.0 Hz is 300"),
        ({"method": "masked", "patch_seconds": 0.5}, {}, r"'ssl\.patch_seconds': applies to ssl\.method = 'cpc'"),
        ({"method": "cpc", "patch_seconds": 0.001}, {}, r"'ssl\.patch_seconds': 0\.001 s at fs=100\.0 Hz is no sample"),
        (
            {"method": "cpc", "predict_steps": 5},
            {},
            r"'ssl\.predict_steps': 5 patch\(es\) ahead need a crop of at least 6 patches of 0\.5 s; "
            r"the 2\.5 s crop holds 5",
        ),
        ({"method": "cpc", "patch_seconds": 2.0}, {}, r"'ssl\.patch_seconds': 2\.0 s: the 2\.5 s crop holds 1 patch"),
        ({"method": "cpc", "context_dim": 0}, {}, r"'ssl\.context_dim'"),
        ({}, {"finetune": {"policy": "all"}}, r"'finetune\.policy': 'all', but an \[ssl\] run pre-trains"),
        ({}, {"input": "stft"}, r"'input': 'stft', but \[ssl\]"),
        ({}, {"task": {**TASK, "train_fraction": 0.5, "fraction_parts": 2}}, r"'task\.train_fraction': an \[ssl\] run"),
        (
            {"extra_tasks": [{"dataset": "cinc", "root": "x", "val_folds": [10]}]},
            {},
            r"'ssl\.extra_tasks\[0\]\.train_folds': train_folds / val_folds / test_folds must not overlap",
        ),
        (
            {"extra_tasks": [{"dataset": "cinc", "root": "x", "source_fs": 500}]},
            {},
            r"'ssl\.extra_tasks\[0\]\.source_fs': only PTB-XL",
        ),
    ],
)
def test_ssl_table_errors_name_the_key(ssl, extra, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"task": TASK, "ssl": ssl, **extra})


def test_the_readme_example_is_a_valid_config():
    import tomllib

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("### Self-supervised pre-training", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    config = RunConfig.from_dict(tomllib.loads(block))
    assert config.ssl is not None and config.ssl.extra_tasks[0].test_folds == ()


def test_ssl_defaults_are_resolved_and_supervised_configs_unchanged():
    assert RunConfig.from_dict({"ssl": {}}).ssl.method == "cpc"  # the method chosen on fold 9 (BENCHMARKS.md)
    contrastive = RunConfig.from_dict({"ssl": {"method": "contrastive"}}).to_dict()["ssl"]
    assert contrastive["temperature"] == 0.5 and contrastive["crop_scale"] == [0.5, 1.0]
    assert contrastive["mask_ratio"] is None  # the other method's keys stay unset
    masked = RunConfig.from_dict({"ssl": {"method": "masked"}})
    assert masked.ssl.mask_ratio == 0.5 and masked.ssl.temperature is None
    assert RunConfig.from_dict(masked.to_dict()) == masked  # config.json round trip
    assert "ssl" not in RunConfig().to_dict()  # supervised runs: config.json and study run keys as before
    cpc = RunConfig.from_dict({"crop_seconds": 5, "ssl": {"method": "cpc", "predict_steps": 4}})
    assert (cpc.ssl.patch_seconds, cpc.ssl.predict_steps, cpc.ssl.context_dim) == (0.5, 4, 256)
    assert cpc.ssl.temperature is None and cpc.ssl.mask_ratio is None
    assert RunConfig.from_dict(cpc.to_dict()) == cpc
    augs = RunConfig.from_dict({"ssl": {"method": "contrastive", "augmentations": ["time-out"]}}).ssl
    assert augs.time_out == (0.2, 0.4) and augs.crop_scale is None and augs.lead_dropout is None
