"""Leakage audit: exact and near-duplicate ECGs within and across datasets.

Why: the PhysioNet/CinC 2021 collection re-distributes PTB-XL's records (``HR*``), Chapman-Shaoxing
and Ningbo overlap, and a set can hold one recording twice (G12EC E07509 = E07510). A model
pre-trained on a record and tested on its copy is scored on its training data. The audit finds
such pairs, including the same recording stored at two sampling rates.

How, in one pass over the signals (each record is read once, in worker processes):

1. **Fingerprint** every record: its eight independent leads (I, II, V1-V6; the other four are
   sums of I and II) are resampled to ``rate`` (50 Hz) with the polyphase filter the cache uses,
   and the window ``0.5-5.5 s`` is kept (``window``; 0.5 s is skipped at the start so that the
   resampling filters' edge effects never count). From the window: its RMS over all leads ``r``,
   each lead's RMS, and a 64-number sketch (a fixed Gaussian random projection, seeded: the same
   for every record, run and machine). The window itself goes to a temporary float16 store.
   A hash of the record's own samples (all of them, at its own rate) finds exact copies.
2. **Candidates**: records are sorted by ``r``; a near duplicate's ``r`` can differ by at most the
   RMS of the difference (triangle inequality), so each record is compared only with the slice of
   records whose ``r`` is within that bound, and only through the sketches (one matrix product per
   block of 512 records). The sketch distance is a Johnson-Lindenstrauss estimate of the RMS
   difference; a pair is a candidate when it is within 1.5 x the allowed difference, which misses
   a true pair with probability below 1e-8 (chi-square with 64 degrees of freedom above 144).
3. **Verification** of each candidate on the stored windows: a pair is a near duplicate when
   every lead's RMS difference is at most ``tolerance`` mV *and* the RMS difference over all leads
   is at most ``relative`` x the pair's mean RMS. The relative test keeps low-voltage recordings
   (whose absolute differences are small anyway) from matching each other; the absolute one
   states the agreement in millivolts.

Defaults, measured on the real data here (``tests/test_audit.py``): PTB-XL's ``records100`` and
``records500`` copies of the same 531 recordings differ by at most 0.065 mV (worst lead RMS) and
0.11 (relative) at 50 Hz; 20,000 random pairs of different PTB-XL recordings by at least 0.18 mV
and, among the lowest-voltage ones, 0.84 relative. ``tolerance = 0.1`` mV and ``relative = 0.3``
sit between. Records shorter than 6 s, without the eight leads, or flat (RMS under 0.02 mV over
the window) are listed, not matched.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from scipy.signal import firwin, resample_poly
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..atomic import atomic_write_text
from ..errors import RecordError
from ..signal import resample_ratio
from .audit_settings import AuditSettings
from .base import BlockReader, DatasetAdapter

#: The independent leads of a 12-lead ECG: III, aVR, aVL and aVF are linear combinations of I and II.
AUDIT_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
SKETCH_DIMS = 64
SKETCH_SLACK = 1.5  # candidate when the sketch distance is within 1.5 x the allowed RMS difference
BLOCK = 256
CHUNK = 256

RecordKey = tuple[str, str]  # (set: the dataset root as given, resolved; record id)


@dataclass(frozen=True)
class DuplicatePair:
    """Two records with the same signal: ``exact`` (same samples at the same rate) or ``near``."""

    set_a: str
    record_a: str
    set_b: str
    record_b: str
    kind: str
    rms_mv: float  # worst lead's RMS difference over the window, after resampling to the audit rate
    relative: float  # RMS difference over all leads / the pair's mean RMS
    max_abs_mv: float
    fs_a: float
    fs_b: float

    @property
    def across(self) -> bool:
        return self.set_a != self.set_b


@dataclass
class AuditResult:
    """What :func:`find_duplicates` found; ``write`` saves it as JSON or (pairs only) CSV."""

    settings: AuditSettings
    sets: list[dict]
    pairs: list[DuplicatePair]
    groups: list[list[RecordKey]]
    skipped: list[dict] = field(default_factory=list)
    flat: list[RecordKey] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "settings": {**asdict(self.settings), "leads": list(AUDIT_LEADS)},
            "sets": self.sets,
            "summary": self.summary(),
            "pairs": [asdict(p) for p in self.pairs],
            "groups": [[list(k) for k in g] for g in self.groups],
            "flat": [list(k) for k in self.flat],
            "skipped": self.skipped,
            "seconds": self.seconds,
        }

    def summary(self) -> dict:
        kinds = {(p.kind, p.across) for p in self.pairs}
        count = {
            f"{k}_{'across' if a else 'within'}": sum(p.kind == k and p.across == a for p in self.pairs)
            for k, a in sorted(kinds)
        }
        return {
            "records_audited": sum(s["audited"] for s in self.sets),
            "pairs": len(self.pairs),
            "groups": len(self.groups),
            **count,
            "flat": len(self.flat),
            "skipped": len(self.skipped),
        }

    def write(self, path: str | os.PathLike) -> None:
        """JSON (everything), or CSV (one row per pair) when ``path`` ends in ``.csv``; atomic."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(DuplicatePair.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(asdict(p) for p in self.pairs)
            atomic_write_text(path, buf.getvalue())
        else:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def load_audit(path: str | os.PathLike) -> AuditResult:
    """An audit written by :meth:`AuditResult.write` as JSON."""
    data = json.loads(Path(path).read_text())
    s = data["settings"]
    settings = AuditSettings(s["rate"], tuple(s["window"]), s["tolerance"], s["relative"], s["flat_mv"], s["seed"])
    return AuditResult(
        settings,
        data["sets"],
        [DuplicatePair(**p) for p in data["pairs"]],
        [[tuple(k) for k in g] for g in data["groups"]],
        data["skipped"],
        [tuple(k) for k in data["flat"]],
        data.get("seconds", {}),
    )


