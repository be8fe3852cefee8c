"""The public API of momos is pinned."""

import momos

EXPECTED = {
    "BlockLayout", "CodecError", "DescriptionLength", "decode", "description_length",
    "encode", "stream_info", "write_atomic", "complexity", "DATASETS", "MODELS", "Splits",
    "build_model", "load_dataset", "FakeQuantize", "MOTIF_INITS", "MoMos", "MotifBank", "ProjectionStats",
    "Span", "attach_qat", "bake", "bound_bits", "fake_quantize", "freeze_mosaic",
    "is_frozen", "is_qat", "layout_of", "motif_count", "nearest_motif", "pool_parameters",
    "project", "rac", "remove_qat", "set_qat_bits", "to_blocks", "write_blocks",
    "METHODS", "TrainConfig", "load_results", "train", "reproduce", "summarize", "sweep",
}


def test_all_is_pinned():
    assert set(momos.__all__) == EXPECTED
    for name in momos.__all__:
        assert getattr(momos, name) is not None
