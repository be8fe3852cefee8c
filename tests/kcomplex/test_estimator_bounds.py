"""What the estimators of kcomplex.analyze mean: the entropy never above the raw float32
code plus a flag bit, one zstd (level, framing) for analyze and compressed_bits, codec
levels stated as numbers, and clear errors for bad estimator lists.

Oracles are numpy and the standard library (zstandard for zstd) called directly."""

from __future__ import annotations

import bz2
import gzip
import lzma
import math

import numpy as np
import pytest
import zstandard
from safetensors.numpy import save_file

import kcomplex
from kcomplex import distributed as kd
from kcomplex.analysis import ALL
from kcomplex.compressors import CODECS, compressed_bits, compressed_bits_chunks
from kcomplex.estimators import ESTIMATORS, PRESETS, resolve_estimators


def _entropy_oracle(w: np.ndarray) -> float:
    """1 flag bit + min(table of distinct float32 patterns + n H, 32 n), with np.unique."""
    _, counts = np.unique(np.asarray(w, np.float32).view(np.uint32), return_counts=True)
    n = int(counts.sum())
    two_part = 32 * counts.size - sum(c * math.log2(c / n) for c in counts.tolist())
    return 1 + min(two_part, 32 * n)


def _trained_like(n: int, seed: int = 0) -> np.ndarray:
    """Distinct float32 values, as real trained weights have: the table costs more than
    the raw bits."""
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)


def _incompressible(n: int, seed: int = 0) -> np.ndarray:
    """Finite float32 with uniformly random mantissas, signs and exponents."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) & np.uint32(0x807FFFFF)
    bits |= rng.integers(1, 255, n).astype(np.uint32) << np.uint32(23)
    return bits.view(np.float32)


# --- 14: the entropy estimator never exceeds the raw code plus one flag bit ---------------


@pytest.mark.parametrize("make", [
    lambda: _trained_like(5000),  # all distinct: the raw code wins
    lambda: np.round(_trained_like(5000), 2),  # few distinct: the two-part code wins
    lambda: np.float32([0.5]),  # one weight: both codes take 32 bits
    lambda: np.zeros(100, np.float32),  # one value: the table and nothing else
    lambda: np.concatenate([_trained_like(900), np.zeros(100, np.float32)]),
])
def test_entropy_is_the_cheaper_code_plus_a_flag(make):
    w = make()
    est = ESTIMATORS["entropy"]
    bits = est.tensor(w)
    assert bits == pytest.approx(_entropy_oracle(w), rel=1e-12)
    assert bits <= 32 * w.size + 1
    pieces = np.array_split(w, 3)
    assert est.total(pieces) == pytest.approx(bits, rel=1e-12)


def test_entropy_of_trained_weights_is_at_most_32_bits_per_weight_plus_flag():
    """The defect: distinct floats cost 32 bits each in the table plus log2 n each for the
    sequence, over 32 bits a weight (50.5 on a real face detector)."""
    weights = {"conv.weight": _trained_like(4096, 1).reshape(16, 16, 4, 4),
               "fc.weight": _trained_like(3000, 2).reshape(30, 100)}
    t = kcomplex.analyze(weights, ["entropy"]).table.set_index("tensor")
    for name, w in weights.items():
        assert t.loc[name, "entropy_bits"] == 32 * w.size + 1
    n = sum(w.size for w in weights.values())
    assert t.loc[ALL, "entropy_bits"] == 32 * n + 1
    assert (t["entropy_bpp"] <= 32 + 1 / t["numel"]).all()


def test_entropy_streamed_equals_in_memory_and_stays_bounded(tmp_path):
    weights = {"a": _trained_like(3000, 3), "b": np.round(_trained_like(2000, 4), 2)}
    save_file(weights, tmp_path / "m.safetensors")
    streamed = kd.analyze(tmp_path / "m.safetensors", ["entropy"], chunk=700)
    reference = kcomplex.analyze(tmp_path / "m.safetensors", ["entropy"])
    assert streamed.table.equals(reference.table)
    t = reference.table.set_index("tensor")["entropy_bits"]
    assert t["a"] == 32 * 3000 + 1
    assert t["b"] == pytest.approx(_entropy_oracle(weights["b"]), rel=1e-12)
    whole = np.concatenate(list(weights.values()))
    assert t[ALL] == pytest.approx(_entropy_oracle(whole), rel=1e-12)


# --- compressors: the real length of the stream, even above the raw bytes ----------------


def test_codec_estimators_are_the_stream_length_even_above_raw():
    """Decision: a codec estimator is the length of the codec's real stream, not
    min(stream, raw) + flag; on incompressible data it is the raw bytes plus the
    format's framing."""
    w = _incompressible(10000)
    raw = w.tobytes()
    reference = {
        "gzip": gzip.compress(raw, compresslevel=9, mtime=0),
        "bz2": bz2.compress(raw, 9),
        "lzma": lzma.compress(raw, preset=9),
    }
    total = kcomplex.analyze({"w": w}, ["gzip", "bz2", "lzma"]).total
    for codec, data in reference.items():
        assert total[f"{codec}_bits"] == 8 * len(data) > 32 * w.size


