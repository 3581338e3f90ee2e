"""The quantized matrices of the differential test's programs (`dfx.verify.difftest_quant`): every format a
fetcher family reads, random matrices that pack into regions the fetcher accepts and unpack to themselves."""
import numpy as np

from dfx import formats
from dfx.hw.qfetch import CORE_FAMILIES, core_cannot_read
from dfx.verify.difftest_quant import quant_formats, random_quant


def test_every_variant_of_a_family():
    fmts = quant_formats(("int4", "bcq2"))
    assert {f.name for f in fmts} >= {"int4-oc", "int4-ic-g32", "int4-oc-g128-asym", "bcq2-oc-g64", "bcq2-ic"}
    assert len(quant_formats(tuple(CORE_FAMILIES))) == len({f.name for f in quant_formats(tuple(CORE_FAMILIES))})


def test_random_matrices_round_trip_through_their_regions():
    rng = np.random.default_rng(0)
    for fmt in quant_formats(tuple(CORE_FAMILIES)):
        k, n = (16, 12) if fmt.axis == "ic" else (13, 9)
        qw = random_quant(fmt, k, n, rng)
        assert core_cannot_read(fmt, 0, k, 8) is None
        region = formats.pack_region(qw, 8, 4)
        back = formats.unpack_region(np.frombuffer(region, np.uint8), fmt.wfmt, k, n, 8, 4)
        with np.errstate(over="ignore"):            # large scales: +-inf weights are data here
            assert np.array_equal(back.dequant().view(np.uint16), qw.dequant().view(np.uint16)), fmt.name
