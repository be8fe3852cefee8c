"""Configured estimators, ``"name:key=value,..."``: parsing and canonical names, exact
values against direct computation, report columns, executors, pickling, the CLI."""

import pickle

import numpy as np
import pandas as pd
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import kcomplex
from kcomplex import BDM, symbolize
from kcomplex import distributed as kd
from kcomplex.cli import main
from kcomplex.compressors import CODECS, compressed_bits
from kcomplex.estimators import ESTIMATORS, PRESETS, Key, resolve_estimators, spelling_help

VALID = f"valid: {', '.join(ESTIMATORS)}; presets: {', '.join(PRESETS)}"
SPECS = ["bdm", "bdm:n_symbols=4,method=quantile", "zstd", "zstd:level=19"]


def _one(spec: str):
    (est,) = resolve_estimators([spec])
    return est


# --- parsing and canonical names -----------------------------------------------------


@pytest.mark.parametrize("spec, canonical", [
    ("bdm:n_symbols=4,method=quantile", "bdm:n_symbols=4,method=quantile"),
    ("bdm:method=quantile,n_symbols=4", "bdm:n_symbols=4,method=quantile"),
    ("bdm:n_symbols=09,method=uniform", "bdm:n_symbols=9,method=uniform"),
    ("bdm:method=uniform", "bdm:method=uniform"),
    ("bdm:n_symbols=2,method=uniform", "bdm:method=uniform"),
    ("zstd:level=19", "zstd:level=19"),
    ("zstd:long=1,level=19", "zstd:level=19,long=1"),
    ("zstd:long=TRUE", "zstd:long=1"),
    (" zstd : level = 5 , long = false ", "zstd:level=5"),
    ("lzma:level=6", "lzma:level=6"),
    ("gzip:level=+6", "gzip:level=6"),
    ("bz2:level=1", "bz2:level=1"),
])
def test_canonical_names(spec, canonical):
    assert _one(spec).name == canonical
    assert _one(canonical).name == canonical  # canonical names resolve to themselves


@pytest.mark.parametrize("spec, name", [
    ("zstd:level=3", "zstd"), ("zstd:level=3,long=0", "zstd"), ("gzip:level=9", "gzip"),
    ("lzma:level=9", "lzma"), ("bz2:level=9", "bz2"), ("bdm:n_symbols=2", "bdm"),
    ("bdm:method=sign", "bdm"), ("bdm:n_symbols=2,method=sign", "bdm"),
])
def test_defaults_are_the_registry_entry(spec, name):
    assert _one(spec) is ESTIMATORS[name]


def test_lists_mix_names_and_specs_in_order():
    assert [e.name for e in resolve_estimators(SPECS)] == SPECS
    assert [e.name for e in resolve_estimators("zstd:level=19")] == ["zstd:level=19"]


def test_presets_are_unchanged():
    for preset, names in PRESETS.items():
        assert [e.name for e in resolve_estimators(preset)] == list(names)
        assert all(e is ESTIMATORS[e.name] for e in resolve_estimators(preset))


def _keys(name: str) -> list[str]:
    return [k.describe() for k in ESTIMATORS[name].keys]


