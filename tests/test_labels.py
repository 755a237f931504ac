"""Tests of ecg_transfer.labels: PTB-XL tasks, the CinC 2020/2021 label spaces, SCP->SNOMED, protocols,
the ``dx`` label set."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_transfer.errors import ConfigError, DatasetError
from ecg_transfer.labels import (
    DX_EQUIVALENCES,
    EQUIVALENT_CODES,
    EQUIVALENT_CODES_2021,
    PROTOCOLS,
    PTBXL_TASKS,
    canonical_code,
    describe,
    dx_classes,
    dx_labels,
    dx_mapping_table,
    encode_dx,
    get_protocol,
    load_weights,
    mapping_table,
    parse_scp_codes,
    scored_classes,
    scored_codes,
    scp_to_snomed,
    snomed_lookup,
    snomed_to_scp,
    task_labels,
    unknown_codes,
    with_heart_axis,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PTBXL = SHARED / "ptbxl"
CINC_LABELS = SHARED / "cinc_labels"

# The original study's 18 pairs, restated from REFERENCE.md rather than imported from the code.
STUDY_PAIRS = {
    "1AVB": "270492004",
    "2AVB": "195042002",
    "CLBBB": "164909002",
    "CRBBB": "713427006",
    "ILBBB": "251120003",
    "IRBBB": "713426002",
    "ISCAN": "426434006",
    "ISCIN": "425419005",
    "ISCLA": "425623009",
    "IVCD": "698252002",
    "LAFB": "445118002",
    "LAO/LAE": "67741000119109",
    "LNGQT": "111975006",
    "LPFB": "445211001",
    "LVH": "164873001",
    "NDT": "428750005",
    "RVH": "89792004",
    "SEHYP": "266249003",
}


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"real data not found at {path}")


# ---------------------------------------------------------------- parse_scp_codes


def test_parse_scp_codes_reads_the_dict_literal():
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0}") == {"NORM": 100.0, "SR": 0.0}


@pytest.mark.parametrize("bad", ["{'NORM': 100.0", "['NORM']", "{'NORM': 'high'}", "__import__('os')"])
def test_parse_scp_codes_names_the_malformed_string(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_scp_codes(bad)


def _literal_only(cell: str) -> dict | str:
    """What the literal parser alone makes of a cell (the reference for the JSON fast path)."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "refused"
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()
    ):
        return "refused"
    try:
        return {k: float(v) for k, v in value.items()}
    except OverflowError:
        return "refused"


@pytest.mark.parametrize(
    "cell",
    [
        "{'NORM': 100.0, 'SR': 0.0}",
        "{'A': 1, 'A': 2}",
        "{'A': true}",
        "{'A': True}",
        "{'A': NaN}",
        "{'A': Infinity}",
        "{'A': 1e400}",
        "{'A': -0.0}",
        "{'A': null}",
        "{'A': None}",
        "{'a\\/b': 1}",
        "{'a\\u0041': 1}",
        "{'it\"s': 1}",
        "{1: 2}",
        "{'A': 1,}",
        "{'A': +1}",
        "{'A': 1_0}",
        "{'A': 0x10}",
        "{'A': " + "9" * 400 + "}",
        "{'A': [1]}",
        "{'A': {'B': 1}}",
        "{}",
        "[]",
        "'A'",
        "{'A' 'B': 1}",
        "{'A': 01}",
        "{'A':\t1}",
        '{"A": 1}',
    ],
)
@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
def test_parse_scp_codes_fast_path_agrees_with_the_literal_parser(cell):
    """The JSON reading of the common form (for speed) accepts exactly what ``ast.literal_eval``
    accepts, with the same values and key order; everything else is refused by name."""
    expected = _literal_only(cell)
    if expected == "refused":
        with pytest.raises(ValueError, match="malformed scp_codes"):
            parse_scp_codes(cell)
    else:
        got = parse_scp_codes(cell)
        assert got == expected and list(got) == list(expected)
        assert all(type(v) is float for v in got.values())


def test_parse_scp_codes_agrees_with_the_literal_parser_on_real_ptbxl(ptbxl_root):
    db = pd.read_csv(ptbxl_root / "ptbxl_database.csv", usecols=["scp_codes"])
    cells = db["scp_codes"].tolist()
    assert [parse_scp_codes(c) for c in cells] == [_literal_only(c) for c in cells]


