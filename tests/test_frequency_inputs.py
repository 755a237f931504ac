"""Frequency-domain network inputs (RunConfig ``input``): the transforms are applied per window after
standardisation, mean what they should, leave ``input = "time"`` bit-for-bit as before, train, predict,
fine-tune and export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecg_transfer.errors import ConfigError
from ecg_transfer.signal import (
    INPUT_KINDS,
    LOG_FLOOR,
    input_leads,
    input_transform,
    log_spectrum,
    spectrum,
    stft_bins,
    stft_geometry,
    stft_spectrogram,
    transformed_shape,
)
from ecg_transfer.training import RunConfig, load_config, load_model_file, load_predictions, train_run
from training_synth import LABELS, assert_same_state, killed_after_first_epoch, load_state, make_data, tiny_config

FREQ_KINDS = ("spectrum", "log-spectrum", "stft")


def sine_windows(
    fs: float, seconds: float = 2.5, lead: int = 3, hz: float = 10.0, phase: float = 0.3, n: int = 2, noise: float = 0.0
) -> np.ndarray:
    t = np.arange(int(round(seconds * fs))) / fs
    x = np.random.default_rng(0).normal(0.0, noise, (n, 12, t.size)) if noise else np.zeros((n, 12, t.size))
    x[:, lead] += np.sin(2 * np.pi * hz * t + phase)
    return x.astype(np.float32)


# ----- the transforms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fs,expected",
    [
        (100.0, {"time": (12, 250), "spectrum": (12, 126), "log-spectrum": (12, 126), "stft": (132, 47)}),
        (500.0, {"time": (12, 1250), "spectrum": (12, 626), "log-spectrum": (12, 626), "stft": (612, 47)}),
    ],
)
def test_shapes_and_dtype(fs, expected):
    crop = int(2.5 * fs)
    x = np.random.default_rng(1).normal(size=(3, 12, crop)).astype(np.float32)
    for kind in INPUT_KINDS:
        assert transformed_shape(kind, fs, 12, crop) == expected[kind], kind
        y = input_transform(kind, fs)(x)
        assert y.shape == (3, *expected[kind]) and y.dtype == np.float32 and y.flags.c_contiguous, kind
        assert input_leads(kind, fs, expected[kind][0]) == 12
    assert stft_geometry(100.0) == (20, 5) and stft_geometry(500.0) == (100, 25)


def test_time_is_the_identity():
    x = np.random.default_rng(2).normal(size=(2, 12, 250)).astype(np.float32)
    assert input_transform("time", 100.0)(x) is x


def test_spectrum_peaks_at_the_sine_bin():
    x = sine_windows(100.0, noise=0.01)
    s = spectrum(x)
    # 10 Hz in a 2.5 s window: bin 10 / (100 / 250) = 25; ortho amplitude of a unit sine: sqrt(n) / 2
    assert int(s[0, 3].argmax()) == 25 and s[0, 3, 25] == pytest.approx(np.sqrt(250) / 2, rel=0.01)
    assert s[0, 3, 25] > 50 * s[0, [0, 1, 2, 4]].max()  # the other leads hold only noise
    ls = log_spectrum(x)
    assert int(ls[0, 3].argmax()) == 25
    np.testing.assert_allclose(ls, np.log(s + LOG_FLOOR), rtol=1e-6)
    assert log_spectrum(np.zeros((1, 12, 250), np.float32)).min() == pytest.approx(np.log(LOG_FLOOR))


@pytest.mark.parametrize("fs", [100.0, 500.0])
def test_stft_peaks_at_10_hz_in_lead_3_at_every_frame(fs):
    x = sine_windows(fs, noise=0.01)
    S = stft_spectrogram(x, fs)
    F = stft_bins(fs)
    ten_hz = int(round(10 / (fs / stft_geometry(fs)[0])))  # bins are fs / window = 5 Hz apart
    assert ten_hz == 2
    block = S[0, 3 * F : 4 * F]  # lead 3's bins, lead-major channels
    assert (block.argmax(axis=0) == ten_hz).all()
    assert block[ten_hz].min() > S[0, : 3 * F].max() + 3  # e^3 ~ 20x above any other lead


def test_stft_is_scipy_stft_of_the_frames_inside_the_window():
    from scipy.signal import get_window, stft

    x = np.random.default_rng(5).normal(size=(2, 12, 250)).astype(np.float32)
    _, _, Z = stft(
        x.astype(np.float64),
        fs=100.0,
        window="hann",
        nperseg=20,
        noverlap=15,
        nfft=20,
        detrend=False,
        return_onesided=True,
        boundary=None,
        padded=False,
        scaling="spectrum",
        axis=-1,
    )
    assert Z.shape == (2, 12, 11, 47)
    w = get_window("hann", 20)
    Z = Z * w.sum() / np.sqrt(np.sum(w**2))  # scaling="spectrum" divides by sum(w); ours by sqrt(sum(w^2))
    want = np.log(np.abs(Z) + LOG_FLOOR).reshape(2, 12 * 11, 47)
    np.testing.assert_allclose(stft_spectrogram(x, 100.0), want, atol=1e-5)


@pytest.mark.parametrize("fs", [100.0, 500.0])
def test_unit_white_noise_reads_unit_power_in_both_transforms(fs):
    """The floor means the same in spectrum and stft, at any rate: both are energy-preserving."""
    x = np.random.default_rng(6).normal(size=(64, 12, int(2.5 * fs))).astype(np.float32)
    assert np.mean(spectrum(x)[..., 1:-1] ** 2) == pytest.approx(1.0, rel=0.02)
    F = stft_bins(fs)
    S = np.exp(stft_spectrogram(x, fs).reshape(64, 12, F, -1)) - LOG_FLOOR
    assert np.mean(S[:, :, 1:-1] ** 2) == pytest.approx(1.0, rel=0.02)


def test_magnitude_spectrum_ignores_a_time_shift():
    fs, n = 100.0, 250
    t = np.arange(n + 40) / fs
    rng = np.random.default_rng(3)
    sig = np.zeros((12, t.size))
    for lead in range(12):  # components on the 0.4 Hz grid of a 2.5 s window
        for hz in (1.2, 2.4, 10.0, 17.2):
            sig[lead] += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
    a, b = sig[None, :, :n].astype(np.float32), sig[None, :, 37 : 37 + n].astype(np.float32)
    assert np.abs(a - b).max() > 1.0  # the samples differ a lot...
    sa, sb = spectrum(a), spectrum(b)
    assert np.abs(sa - sb).max() < 1e-3 * sa.max()  # ...their magnitude spectra hardly
    np.testing.assert_allclose(spectrum(np.roll(a, 11, axis=-1)), sa, atol=1e-4 * sa.max())  # circular: exact


def test_bad_input_values_fail_clearly():
    with pytest.raises(ConfigError, match="'input'.*allowed values: time, spectrum, log-spectrum, stft"):
        RunConfig.from_dict(tiny_config(input="fft"))
    with pytest.raises(ConfigError, match="'input'"):
        input_transform("wavelet", 100.0)
    with pytest.raises(ConfigError, match="crop_seconds.*STFT window"):
        RunConfig.from_dict(tiny_config(input="stft", crop_seconds=0.1, stride_seconds=0.1))
    assert RunConfig.from_dict(tiny_config()).input == "time"


# ----- runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def freq_runs(tmp_path_factory, data):
    """One finished tiny run per frequency-domain kind."""
    X, Y, ids, splits = data
    root = tmp_path_factory.mktemp("freq")
    epochs = {"spectrum": 6, "stft": 6, "log-spectrum": 2}  # log-spectrum: no learning asserted, see below
    return {
        kind: train_run(
            tiny_config(epochs=epochs[kind], input=kind), X, Y, ids, splits, LABELS, root / kind, progress=False
        )
        for kind in FREQ_KINDS
    }


@pytest.mark.parametrize("kind", ["spectrum", "stft"])
def test_learns_the_10_hz_bursts(freq_runs, kind):
    r = freq_runs[kind]
    assert r.val_macro_auc is not None and r.val_macro_auc > 0.65, r.history
    # the validation split is 12 records; 400 fresh ones say it is not luck
    from ecg_transfer.training.loop import macro_auc

    Xb, Yb, _, _ = make_data(n=400, seed=11)
    assert macro_auc(Yb, load_model_file(r.model_path).predict(Xb))[0] > 0.65


# log-spectrum is not asserted to learn this task: the tiny network does not (measured, seeds 1-3:
# macro AUC 0.52-0.59 on the 400 fresh records after 5 epochs, training loss still 0.62-0.71 after
# 8; after 30 epochs test AUC 0.48-0.70; floors 0.1-1 instead of 1e-3 do not fix it). The evidence is one bin out of 126, and the log keeps the periodogram's ~5.6 dB scatter
# of every noise bin while compressing the tone's 26x lead to +3.5 nats, so max/avg pooling sees
# noise first. The transform itself carries the label (bin 25 of lead k separates the classes
# perfectly, see test_spectrum_peaks_at_the_sine_bin); this is a property of the input, not a bug.


@pytest.mark.parametrize("kind", FREQ_KINDS)
def test_runs_and_model_file_reproduces_predictions(freq_runs, data, kind):
    X, Y, ids, splits = data
    r = freq_runs[kind]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in r.history)
    assert load_config(r.run_dir / "config.json").input == kind
    lm = load_model_file(r.model_path)
    assert lm.input == kind and lm.config["input"] == kind and lm.n_leads == 12
    assert lm.spec["in_channels"] == transformed_shape(kind, 100.0, 12, 250)[0]
    rec, _, _, probs = load_predictions(r.predictions["test"])
    assert rec == [ids[i] for i in splits["test"]]
    # batch_size as in the run: a batch of one record can round differently in torch's conv (any input)
    assert np.array_equal(lm.predict(X, splits["test"], batch_size=8), probs.astype(np.float32))
    # the transform really is applied: the network on untransformed windows is another function (or fails)
    from ecg_transfer.training.predict import predict_records

    if kind != "stft":  # an stft network cannot even take 12 channels
        raw, _ = predict_records(lm.model, X, splits["test"], scaler=lm.scaler, crop_len=250, stride=125)
        assert not np.allclose(raw, probs, atol=1e-3)


def test_time_input_is_bit_for_bit_the_default(tmp_path, data):
    X, Y, ids, splits = data
    cfg = tiny_config(epochs=1)
    a = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "a", progress=False)
    b = train_run({**cfg, "input": "time"}, X, Y, ids, splits, LABELS, tmp_path / "b", progress=False)
    assert_same_state(load_state(a.model_path)["state_dict"], load_state(b.model_path)["state_dict"])
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for split in ("val", "test"):
        assert a.predictions[split].read_bytes() == b.predictions[split].read_bytes()
    # a config.json and a model.pt written before the key existed mean "time"
    old = json.loads((a.run_dir / "config.json").read_text())
    del old["input"]
    assert RunConfig.from_dict(old) == RunConfig.from_dict(cfg)
    obj = load_state(a.model_path)
    del obj["config"]["input"]
    torch.save(obj, tmp_path / "old.pt")
    lm = load_model_file(tmp_path / "old.pt")
    assert lm.input == "time" and lm.n_leads == 12
    assert np.array_equal(lm.predict(X, splits["test"]), load_model_file(a.model_path).predict(X, splits["test"]))


def test_input_is_part_of_the_run_definition(tmp_path, data):
    X, Y, ids, splits = data
    run_dir = tmp_path / "run"
    killed_after_first_epoch(run_dir, X, Y, ids, splits)
    with pytest.raises(ConfigError, match="config.input"):
        train_run(
            tiny_config(epochs=2, input="spectrum"), X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False
        )
    # a checkpoint written before the key existed resumes as the time-domain run it was
    ck = load_state(run_dir / "checkpoint.pt")
    del ck["meta"]["config"]["input"]
    torch.save(ck, run_dir / "checkpoint.pt")
    r = train_run(tiny_config(epochs=2), X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False)
    assert r.resumed_from_epoch == 1


# ----- fine-tuning ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spectrum", "stft"])
def test_finetune_from_a_frequency_run(freq_runs, tmp_path, kind):
    X, Y, ids, splits = make_data(n=48, seed=7)
    Y = np.ascontiguousarray(Y[:, :2])
    cfg = tiny_config(epochs=2, input=kind, finetune={"policy": "all", "epochs": 2, "lr": 1e-3})
    r = train_run(
        cfg, X, Y, ids, splits, ["A", "B"], tmp_path / "ft", init_from=freq_runs[kind].run_dir, progress=False
    )
    lm = load_model_file(r.model_path)
    pre = load_model_file(freq_runs[kind].model_path)
    assert lm.input == kind and lm.spec["in_channels"] == pre.spec["in_channels"] and len(lm.label_names) == 2
    first = next(iter(pre.model.state_dict()))
    assert not torch.equal(lm.model.state_dict()[first], pre.model.state_dict()[first])  # the body trained
    _, _, _, probs = load_predictions(r.predictions["test"])
    # batch_size as in the run: a batch of one record can round differently in torch's conv (any input)
    assert np.array_equal(lm.predict(X, splits["test"], batch_size=8), probs.astype(np.float32))


def test_finetune_refuses_another_input(freq_runs, tmp_path, data):
    X, Y, ids, splits = data
    time_run = train_run(tiny_config(epochs=1), X, Y, ids, splits, LABELS, tmp_path / "time", progress=False)
    ft = {"policy": "all", "epochs": 1}
    with pytest.raises(ConfigError, match=r"'input': 'spectrum'.*input='time'"):
        train_run(
            tiny_config(input="spectrum", finetune=ft),
            X,
            Y,
            ids,
            splits,
            LABELS,
            tmp_path / "a",
            init_from=time_run.run_dir,
            progress=False,
        )
    with pytest.raises(ConfigError, match=r"'input': 'time'.*input='stft'"):
        train_run(
            tiny_config(finetune=ft),
            X,
            Y,
            ids,
            splits,
            LABELS,
            tmp_path / "b",
            init_from=freq_runs["stft"].run_dir,
            progress=False,
        )
    assert not (tmp_path / "a" / "model.pt").exists() and not (tmp_path / "b" / "model.pt").exists()


# ----- prediction CLI machinery and export ----------------------------------------------------


def test_predictor_takes_the_records_leads(freq_runs):
    from ecg_transfer.inference.predict import Predictor

    X, *_ = make_data(n=4, t=500, seed=5)
    p = Predictor.from_run(freq_runs["stft"].run_dir, threshold=None)
    assert p.n_leads == 12
    # 500 Hz records are resampled to the model's 100 Hz, then windowed and transformed like training
    from ecg_transfer.signal import resample

    X500 = resample(X.astype(np.float64), 100.0, 500.0).astype(np.float32)
    probs, _ = p.predict_array(X500, fs=500.0)
    want = p.loaded.predict(resample(X500.astype(np.float64), 500.0, 100.0).astype(np.float32))
    assert np.array_equal(probs, want)


@pytest.mark.parametrize("fs", [100.0, 500.0])
@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_torch_transform_matches_numpy(kind, fs):
    from ecg_transfer.inference.export import InputTransform

    n = int(2.5 * fs)
    x = np.random.default_rng(4).normal(size=(3, 12, n)).astype(np.float32)
    want = input_transform(kind, fs)(x)
    got = InputTransform(kind, fs, 12, n)(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 2e-4  # float32 DFT sums; log(|X| + 1e-3) magnifies tiny |X|


@pytest.mark.parametrize(
    "fmt,kind,exporter",
    [
        ("torchscript", "log-spectrum", "auto"),
        ("onnx", "stft", "auto"),
        ("onnx", "spectrum", "legacy"),
        ("torchscript", "stft", "auto"),
    ],
)
def test_export_includes_the_transform(freq_runs, tmp_path, fmt, kind, exporter):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime")
    from ecg_transfer.inference.export import export_model, exported_record_probs

    run_dir = freq_runs[kind].run_dir
    res = export_model(run_dir, fmt, tmp_path / f"m.{fmt}", exporter=exporter)
    meta = res.metadata
    assert meta["input"]["shape"] == ["batch", 12, 250]
    assert meta["network_input"]["kind"] == kind
    assert meta["network_input"]["shape"] == ["batch", *transformed_shape(kind, 100.0, 12, 250)]
    assert meta["verification"]["max_abs_diff"] < 1e-5
    assert meta["verification"]["max_abs_diff_package"] < 1e-4
    X, *_ = make_data(n=5, t=600, seed=9)
    lengths = np.array([600, 250, 400, 599, 600])
    got = exported_record_probs(res.path, X, lengths=lengths)
    want = load_model_file(run_dir).predict(X, lengths=lengths)
    assert np.abs(got - want).max() < 1e-4


def test_model_card_names_the_input(freq_runs):
    from ecg_transfer.inference.modelcard import model_card_text

    text = model_card_text(freq_runs["stft"].run_dir, n_resamples=20)
    assert "input 12 leads" in text and 'input = "stft"' in text and "132 channels x 47" in text
