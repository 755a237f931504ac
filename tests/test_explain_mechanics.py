"""The mechanics of ``ecg-transfer explain`` on small untrained networks (no training needed):
finite attributions of frequency-domain runs on a flat lead, Grad-CAM only where its map is a map
over time, work bounded by windows, one set of files per record, and a JSON that says what its
numbers mean. (That attributions find the right lead of a trained model: tests/test_explain.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from explain_synth import CROP, FS, STRIDE, record, save_run, small_model

from ecg_transfer.errors import ConfigError
from ecg_transfer.training.modelfile import LoadedModel

pytest.importorskip("captum", reason="explanations need captum (pip install 'ecg-transfer[explain]')")
from ecg_transfer.inference import explain as X  # noqa: E402
from ecg_transfer.inference import export as E  # noqa: E402


def no_nan_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ----- 1: frequency-domain runs on a flat lead -----------------------------------------------------


@pytest.mark.parametrize("kind", ["spectrum", "log-spectrum"])
def test_a_flat_lead_gives_finite_attributions_in_frequency_domain_runs(kind):
    lm = small_model(input=kind)
    (e,) = X.explain_record(lm, record(flat_lead=3), ["A"], steps=8)
    assert np.isfinite(e.attribution).all() and np.isfinite(e.convergence_delta)
    share = e.per_lead_share
    assert share.sum() == pytest.approx(1.0) and (share >= 0).all() and (share <= 1).all()
    assert np.all(e.attribution[3] == 0)  # the flat lead's bins do not move: nothing attributed to it


def test_the_clamped_magnitude_keeps_the_transform_s_values():
    """The clamp only touches powers below float32's smallest normal number: the transform of a
    record with a flat lead is the numpy path's to float32 rounding, zero bins included."""
    from ecg_transfer.signal import input_transform

    x = record(CROP, flat_lead=3)[None]
    for kind in ("spectrum", "log-spectrum", "stft"):
        got = E.InputTransform(kind, FS, 12, CROP)(torch.from_numpy(x)).numpy()
        ref = input_transform(kind, FS)(x)
        assert np.abs(got - ref).max() < 1e-4, kind


def test_a_non_finite_attribution_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    lm = small_model(input="spectrum")
    run = save_run(lm, tmp_path / "run")
    np.save(tmp_path / "flat.npy", record(flat_lead=3))
    np.save(tmp_path / "fine.npy", record(seed=1))
    # the old, NaN-prone root (raising=False: the old code had no magnitude() and took this root itself)
    monkeypatch.setattr(E, "magnitude", lambda re, im: torch.sqrt(re * re + im * im), raising=False)
    with pytest.raises(ValueError, match="not finite"):  # an AttributionError
        X.explain_record(lm, record(flat_lead=3), ["A"], steps=8)
    out = tmp_path / "out"
    found = X.explain_inputs(run, [tmp_path / "flat.npy", tmp_path / "fine.npy"], labels=["A"], steps=8, fs=FS, out=out)
    assert [p.record for p in found.errors] == ["flat"] and "not finite" in found.errors[0].problem
    assert list(found.explanations) == ["fine"]
    assert sorted(p.name for p in out.iterdir()) == ["fine.json", "fine__A.png"]
    bad = X.Explanation("A", 0.5, "ig", np.full((12, 300), np.nan), 0.0)
    with pytest.raises(X.AttributionError):
        X.explanation_json("r", [str(i) for i in range(12)], FS, [bad])
    with pytest.raises(X.AttributionError):
        bad.per_lead_share  # noqa: B018 - no "share" out of NaN


# ----- 2: Grad-CAM only where the last layer's axis is time --------------------------------------


@pytest.mark.parametrize("kind", ["spectrum", "log-spectrum", "stft"])
def test_gradcam_is_refused_for_frequency_domain_runs(kind):
    with pytest.raises(ConfigError, match=rf"input is '{kind}'.*--method ig"):
        X.explain_record(small_model(input=kind), record(), ["A"], method="gradcam")


@pytest.mark.parametrize(("name", "layer"), [("lstm", "LSTM"), ("s4", "S4DKernel")])
def test_gradcam_is_refused_for_bodies_without_a_local_time_axis(name, layer):
    with pytest.raises(ConfigError, match=rf"{layer}.*integrated gradients"):
        X.explain_record(small_model(name), record(), ["A"], method="gradcam")


def test_gradcam_is_refused_before_any_record_is_read(tmp_path):
    run = save_run(small_model(input="spectrum"), tmp_path / "run")
    with pytest.raises(ConfigError, match="Grad-CAM"):
        X.explain_inputs(run, [tmp_path / "nothing_here.npy"], method="gradcam", fs=FS)


def _whole_record_gradcam(lm: LoadedModel, x: np.ndarray, k: int) -> np.ndarray:
    """Grad-CAM of the record probability in one piece (captum on the whole record): the reference."""
    import captum.attr

    f = X.record_probability_module(lm, window_batch=10_000)
    cam = captum.attr.LayerGradCam(f, lm.model.body[-1]).attribute(
        torch.from_numpy(x)[None], target=k, relu_attributions=True
    )
    cam = torch.nn.functional.interpolate(cam.detach(), size=CROP, mode="linear", align_corners=False)
    out = np.zeros(x.shape[-1])
    for w, row in enumerate(cam[:, 0].numpy()):
        out[w * STRIDE : w * STRIDE + CROP] += row
    return out


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_gradcam_in_window_chunks_is_gradcam_of_the_record_probability(aggregate):
    lm = small_model(aggregate=aggregate)
    x = record(1300)  # 9 windows, in chunks of 2
    (e,) = X.explain_record(lm, x, ["B"], method="gradcam", window_batch=2)
    ref = _whole_record_gradcam(lm, x, 1)
    assert ref.max() > 0 and np.allclose(e.attribution, ref, rtol=1e-4, atol=1e-7 * ref.max())