# ---------------------------------------------------------------- tasks on a tiny table


@pytest.fixture
def tiny_statements() -> pd.DataFrame:
    # code: diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass
    rows = {
        "NORM": (1, None, None, "NORM", "NORM"),
        "IMI": (1, None, None, "MI", "IMI"),
        "ASMI": (1, None, None, "MI", "AMI"),
        "NDT": (1, 1, None, "STTC", "STTC"),
        "PVC": (None, 1, None, None, None),
        "SR": (None, None, 1, None, None),
        "AFIB": (None, None, 1, None, None),
    }
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
    )
    table[["diagnostic", "form", "rhythm"]] = table[["diagnostic", "form", "rhythm"]].astype(float)
    return table


@pytest.fixture
def tiny_database() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scp_codes": [
                "{'NORM': 100.0, 'SR': 0.0}",
                "{'IMI': 50.0, 'ASMI': 100.0, 'SR': 0.0}",
                "{'NDT': 100.0, 'PVC': 0.0, 'AFIB': 0.0}",
                "{'IMI': 15.0, 'AFIB': 0.0}",
                "{'PVC': 0.0}",
            ]
        }
    )


def test_tiny_tasks_every_key_counts(tiny_database, tiny_statements):
    classes, y = task_labels(tiny_database, tiny_statements, "diagnostic")
    assert classes == ["ASMI", "IMI", "NDT", "NORM"]
    np.testing.assert_array_equal(y, [[0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert y.dtype == np.uint8

    classes, y = task_labels(tiny_database, tiny_statements, "superdiagnostic")
    assert classes == ["MI", "NORM", "STTC"]
    np.testing.assert_array_equal(y, [[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])

    classes, y = task_labels(tiny_database, tiny_statements, "subdiagnostic")
    assert classes == ["AMI", "IMI", "NORM", "STTC"]
    np.testing.assert_array_equal(y[1], [1, 1, 0, 0])

    classes, y = task_labels(tiny_database, tiny_statements, "form")
    assert classes == ["NDT", "PVC"]
    np.testing.assert_array_equal(y, [[0, 0], [0, 0], [1, 1], [0, 0], [0, 1]])

    classes, y = task_labels(tiny_database, tiny_statements, "rhythm")
    assert classes == ["AFIB", "SR"]
    np.testing.assert_array_equal(y, [[0, 1], [0, 1], [1, 0], [1, 0], [0, 0]])

    classes, y = task_labels(tiny_database, tiny_statements, "all")
    assert classes == ["AFIB", "ASMI", "IMI", "NDT", "NORM", "PVC", "SR"]
    assert y.sum() == 2 + 3 + 3 + 2 + 1  # keys per record


def test_tiny_min_likelihood_keeps_keys_at_or_above_it(tiny_database, tiny_statements):
    classes, y = task_labels(tiny_database, tiny_statements, "diagnostic", min_likelihood=50)
    assert classes == ["ASMI", "IMI", "NDT", "NORM"]
    # record 3 had IMI only at 15: now unlabelled; record 1 keeps IMI at exactly 50
    np.testing.assert_array_equal(y, [[0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    # rhythm statements carry likelihood 0: any positive threshold empties the task
    classes, y = task_labels(tiny_database, tiny_statements, "rhythm", min_likelihood=1)
    assert classes == [] and y.shape == (5, 0)


def test_tiny_min_count_drops_rare_classes(tiny_database, tiny_statements):
    # diagnostic counts: ASMI 1, IMI 2, NDT 1, NORM 1
    classes, y = task_labels(tiny_database, tiny_statements, "diagnostic", min_count=2)
    assert classes == ["IMI"]
    np.testing.assert_array_equal(y[:, 0], [0, 1, 0, 1, 0])


def test_tasks_accept_parsed_dicts(tiny_database, tiny_statements):
    parsed = tiny_database.assign(scp_codes=[parse_scp_codes(s) for s in tiny_database.scp_codes])
    a = task_labels(tiny_database, tiny_statements, "all")
    b = task_labels(parsed, tiny_statements, "all")
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_unknown_task_names_the_allowed_ones(tiny_database, tiny_statements):
    with pytest.raises(ConfigError) as err:
        task_labels(tiny_database, tiny_statements, "diagnostics")
    assert all(task in str(err.value) for task in PTBXL_TASKS)


def test_statement_missing_from_the_table_is_an_error(tiny_statements):
    database = pd.DataFrame({"scp_codes": ["{'NORM': 100.0}", "{'NROM': 100.0}"]})
    with pytest.raises(DatasetError, match="NROM"):
        task_labels(database, tiny_statements, "all")


# ---------------------------------------------------------------- tasks on the real PTB-XL


@pytest.fixture(scope="module")
def ptbxl() -> tuple[pd.DataFrame, pd.DataFrame]:
    if not (PTBXL / "ptbxl_database.csv").exists():
        pytest.skip(f"real data not found at {PTBXL}")
    database = pd.read_csv(PTBXL / "ptbxl_database.csv", index_col="ecg_id")
    database["scp_codes"] = [parse_scp_codes(s) for s in database["scp_codes"]]
    statements = pd.read_csv(PTBXL / "scp_statements.csv", index_col=0)
    return database, statements


@pytest.mark.realdata
def test_real_task_sizes(ptbxl):
    database, statements = ptbxl
    sizes = {task: len(task_labels(database, statements, task)[0]) for task in PTBXL_TASKS}
    assert sizes == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}


@pytest.mark.realdata
def test_real_superclass_counts_match_the_ptbxl_paper(ptbxl):
    database, statements = ptbxl
    classes, y = task_labels(database, statements, "superdiagnostic")
    # records per superclass as published with PTB-XL (Wagner et al. 2020; PhysioNet page)
    assert dict(zip(classes, y.sum(axis=0).tolist())) == {
        "NORM": 9528,
        "MI": 5486,
        "STTC": 5250,
        "CD": 4907,
        "HYP": 2655,
    }
    assert y.shape[0] == len(database)


# ---------------------------------------------------------------- CinC 2020 label space


def test_scored_codes_and_equivalences():
    codes = scored_codes()
    assert len(codes) == 27 and len(set(codes)) == 27
    classes = scored_classes()
    assert len(classes) == 24
    assert sorted(c for cls in classes for c in cls) == sorted(codes)
    for group in EQUIVALENT_CODES:
        assert tuple(group) in classes
        assert {canonical_code(c) for c in group} == {group[0]}


def test_equivalences_are_the_ones_the_mapping_file_notes():
    notes = dx_mapping_table()["notes"].dropna()
    noted = {tuple(re.findall(r"\d+", note)) for note in notes}
    assert noted == {tuple(group) for group in EQUIVALENT_CODES}


def test_lookup_covers_scored_and_unscored_codes():
    lookup = snomed_lookup()
    assert lookup["59118001"].abbreviation == "RBBB" and lookup["59118001"].scored
    assert lookup["164930006"].abbreviation == "STIAb" and not lookup["164930006"].scored
    assert describe("713427006") == "CRBBB (complete right bundle branch block)"
    assert describe("123") == "123"


def test_unknown_codes_lists_codes_in_neither_file_once():
    assert unknown_codes(["426783006", " 999 ", "164930006", "999", "17338001"]) == ["999"]
    assert unknown_codes([]) == []


def test_packaged_weights_merge_the_equivalent_codes():
    classes, weights = load_weights()
    assert classes == list(scored_classes())
    assert weights.shape == (24, 24)
    np.testing.assert_array_equal(np.diag(weights), np.ones(24))
    np.testing.assert_array_equal(weights, weights.T)
    # IAVB vs AF as written in the file (row 270492004, column 164889003)
    assert weights[classes.index(("270492004",)), classes.index(("164889003",))] == 0.3


@needs(CINC_LABELS / "evaluation-2021" / "weights.csv")
@pytest.mark.realdata
def test_2021_weights_with_joined_codes():
    classes, weights = load_weights(CINC_LABELS / "evaluation-2021" / "weights.csv")
    assert len(classes) == 26 and weights.shape == (26, 26)
    assert ("733534002", "164909002") in classes and ("713427006", "59118001") in classes


def test_weights_reject_equivalent_codes_with_different_weights(tmp_path):
    path = tmp_path / "weights.csv"
    path.write_text(",1,2,3\n1,1.0,0.5,0.2\n2,0.5,1.0,0.3\n3,0.2,0.3,1.0\n")
    classes, weights = load_weights(path, equivalences=())
    assert classes == [("1",), ("2",), ("3",)]
    with pytest.raises(DatasetError, match="differ"):
        load_weights(path, equivalences=[("1", "2")])
    path.write_text(",1,2,3\n1,1.0,1.0,0.2\n2,1.0,1.0,0.2\n3,0.2,0.2,1.0\n")
    classes, weights = load_weights(path, equivalences=[("1", "2")])
    assert classes == [("1", "2"), ("3",)]
    np.testing.assert_array_equal(weights, [[1.0, 0.2], [0.2, 1.0]])


# ---------------------------------------------------------------- the SCP -> SNOMED table


def test_table_uses_only_codes_the_challenge_names():
    table = mapping_table()
    lookup = snomed_lookup()
    assert set(table["snomed_code"]) <= set(lookup)
    for row in table.itertuples():
        assert row.snomed_abbreviation == lookup[row.snomed_code].abbreviation
        assert row.relation in {"exact", "broader", "narrower", "related"}
        assert row.source in {"cinc2020", "study"}
    assert not table.duplicated(["scp_code", "snomed_code"]).any()


def test_study_pairs_are_in_the_table():
    forward = scp_to_snomed()
    for scp, snomed in STUDY_PAIRS.items():
        assert snomed in forward[scp], scp
        assert scp in snomed_to_scp()[snomed]
    # the one pair the challenge itself did not make
    assert scp_to_snomed("cinc2020")["NDT"] == ["164934002"]
    assert scp_to_snomed("study") == {"NDT": ["428750005"]}
    with pytest.raises(ConfigError, match="cinc2020"):
        scp_to_snomed("cinc2021")


@pytest.mark.realdata
def test_table_covers_every_scp_statement(ptbxl):
    _, statements = ptbxl
    table = mapping_table()
    statement_rows = table[table["scp_kind"] != "heart_axis"]
    assert set(statement_rows["scp_code"]) == set(statements.index)
    for row in statement_rows.itertuples():
        assert row.scp_description == statements.loc[row.scp_code, "description"]


@pytest.mark.realdata
def test_snomed_counts_agree_with_the_challenge_ptbxl_column(ptbxl):
    """For every SNOMED code: PTB-XL records holding a mapped statement (any likelihood) or heart
    axis vs the challenge's own count of PTB-XL records with that code. They agree exactly on
    PTB-XL 1.0.3; the tolerance only leaves room for relabelled records in a future release."""
    database, _ = ptbxl
    keys_per_record = [
        set(with_heart_axis(codes, axis)) for codes, axis in zip(database["scp_codes"], database["heart_axis"])
    ]
    challenge = dx_mapping_table().set_index("code")["PTB-XL"]
    mapped = snomed_to_scp("cinc2020")
    # every code the challenge gave PTB-XL records must be mapped, and no mapped code lacks them
    assert set(challenge[challenge > 0].index) == set(mapped)
    disagreements = {}
    for code, statements in mapped.items():
        ours = sum(1 for keys in keys_per_record if keys & set(statements))
        expected = int(challenge[code])
        if abs(ours - expected) > max(3, 0.01 * expected):
            disagreements[describe(code)] = (ours, expected)
    assert not disagreements, f"(ours, challenge) per code: {disagreements}"


# ---------------------------------------------------------------- protocols


def test_protocol_sizes_and_names():
    assert PROTOCOLS == ("seed18", "cinc2020")
    seed18, cinc2020 = get_protocol("seed18"), get_protocol("cinc2020")
    assert len(seed18.classes) == 18 and len(cinc2020.classes) == 24
    assert seed18.class_names == tuple(STUDY_PAIRS)
    assert "CRBBB|RBBB" in cinc2020.class_names and "PAC|SVPB" in cinc2020.class_names
    with pytest.raises(ConfigError) as err:
        get_protocol("seed19")
    assert "seed18" in str(err.value) and "cinc2020" in str(err.value)


def test_seed18_classes_have_both_code_systems():
    for label_class in get_protocol("seed18").classes:
        assert label_class.scp_codes == {label_class.name}
        assert STUDY_PAIRS[label_class.name] in label_class.snomed_codes
    crbbb = get_protocol("seed18").classes[list(STUDY_PAIRS).index("CRBBB")]
    assert crbbb.snomed_codes == {"713427006", "59118001"}


def test_encode_snomed_applies_the_equivalences():
    seed18 = get_protocol("seed18")
    y = seed18.encode_snomed([["59118001"], ["713427006", "426783006"], ["164889003"], []])
    crbbb = seed18.class_names.index("CRBBB")
    np.testing.assert_array_equal(y[:, crbbb], [1, 1, 0, 0])
    assert y.sum() == 2  # sinus rhythm and AF are outside seed18: they set nothing

    cinc = get_protocol("cinc2020")
    y = cinc.encode_snomed([["63593006"], ["284470004"], ["17338001"], ["164865005"], ["999"]])
    pac, pvc = cinc.class_names.index("PAC|SVPB"), cinc.class_names.index("PVC|VPB")
    np.testing.assert_array_equal(y[:, pac], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(y[:, pvc], [0, 0, 1, 0, 0])
    assert y[3:].sum() == 0  # unscored MI and an unknown code set nothing
    assert y.dtype == np.uint8 and y.shape == (5, 24)


def test_encode_snomed_refuses_a_bare_string():
    with pytest.raises(ValueError, match="split"):
        get_protocol("seed18").encode_snomed(["713427006,59118001"])


def test_encode_scp():
    seed18 = get_protocol("seed18")
    y = seed18.encode_scp([{"CRBBB": 100.0}, "{'NDT': 50.0, 'SR': 0.0}", {"NORM": 100.0}])
    names = seed18.class_names
    assert y[0, names.index("CRBBB")] == 1 and y[0].sum() == 1
    assert y[1, names.index("NDT")] == 1 and y[1].sum() == 1
    assert y[2].sum() == 0
    y = seed18.encode_scp([{"NDT": 50.0}, {"NDT": 60.0}], min_likelihood=60)
    np.testing.assert_array_equal(y[:, names.index("NDT")], [0, 1])

    cinc = get_protocol("cinc2020")
    y = cinc.encode_scp(
        [
            {"NORM": 100.0},
            {"SVARR": 0.0},
            with_heart_axis({"SR": 0.0}, "ALAD"),
            with_heart_axis({"LVH": 100.0}, float("nan")),
        ]
    )
    names = cinc.class_names
    assert y[0, names.index("NSR")] == 1 and y[0].sum() == 1
    assert y[1, names.index("PAC|SVPB")] == 1 and y[1].sum() == 1
    assert y[2, names.index("LAD")] == 1 and y[2, names.index("NSR")] == 1 and y[2].sum() == 2
    assert y[3].sum() == 0  # LVH is not a scored class


@needs(SHARED / "g12ec")
@pytest.mark.realdata
def test_g12ec_codes_are_all_known():
    codes = []
    for header in sorted((SHARED / "g12ec").glob("*.hea")):
        for line in header.read_text().splitlines():
            if line.startswith("#Dx:"):
                codes += line.split(":", 1)[1].split(",")
    assert codes and unknown_codes(codes) == []
    y = get_protocol("cinc2020").encode_snomed([[c] for c in codes])
    assert y.sum() > 0


# ---------------------------------------------------------------- CinC 2021 and the dx label set

CODES_2021_ONLY = {"55827005": "LVHV", "251223006": "TPW", "733534002": "CLBBB", "365413008": "PRWP"}


def test_2021_codes_are_known_with_their_names():
    assert unknown_codes(list(CODES_2021_ONLY)) == []
    lookup = snomed_lookup()
    for code, abbreviation in CODES_2021_ONLY.items():
        assert lookup[code].abbreviation == abbreviation and not lookup[code].scored
    assert lookup["733534002"].scored_2021 and lookup["6374002"].scored_2021 and not lookup["6374002"].scored
    assert lookup["59118001"].scored and lookup["59118001"].scored_2021


def test_2021_mapping_extends_2020_with_the_same_names():
    old, new = dx_mapping_table(2020).set_index("code"), dx_mapping_table(2021).set_index("code")
    assert set(old.index) < set(new.index) and len(set(new.index) - set(old.index)) == 22
    joined = old[["abbreviation"]].merge(
        new[["abbreviation"]], left_index=True, right_index=True, suffixes=("", "_2021")
    )
    assert len(joined) == len(old)
    assert (joined["abbreviation"] == joined["abbreviation_2021"]).all()
    assert {"Chapman-Shaoxing", "Ningbo", "PTB-XL", "CPSC-Extra"} <= set(new.columns)
    with pytest.raises(ValueError, match="2019"):
        dx_mapping_table(2019)


def test_2021_equivalences_are_the_ones_its_mapping_file_notes():
    notes = dx_mapping_table(2021)["notes"].dropna()
    noted = {tuple(re.findall(r"\d+", note)) for note in notes}
    assert noted == {tuple(group) for group in EQUIVALENT_CODES_2021}
    assert set(EQUIVALENT_CODES) < set(EQUIVALENT_CODES_2021) and DX_EQUIVALENCES == EQUIVALENT_CODES_2021


def test_packaged_2021_weights():
    classes, weights = load_weights(year=2021)
    assert len(classes) == 26 and weights.shape == (26, 26)
    assert ("733534002", "164909002") in classes and ("713427006", "59118001") in classes


@needs(CINC_LABELS / "evaluation-2021")
@pytest.mark.realdata
@pytest.mark.parametrize("year", [2020, 2021])
@pytest.mark.parametrize("name", ["dx_mapping_scored", "dx_mapping_unscored", "weights"])
def test_packaged_label_files_are_the_challenge_files(year, name):
    from importlib import resources

    packaged = (resources.files("ecg_transfer.labels") / "data" / f"cinc{year}_{name}.csv").read_bytes()
    assert packaged == (CINC_LABELS / f"evaluation-{year}" / f"{name}.csv").read_bytes()


def test_dx_classes_merge_equivalents_and_order_by_count():
    dx = [
        ["59118001", "426783006"],
        ["713427006"],
        ["733534002"],
        ["164909002", "733534002"],
        ["999999"],
        ["426783006", " 164909002 "],
        [],
    ]
    classes = dx_classes(dx)
    by_name = {c.name: c for c in classes}
    assert by_name["CRBBB|RBBB"].codes == ("713427006", "59118001") and by_name["CRBBB|RBBB"].count == 2
    assert by_name["CLBBB|LBBB"].count == 3  # a record with both codes counts once
    assert by_name["NSR"].count == 2 and by_name["999999"].count == 1  # unknown: named by its code
    assert [c.name for c in classes] == ["CLBBB|LBBB", "NSR", "CRBBB|RBBB", "999999"]  # ties: by code
    y = encode_dx(dx, classes)
    np.testing.assert_array_equal(
        y, [[0, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    )
    with pytest.raises(ValueError, match="split"):
        dx_classes(["713427006,59118001"])


def test_dx_labels_need_a_dx_column():
    names, y = dx_labels(pd.DataFrame({"dx": [["164889003"], ["164889003", "55827005"]]}))
    assert names == ["AF", "LVHV"] and y.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match="no 'dx' column"):
        dx_labels(pd.DataFrame({"scp_codes": [{}]}))


@needs(SHARED / "g12ec")
@pytest.mark.realdata
def test_real_g12ec_dx_set_counts_every_code():
    from ecg_transfer.datasets.cinc import CinCDataset

    table = CinCDataset(SHARED / "g12ec").index()
    names, y = dx_labels(table)
    merged = {"59118001": "713427006", "63593006": "284470004", "17338001": "427172004", "164909002": "733534002"}
    per_record = [{merged.get(c, c) for c in dx} for dx in table["dx"]]
    codes = sorted({c for r in per_record for c in r})
    assert len(names) == len(codes) == y.shape[1] and y.shape[0] == 74
    assert sorted(y.sum(axis=0).tolist()) == sorted(sum(c in r for r in per_record) for c in codes)
    assert all(not n.isdigit() for n in names)  # every G12EC code has a name in the mappings