@pytest.mark.parametrize("spec, match", [
    ("zstd:level=30", r"level must be an integer in \[1, 22\], got 30"),
    ("gzip:level=-1", r"level must be an integer in \[0, 9\], got -1"),
    ("bz2:level=0", r"level must be an integer in \[1, 9\], got 0"),
    ("zstd:level=1.5", "level must be an integer, got '1.5'"),
    ("zstd:level=", "level must be an integer, got ''"),
    ("zstd:lvl=3", "unknown key 'lvl'"),
    ("gzip:long=1", "unknown key 'long'"),
    ("zstd:long=2", "long must be one of '0', '1', 'false', 'true'; got '2'"),
    ("zstd:", "no key=value after ':'"),
    ("zstd:level", "expected key=value, got 'level'"),
    ("zstd:level=3,,long=1", "expected key=value, got ''"),
    ("zstd:level=3,level=4", "key 'level' given twice"),
    ("bdm:n_symbols=3,method=uniform", "n_symbols must be one of 2, 4, 5, 6, 9; got 3"),
    ("bdm:method=median", "method must be one of 'sign', 'uniform', 'quantile'"),
    ("bdm:n_symbols=4", "method 'sign' .* with n_symbols=4 give method=uniform or "
                        "method=quantile"),
])
def test_bad_keys_and_values_name_the_valid_ones(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        resolve_estimators(["bdm", spec])
    message = str(info.value)
    name = spec.partition(":")[0]
    assert f"estimator {spec!r}" in message
    assert VALID in message
    for described in _keys(name):
        assert described in message


def test_keys_of_an_estimator_without_keys():
    with pytest.raises(ValueError, match="unknown key 'x'; 'entropy' takes no keys") as info:
        resolve_estimators("entropy:x=1")
    assert VALID in str(info.value)


@pytest.mark.parametrize("specs, match", [
    (["nope:level=3"], r"unknown estimator\(s\) \['nope:level=3'\]"),
    (["default:level=3"], r"unknown estimator\(s\) \['default:level=3'\]"),
    (["zstd", "zstd:level=3"], r"\['zstd'\] given more than once \(as \['zstd', "
                               r"'zstd:level=3'\]\)"),
    (["zstd:level=19,long=0", "zstd:level=19"], r"\['zstd:level=19'\] given more than once"),
    (["bdm:method=quantile,n_symbols=4", "bdm:n_symbols=4,method=quantile"],
     r"\['bdm:n_symbols=4,method=quantile'\] given more than once"),
])
def test_unknown_names_and_twice_by_canonical_name(specs, match):
    with pytest.raises(ValueError, match=match) as info:
        resolve_estimators(specs)
    assert VALID in str(info.value)


@pytest.mark.parametrize("key", [k for e in ESTIMATORS.values() for k in e.keys],
                         ids=lambda k: k.name)
def test_every_valid_value_round_trips_through_its_spelling(key):
    values = (False, True) if isinstance(key.default, bool) else key.valid
    for value in values:
        assert key.parse(key.spell(value)) == value
    assert key.spell(key.default) in key.describe()


def test_key_parse_rejects_what_it_does_not_list():
    key = Key("level", 3, range(1, 23))
    with pytest.raises(ValueError, match=r"\[1, 22\]"):
        key.parse("23")


# --- values ----------------------------------------------------------------------------


def _direct_bdm(w: np.ndarray, n_symbols: int, method: str) -> float:
    return BDM(n_symbols=n_symbols).bdm(symbolize(w, n_symbols, method))


@settings(max_examples=25, deadline=None)
@given(n_symbols=st.sampled_from([2, 4, 5, 6, 9]),
       method=st.sampled_from(["uniform", "quantile"]),
       sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
       seed=st.integers(0, 2**32 - 1), decimals=st.sampled_from([0, 1, 6]))
def test_symbolized_bdm_is_bdm_of_the_symbolized_vector(n_symbols, method, sizes, seed,
                                                        decimals):
    rng = np.random.default_rng(seed)
    # Rounded weights tie at the bin edges, which quantile bins send upwards.
    pieces = [np.round(rng.normal(size=n), decimals).astype(np.float32) for n in sizes]
    w = np.concatenate(pieces)
    est = _one(f"bdm:n_symbols={n_symbols},method={method}")
    assert not est.mergeable
    if w.size < 12:
        with pytest.raises(ValueError, match=r"fewer weights than one block \(12\)"):
            est.total(pieces)
        return
    assert est.total(pieces) == _direct_bdm(w, n_symbols, method)
    assert est.tensor(w) == _direct_bdm(w, n_symbols, method)


def test_two_symbols_by_sign_stays_the_mergeable_bdm():
    est = _one("bdm:n_symbols=2")
    w = np.random.default_rng(3).normal(size=1000).astype(np.float32)
    assert est.mergeable and est.tensor(w) == BDM().bdm(kcomplex.binarize(w))
    # The midpoint of the range is another binarization than the sign.
    w += 0.7
    assert _one("bdm:method=uniform").tensor(w) == _direct_bdm(w, 2, "uniform")
    assert _one("bdm:method=uniform").tensor(w) != est.tensor(w)


@pytest.mark.parametrize("spec, codec, level", [
    ("zstd:level=19", "zstd", 19), ("zstd:level=1", "zstd", 1), ("gzip:level=6", "gzip", 6),
    ("lzma:level=0", "lzma", 0), ("bz2:level=1", "bz2", 1),
])
def test_codec_levels_are_compressed_bits(spec, codec, level):
    rng = np.random.default_rng(4)
    # Beyond 100 kB, one bz2 block at level 1: every level tried here changes the bits.
    pieces = [np.round(rng.normal(size=n), 2).astype(np.float32) for n in (30000, 17, 9000)]
    est = _one(spec)
    assert est.total(pieces) == compressed_bits(np.concatenate(pieces), codec, level)
    assert est.total(pieces) != ESTIMATORS[codec].total(pieces)


def test_zstd_long_finds_repeats_beyond_the_levels_window():
    # A copy 4.8 MB back: beyond level 3's 2 MiB window, within the long window.
    w = np.random.default_rng(5).normal(size=1_200_000).astype(np.float32)
    twice = [w, w[:600_000], w[600_000:]]
    plain, long = _one("zstd").total(twice), _one("zstd:long=1").total(twice)
    once = ESTIMATORS["zstd"].tensor(w)
    assert plain > 1.9 * once
    assert long < 1.05 * once
    assert long == _one("zstd:long=1").tensor(np.concatenate(twice))  # however cut


def test_zstd_long_stream_is_a_valid_frame():
    data = np.random.default_rng(6).integers(0, 4, size=300_000, dtype=np.uint8).tobytes()
    stream = CODECS["zstd"].stream(5, long=True)
    frame = stream.compress(data[:1000]) + stream.compress(data[1000:]) + stream.flush()
    out = zstandard.ZstdDecompressor().decompressobj()
    assert out.decompress(frame) == data and out.eof


def test_configured_descriptions_say_their_setting():
    assert "level 19 with long-range matching" in _one("zstd:level=19,long=1").description
    assert "preset 6" in _one("lzma:level=6").description
    assert "4 symbols (quantile" in _one("bdm:n_symbols=4,method=quantile").description


# --- travel ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [*SPECS, "zstd:level=19,long=1", "bdm:method=uniform",
                                  "gzip:level=1", "entropy"])