# --- 15: one zstd -------------------------------------------------------------------------


def _zstd_stream_bits(data: bytes, level: int) -> int:
    """Oracle: zstandard's streaming compressor, total size not declared."""
    stream = zstandard.ZstdCompressor(
        level=level, write_content_size=False, write_checksum=False, write_dict_id=False
    ).compressobj()
    return 8 * len(stream.compress(data) + stream.flush())


def test_zstd_default_level_is_the_estimators():
    assert CODECS["zstd"].default_level == 3
    w = np.round(_trained_like(1000, 5), 2)
    assert compressed_bits(w, "zstd") == compressed_bits(w, "zstd", level=3)
    assert compressed_bits(w, "zstd") == _zstd_stream_bits(w.tobytes(), 3)


@pytest.mark.parametrize("n, decimals", [(1000, 2), (50000, 3), (120000, 2)])
def test_zstd_compressed_bits_equals_analyze(n, decimals):
    """One tensor and the (all) row of several: analyze's zstd cells are compressed_bits
    of the tensor and of the concatenation. Sizes where zstd's one-shot call (which tunes
    itself to the known size) differs from its stream, by up to 30 %; the last spans
    several 128 KiB blocks."""
    w = np.round(_trained_like(n, n), decimals)
    t = kcomplex.analyze({"w": w}, ["zstd"]).table.set_index("tensor")["zstd_bits"]
    assert t["w"] == t[ALL] == compressed_bits(w, "zstd")
    parts = {"a": w[: n // 3], "b": w[n // 3 : n // 2], "c": w[n // 2 :]}
    t = kcomplex.analyze(parts, ["zstd"]).table.set_index("tensor")["zstd_bits"]
    assert t[ALL] == compressed_bits(w, "zstd")
    for name, part in parts.items():
        assert t[name] == compressed_bits(part, "zstd")


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("payload", ["float32", "sign", "sign_bytes"])
def test_streamed_equals_one_shot_for_every_codec(codec, payload):
    w = np.round(_trained_like(50000, 6), 3)
    rng = np.random.default_rng(7)
    for _ in range(3):
        cuts = np.sort(rng.integers(0, w.size + 1, int(rng.integers(1, 12))))
        chunks = np.split(w, cuts)
        assert compressed_bits_chunks(chunks, codec, 3, payload) == compressed_bits(
            w, codec, 3, payload
        )


def test_zstd_streamed_file_equals_compressed_bits(tmp_path):
    w = np.round(_trained_like(30000, 8), 2)
    save_file({"a": w[:10000], "b": w[10000:]}, tmp_path / "m.safetensors")
    report = kd.analyze(tmp_path / "m.safetensors", ["zstd"], chunk=999)
    assert report.total["zstd_bits"] == compressed_bits(w, "zstd")


# --- 21: levels as numbers in the estimator descriptions (the CLI's help) ----------------


@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_description_states_its_level(codec):
    description = ESTIMATORS[codec].description
    word = "preset" if codec == "lzma" else "level"
    assert f"{codec} {word} {CODECS[codec].default_level} " in description
    assert "paper's level" not in description


def test_help_states_gzip_level_9(capsys):
    from kcomplex.cli import main

    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    out = capsys.readouterr().out
    assert "gzip level 9" in out and "zstd level 3" in out and "paper's level" not in out


# --- 11: resolve_estimators -------------------------------------------------------------


@pytest.mark.parametrize("bad, error, match", [
    (None, TypeError, "got NoneType None"),
    (3, TypeError, "got int 3"),
    ({"bdm"}, TypeError, "got set"),
    (b"bdm", TypeError, "got bytes"),
    ([None], TypeError, "names must be strings, got NoneType"),
    (["bdm", 1.5], TypeError, "names must be strings, got float"),
    ([], ValueError, "no estimators given"),
    ((), ValueError, "no estimators given"),
    (["bdm", "zstd", "bdm"], ValueError, r"\['bdm'\] given more than once"),
    (["bdm", "nope"], ValueError, r"unknown estimator\(s\) \['nope'\]"),
    ("nope", ValueError, r"unknown estimator\(s\) \['nope'\]"),
    (["paper", "zstd"], ValueError, "preset 'paper' inside a list"),
])
def test_resolve_estimators_rejects_clearly(bad, error, match):
    with pytest.raises(error, match=match) as info:
        resolve_estimators(bad)
    message = str(info.value)
    assert f"valid: {', '.join(ESTIMATORS)}" in message
    assert f"presets: {', '.join(PRESETS)}" in message


def test_resolve_estimators_accepts_presets_names_and_lists():
    assert [e.name for e in resolve_estimators("default")] == list(PRESETS["default"])
    assert [e.name for e in resolve_estimators("gzip")] == ["gzip"]
    assert [e.name for e in resolve_estimators(("zstd", "bdm"))] == ["zstd", "bdm"]


def test_analyze_with_estimators_none_names_the_choices():
    with pytest.raises(TypeError, match="estimators must be a preset name.*valid: bdm"):
        kcomplex.analyze({"w": np.ones(20, np.float32)}, estimators=None)