# -- opening the sets ---------------------------------------------------------------------------------
def set_name(root: str | os.PathLike) -> str:
    """How a set is named in an audit: its root folder, resolved."""
    return str(Path(root).resolve())


def open_collection(root: str | os.PathLike) -> DatasetAdapter:
    """The adapter for a dataset folder: PTB-XL when it holds ``ptbxl_database.csv`` (its 100 Hz
    records: every record has one), else a CinC-format folder; reading the audit's eight leads."""
    root = Path(root)
    if (root / "ptbxl_database.csv").is_file():
        from .ptbxl import PTBXL

        return PTBXL(root, fs=100, allow_missing=True, leads=AUDIT_LEADS)
    from .cinc import CinCDataset

    return CinCDataset(root, leads=AUDIT_LEADS)


# -- fingerprints ---------------------------------------------------------------------------------------
def projection(settings: AuditSettings) -> np.ndarray:
    """The fixed random projection of a window to its sketch (float32, window size x 64)."""
    lo, hi = settings.samples
    rng = np.random.default_rng(settings.seed)
    return (rng.standard_normal(((hi - lo) * len(AUDIT_LEADS), SKETCH_DIMS)) / np.sqrt(SKETCH_DIMS)).astype(np.float32)


@dataclass
class Fingerprints:
    """Per record: the window (float16, in ``store``), its RMS, each lead's RMS, the sketch, whether
    it is flat, and the hash of the record's own samples; ``ok`` False for records not fingerprinted."""

    store: np.ndarray
    r: np.ndarray
    lead_rms: np.ndarray
    sketch: np.ndarray
    flat: np.ndarray
    digest: np.ndarray
    ok: np.ndarray

    @classmethod
    def empty(cls, n: int, store: np.ndarray) -> "Fingerprints":
        return cls(
            store,
            np.zeros(n),
            np.zeros((n, len(AUDIT_LEADS))),
            np.zeros((n, SKETCH_DIMS), np.float32),
            np.zeros(n, bool),
            np.zeros(n, "S16"),
            np.zeros(n, bool),
        )