def test_pickling_resolves_the_canonical_name_again(spec):
    est = _one(spec)
    back = pickle.loads(pickle.dumps(est))
    assert back == est and back.name == est.name and hash(back) == hash(est)
    assert type(back) is type(est) and back.mergeable == est.mergeable
    w = np.random.default_rng(7).normal(size=500).astype(np.float32)
    assert back.tensor(w) == est.tensor(w)
    assert est != _one("zstd:level=18")


# --- reports, executors, CLI -------------------------------------------------------------


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    return {
        "fc.weight": rng.normal(size=(40, 31)).astype(np.float32),
        "fc.bias": rng.normal(size=7).astype(np.float32),  # shorter than a block
        "out.weight": np.round(rng.normal(size=(9, 50)), 1).astype(np.float32),
    }


def test_report_columns_sit_side_by_side_with_direct_values():
    weights = _model()
    table = kcomplex.analyze(weights, SPECS, progress=False).table
    for spec in SPECS:
        assert f"{spec}_bits" in table and f"{spec}_bpp" in table
    rows = table.set_index("tensor")
    joined = np.concatenate([w.reshape(-1) for w in weights.values()])
    spec = "bdm:n_symbols=4,method=quantile"
    assert rows.loc["(all)", f"{spec}_bits"] == _direct_bdm(joined, 4, "quantile")
    assert rows.loc["fc.weight", f"{spec}_bits"] == _direct_bdm(
        weights["fc.weight"].reshape(-1), 4, "quantile")
    assert np.isnan(rows.loc["fc.bias", f"{spec}_bits"])
    assert f"{spec}: fewer weights than one block" in rows.loc["fc.bias", "notes"]
    assert rows.loc["(all)", "zstd:level=19_bits"] == compressed_bits(joined, "zstd", 19)
    assert rows.loc["(all)", "zstd_bits"] == compressed_bits(joined, "zstd")


def test_same_report_in_process_threaded_and_streamed(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_model(), path)
    specs = [*SPECS, "zstd:level=5,long=1", "bdm:n_symbols=9,method=uniform"]
    reference = kcomplex.analyze(path, specs, workers=1, progress=False)
    for report in (kcomplex.analyze(path, specs, workers=3, progress=False),
                   kd.analyze(path, specs, chunk=97, workers=2),
                   kcomplex.analyze(kcomplex.load_weights(path), specs, workers=2,
                                    progress=False)):
        pd.testing.assert_frame_equal(report.table, reference.table, check_exact=True)
        assert report.meta == reference.meta
    total = kcomplex.analyze(path, specs, per_tensor=False, workers=2, progress=False)
    pd.testing.assert_frame_equal(total.table, reference.table.iloc[[-1]].reset_index(
        drop=True), check_exact=True)


def test_cli_round_trip(tmp_path, capsys):
    path = tmp_path / "model.npz"
    np.savez(path, **_model())
    out = tmp_path / "r.csv"
    assert main(["analyze", str(path), "-e", *SPECS, "--csv", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out, index_col=0)
    expected = kcomplex.analyze(path, SPECS, progress=False).table
    for spec in SPECS:
        np.testing.assert_array_equal(table[f"{spec}_bits"], expected[f"{spec}_bits"])
    assert main(["analyze", str(path), "-e", "zstd:level=99", "--no-progress"]) == 1
    assert "level must be an integer in [1, 22]" in capsys.readouterr().err


def test_cli_help_names_the_spelling_and_every_key(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    assert spelling_help() in text and "bdm:n_symbols=4,method=quantile" in text
    for est in ESTIMATORS.values():
        for key in est.keys:
            assert key.describe() in text