# ----- 3: work bounded by windows ----------------------------------------------------------------


def _windows_per_call(lm: LoadedModel) -> list[int]:
    seen: list[int] = []
    lm.model.register_forward_pre_hook(lambda module, inputs: seen.append(int(inputs[0].shape[0])))
    return seen


def test_integrated_gradients_put_at_most_one_batch_of_windows_through_the_network():
    lm = small_model()
    seen = _windows_per_call(lm)
    x = record(STRIDE * 41)  # 40 windows: the old 10 path points at once were 400 windows per pass
    X.explain_record(lm, x, ["A"], steps=50)
    assert seen and max(seen) <= 128, max(seen)  # X.WINDOW_BATCH, predict's batch


def test_a_record_longer_than_a_batch_is_explained_in_window_chunks_with_the_same_result():
    lm = small_model(aggregate="mean")
    x = record(STRIDE * 31)  # 30 windows, chunks of 8
    seen = _windows_per_call(lm)
    (chunked,) = X.explain_record(lm, x, ["A"], steps=4, window_batch=8)
    assert max(seen) <= 8
    seen.clear()
    (whole,) = X.explain_record(lm, x, ["A"], steps=4, window_batch=10_000)
    assert max(seen) == 30 * 4  # the reference: all windows of all 4 path points in one pass
    scale = np.abs(whole.attribution).max()
    assert scale > 0 and np.abs(chunked.attribution - whole.attribution).max() < 1e-5 * scale
    assert chunked.probability == pytest.approx(whole.probability, abs=1e-7)


# ----- 4: one set of files per record --------------------------------------------------------------


def test_two_records_with_one_id_get_their_own_names_and_files(tmp_path):
    run = save_run(small_model(), tmp_path / "run")
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "rec1.npy", record(seed=seed))
    out = tmp_path / "out"
    found = X.explain_inputs(run, [tmp_path / "a", tmp_path / "b"], labels=["A"], steps=4, fs=FS, out=out)
    names = list(found.explanations)
    assert len(names) == 2 and names[0].endswith(str(Path("a") / "rec1")) and names[1].endswith(str(Path("b") / "rec1"))
    assert len(list(out.glob("*.json"))) == 2 and len(list(out.glob("*.png"))) == 2
    written = {no_nan_json(files[0])["record"]: files[0] for files in found.files.values()}
    assert sorted(written) == sorted(names)
    a = found.explanations[names[0]][0].attribution
    assert not np.allclose(a, found.explanations[names[1]][0].attribution)  # two different records


def test_distinct_ids_that_make_one_file_name_get_distinct_files(tmp_path):
    run = save_run(small_model(), tmp_path / "run")
    np.save(tmp_path / "a b.npy", record(seed=1))
    np.save(tmp_path / "a_b.npy", record(seed=2))
    out = tmp_path / "out"
    found = X.explain_inputs(run, [tmp_path / "a b.npy", tmp_path / "a_b.npy"], labels=["A"], steps=4, fs=FS, out=out)
    assert sorted(found.explanations) == ["a b", "a_b"]
    assert sorted(no_nan_json(p)["record"] for p in out.glob("*.json")) == ["a b", "a_b"]  # "a_b.json" once before
    assert X.file_stems(["rec1", "x"]) == ["rec1", "x"]  # the usual case keeps its plain name
    stems = X.file_stems(["a/rec1", "a_rec1", "A_REC1", "two[0]", "two_0"])
    assert len({s.casefold() for s in stems}) == 5 and all(s.startswith(("a_rec1", "A_REC1", "two_0")) for s in stems)


# ----- 7: the JSON says what its numbers are -------------------------------------------------------


def test_the_json_says_what_its_numbers_mean(tmp_path):
    run = save_run(small_model(), tmp_path / "run")
    np.save(tmp_path / "r.npy", record(980, seed=3))  # at 200 Hz: 490 samples at the model's 100 Hz
    out = tmp_path / "out"
    X.explain_inputs(run, [tmp_path / "r.npy"], labels=["A"], steps=4, fs=200.0, out=out)
    d = no_nan_json(out / "r.json")
    assert d["fs"] == FS and d["record_fs"] == 200.0 and "from 200 Hz to 100 Hz" in d["resampled"]
    assert "probability" in d["unit"] and "|attribution|" in d["per_time_is"] and "sample i at fs" in d["indices"]
    assert d["run_dir"] == str(run) and d["input"] == "time" and d["n_samples"] == 490
    w = d["windows"]
    assert (w["crop_len"], w["stride"], w["aggregate"], w["count"], w["samples_seen"]) == (CROP, STRIDE, "max", 2, 375)
    assert "375 to 489" in w["unseen"] and "0" in w["unseen"]
    lab = d["labels"]["A"]
    assert all(v == 0 for v in lab["per_time"][375:]) and any(v != 0 for v in lab["per_time"][:375])
    assert np.allclose(lab["per_time"], np.abs(np.array(lab["attribution"])).sum(axis=0), rtol=1e-4, atol=1e-9)