def fingerprint(signal: np.ndarray, fs: float, settings: AuditSettings, proj: np.ndarray) -> tuple:
    """(window float16 (samples, 8), r, lead RMS, sketch, flat, digest) of one (samples, 8) mV signal;
    RecordError when it is too short to audit."""
    if signal.ndim != 2 or signal.shape[1] != len(AUDIT_LEADS):
        raise RecordError("", f"signal has shape {signal.shape}, expected (samples, {len(AUDIT_LEADS)} leads)")
    seconds = signal.shape[0] / fs
    if seconds < settings.min_seconds:
        raise RecordError(
            "",
            f"{seconds:g} s is shorter than the audit's {settings.min_seconds:g} s "
            "(window plus filter margins): not audited",
        )
    # float32: what both reading paths (record by record, PTB-XL's block reader) give exactly
    digest = hashlib.sha256(np.ascontiguousarray(signal, dtype="<f4").tobytes() + repr(float(fs)).encode()).digest()[
        :16
    ]
    head = signal[: int(np.ceil((settings.window[1] + settings.window[0]) * fs)) + 1]
    lo, hi = settings.samples
    up, down = resample_ratio(fs, settings.rate)
    window = resample_poly(head, up, down, axis=0, window=_lowpass(up, down))[lo:hi]
    lead_rms = np.sqrt(np.mean(window**2, axis=0))
    r = float(np.sqrt(np.mean(lead_rms**2)))
    sketch = (window.astype(np.float32).reshape(-1) / np.float32(np.sqrt(window.size))) @ proj
    return window.astype(np.float16), r, lead_rms, sketch, r < settings.flat_mv, digest


@functools.lru_cache(maxsize=64)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter ``scipy.signal.resample_poly`` designs for (up, down) (the cache's
    resampling), designed once per rate instead of once per record (it took a third of the time)."""
    rate = max(up, down)
    return firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def _signals(adapter: DatasetAdapter, ids: list[str]) -> Iterator[tuple[str, np.ndarray | Exception]]:
    """(record, (samples, leads) signal or its error); PTB-XL's block reader where it has one."""
    if not isinstance(adapter, BlockReader):
        yield from adapter.iter_signals(ids)
        return
    block, problems = adapter.read_block(ids)
    bad = dict(problems)
    for i, rid in enumerate(ids):
        yield rid, RecordError(rid, bad[rid]) if rid in bad else block[i].T


_WORKER: dict[str, Any] = {}


def _init_worker(adapters: list[DatasetAdapter], settings: AuditSettings, parent_pid: int | None) -> None:
    _WORKER.update(adapters=adapters, settings=settings, proj=projection(settings))
    if parent_pid is not None:
        from .cache_files import die_with_parent

        die_with_parent(parent_pid)


def _work(job: tuple[int, int, list[str], list[float]]) -> tuple[int, list, list[tuple[int, str]]]:
    """Fingerprint one chunk of one set: (first position, results or None, (position, problem))."""
    set_index, start, ids, rates = job
    adapter, settings, proj = _WORKER["adapters"][set_index], _WORKER["settings"], _WORKER["proj"]
    results: list[tuple | None] = []
    problems: list[tuple[int, str]] = []
    for k, ((rid, sig), fs) in enumerate(zip(_signals(adapter, ids), rates)):
        try:
            if isinstance(sig, Exception):
                raise sig if isinstance(sig, RecordError) else RecordError(rid, str(sig))
            results.append(fingerprint(np.asarray(sig, dtype=np.float64), fs, settings, proj))
        except RecordError as exc:
            results.append(None)
            problems.append((start + k, exc.problem if exc.record in ("", rid) else f"{exc.record}: {exc.problem}"))
    return start, results, problems


def _jobs(indexes: list, offsets: list[int]) -> Iterator[tuple[int, int, list[str], list[float]]]:
    for s, index in enumerate(indexes):
        ids, rates = index["record_id"].astype(str).tolist(), index["fs"].astype(float).tolist()
        for i in range(0, len(ids), CHUNK):
            yield s, offsets[s] + i, ids[i : i + CHUNK], rates[i : i + CHUNK]


def _run_pool(adapters: list[DatasetAdapter], jobs: list, settings: AuditSettings, workers: int) -> Iterator:
    if workers > 1 and len(jobs) > 1 and "fork" in mp.get_all_start_methods():
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(adapters, settings, os.getpid())
        ) as pool:
            try:
                yield from pool.map(_work, jobs)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    else:
        _init_worker(adapters, settings, None)
        yield from map(_work, jobs)


def _fingerprint_all(
    adapters: list[DatasetAdapter],
    indexes: list,
    settings: AuditSettings,
    workers: int,
    store_path: Path,
    progress: bool,
) -> tuple[Fingerprints, list[tuple[int, str]]]:
    """Fingerprint every indexed record (each read once); the windows go to a float16 memmap."""
    from tqdm.auto import tqdm

    offsets = np.concatenate([[0], np.cumsum([len(ix) for ix in indexes])]).astype(int).tolist()
    n = offsets[-1]
    lo, hi = settings.samples
    shape = (n, hi - lo, len(AUDIT_LEADS))
    store = (
        np.lib.format.open_memmap(store_path, mode="w+", dtype=np.float16, shape=shape)
        if n
        else np.zeros(shape, np.float16)
    )  # a memmap cannot be empty
    fp = Fingerprints.empty(n, store)
    problems: list[tuple[int, str]] = []
    bar = tqdm(total=n, desc="audit: fingerprints", unit="rec", disable=not progress)
    for start, results, probs in _run_pool(adapters, list(_jobs(indexes, offsets)), settings, workers):
        for k, res in enumerate(results):
            if res is not None:
                i = start + k
                store[i], fp.r[i], fp.lead_rms[i], fp.sketch[i], fp.flat[i], fp.digest[i] = res
                fp.ok[i] = True
        problems += probs
        bar.update(len(results))
    bar.close()
    return fp, problems


# -- matching ---------------------------------------------------------------------------------------------
def exact_groups(digest: np.ndarray, usable: np.ndarray) -> dict[int, list[int]]:
    """Representative position -> the other positions with the same samples at the same rate."""
    groups: dict[bytes, list[int]] = {}
    for i in np.flatnonzero(usable):
        groups.setdefault(bytes(digest[i]), []).append(int(i))
    return {g[0]: g[1:] for g in groups.values() if len(g) > 1}


def candidate_pairs(r: np.ndarray, sketch: np.ndarray, settings: AuditSettings, block: int = BLOCK) -> np.ndarray:
    """Pairs (i, j) of positions whose sketches are within reach (see the module docstring), i < j.

    Per row the reach is taken at the largest partner ``r`` the sorted window allows (a little
    looser than the pair's own bound, never tighter), so each block needs one matrix product and
    two comparisons against per-row bounds; the work is about n x (records in the window) x 64.
    """
    rel = settings.relative
    ratio = (1 + rel / 2) / (1 - rel / 2)  # |r_a - r_b| <= rel * (r_a + r_b) / 2
    order = np.argsort(r, kind="stable")
    rs, sk = r[order], np.ascontiguousarray(sketch[order], dtype=np.float32)
    sq = np.einsum("ij,ij->i", sk, sk)
    last = np.searchsorted(rs, rs * ratio, side="right")  # per row: end of its window
    reach = SKETCH_SLACK * np.minimum(rel * rs * (1 + ratio) / 2, settings.tolerance)
    reach2 = (reach**2).astype(np.float32)
    out = []
    for s in range(0, len(rs), block):
        e = min(len(rs), s + block)
        hi = int(last[e - 1])
        d2 = sk[s:e] @ sk[s:hi].T
        d2 *= -2
        d2 += sq[s:e, None]
        d2 += sq[None, s:hi]
        hit = d2 <= reach2[s:e, None]
        i, j = np.nonzero(hit)
        i, j = i + s, j + s
        keep = (j > i) & (j < last[i])
        out.append(np.stack([order[i[keep]], order[j[keep]]], axis=1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), int)
    return np.sort(pairs, axis=1)


def compare(store: np.ndarray, pairs: np.ndarray, batch: int = 4096) -> np.ndarray:
    """(worst-lead RMS, RMS over leads, mean RMS of the pair, max |diff|) of each pair's windows."""
    out = np.zeros((len(pairs), 4))
    for s in range(0, len(pairs), batch):
        p = pairs[s : s + batch]
        a = np.asarray(store[p[:, 0]], dtype=np.float32)
        b = np.asarray(store[p[:, 1]], dtype=np.float32)
        d = a - b
        lead = np.sqrt(np.mean(d**2, axis=1))
        out[s : s + batch, 0] = lead.max(axis=1)
        out[s : s + batch, 1] = np.sqrt(np.mean(lead**2, axis=1))
        out[s : s + batch, 2] = (np.sqrt(np.mean(a**2, axis=(1, 2))) + np.sqrt(np.mean(b**2, axis=(1, 2)))) / 2
        out[s : s + batch, 3] = np.abs(d).max(axis=(1, 2))
    return out


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (of two or more positions) of the duplicate graph: copies of copies."""
    if not edges:
        return []
    a, b = np.array(edges).T
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for x in sorted(set(a.tolist()) | set(b.tolist())):
        members.setdefault(int(label[x]), []).append(x)
    return sorted(m for m in members.values() if len(m) > 1)


# -- the audit ---------------------------------------------------------------------------------------------
def _as_adapter(item: str | os.PathLike | DatasetAdapter) -> tuple[str, DatasetAdapter]:
    """(set name, adapter) for a dataset folder, or for an adapter reading :data:`AUDIT_LEADS`
    (named by its ``audit_name`` or its ``root``)."""
    if isinstance(item, (str, os.PathLike)):
        return set_name(item), open_collection(item)
    audit_name = getattr(item, "audit_name", None)
    if audit_name:
        return str(audit_name), item
    root = getattr(item, "root", None)
    if root is None:
        raise TypeError(f"{type(item).__name__}: an adapter to audit needs an audit_name or a root folder")
    return set_name(root), item


def _open_sets(roots: Sequence) -> tuple[list[str], list[DatasetAdapter], list, list[dict]]:
    names, adapters, indexes, skipped = [], [], [], []
    for root in roots:
        name, adapter = _as_adapter(root)
        if name in names:
            continue
        index = adapter.index().reset_index(drop=True)
        skipped += [{"set": name, "record": p.record, "problem": p.problem} for p in getattr(adapter, "problems", [])]
        names.append(name)
        adapters.append(adapter)
        indexes.append(index)
    return names, adapters, indexes, skipped


def _pairs(fp: Fingerprints, keys: list[RecordKey], rates: np.ndarray, settings: AuditSettings) -> list[DuplicatePair]:
    """Exact copies (by hash) and verified near pairs among the representatives."""
    usable = fp.ok & ~fp.flat
    groups = exact_groups(fp.digest, usable)
    copies = {m for members in groups.values() for m in members}
    pairs = [(rep, m, "exact") for rep, members in groups.items() for m in members]
    reps = np.array([i for i in np.flatnonzero(usable) if i not in copies], dtype=int)
    cand = reps[candidate_pairs(fp.r[reps], fp.sketch[reps], settings)] if len(reps) > 1 else np.zeros((0, 2), int)
    stats = compare(fp.store, cand)
    ok = (stats[:, 0] <= settings.tolerance) & (stats[:, 1] <= settings.relative * stats[:, 2])
    result = [_pair(keys, rates, a, b, "exact", np.zeros(4)) for a, b, _ in pairs]
    result += [_pair(keys, rates, int(a), int(b), "near", st) for (a, b), st in zip(cand[ok], stats[ok])]
    return sorted(result, key=lambda p: (p.set_a, p.record_a, p.set_b, p.record_b))


def _pair(keys: list[RecordKey], rates: np.ndarray, a: int, b: int, kind: str, st: np.ndarray) -> DuplicatePair:
    if keys[b] < keys[a]:
        a, b = b, a
    rel = float(st[1] / st[2]) if st[2] > 0 else 0.0
    return DuplicatePair(
        keys[a][0],
        keys[a][1],
        keys[b][0],
        keys[b][1],
        kind,
        round(float(st[0]), 5),
        round(rel, 5),
        round(float(st[3]), 5),
        float(rates[a]),
        float(rates[b]),
    )


def find_duplicates(
    roots: Sequence[str | os.PathLike | DatasetAdapter],
    *,
    settings: AuditSettings | None = None,
    workers: int | None = None,
    work_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> AuditResult:
    """Audit the datasets at ``roots`` (PTB-XL or CinC-format folders, or adapters reading
    :data:`AUDIT_LEADS`) for duplicate signals.

    Each record is read once (``workers`` processes, default 2); the temporary window store
    (8 leads x 250 samples x 2 bytes a record) lives in ``work_dir`` (default: the system's
    temporary folder) and is removed at the end.
    """
    settings = settings or AuditSettings()
    t0 = time.perf_counter()
    names, adapters, indexes, skipped = _open_sets(roots)
    keys = [(name, str(rid)) for name, ix in zip(names, indexes) for rid in ix["record_id"]]
    rates = np.concatenate([ix["fs"].to_numpy(dtype=float) for ix in indexes]) if keys else np.zeros(0)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ecg-audit-", dir=work_dir) as tmp:
        fp, problems = _fingerprint_all(
            adapters, indexes, settings, workers or min(2, os.cpu_count() or 1), Path(tmp) / "windows.npy", progress
        )
        t2 = time.perf_counter()
        pairs = _pairs(fp, keys, rates, settings)
        del fp.store
    t3 = time.perf_counter()
    skipped += [{"set": keys[i][0], "record": keys[i][1], "problem": msg} for i, msg in problems]
    position = {k: i for i, k in enumerate(keys)}
    groups = _components(len(keys), [(position[(p.set_a, p.record_a)], position[(p.set_b, p.record_b)]) for p in pairs])
    bounds = np.cumsum([0] + [len(ix) for ix in indexes])
    sets = [
        {"set": name, "kind": a.name, "records": len(ix), "audited": int(fp.ok[bounds[k] : bounds[k + 1]].sum())}
        for k, (name, a, ix) in enumerate(zip(names, adapters, indexes))
    ]
    return AuditResult(
        settings,
        sets,
        pairs,
        [[keys[i] for i in g] for g in groups],
        skipped,
        [keys[i] for i in np.flatnonzero(fp.ok & fp.flat)],
        {
            "index": round(t1 - t0, 2),
            "fingerprints": round(t2 - t1, 2),
            "matching": round(t3 - t2, 2),
            "total": round(t3 - t0, 2),
        },
    )


def _normalise(keys: Iterable[tuple[str | os.PathLike, str]]) -> set[RecordKey]:
    return {(set_name(root), str(rid)) for root, rid in keys}


def leaked_records(
    source_ids: Iterable[tuple[str | os.PathLike, str]],
    target_test_ids: Iterable[tuple[str | os.PathLike, str]],
    audit: AuditResult,
) -> list[tuple[RecordKey, RecordKey]]:
    """(source record, target test record) for every target test record whose signal is also a
    source (pre-training) record, directly or through a chain of duplicates. Records are given as
    (dataset root, record id); the roots are resolved as the audit names its sets."""
    source, target = _normalise(source_ids), _normalise(target_test_ids)
    leaks = []
    for group in audit.groups:
        members = set(group)
        for t in sorted(members & target):
            leaks += [(s, t) for s in sorted(members & source) if s != t]
    return leaks
