"""Shape rules: the CS231n notes' worked examples, a brute-force grid, every error."""

import itertools

import pytest

import convjax.functional as cf


def brute_force_positions(w, f, s, lo, hi, d):
    """Count window start positions by sliding over the padded input, one step at a time."""
    f_eff = d * (f - 1) + 1
    return sum(1 for start in range(0, w + lo + hi, s) if start + f_eff <= w + lo + hi)


def test_seed_examples():
    assert cf.conv_output_shape((7, 7), (3, 3), 1) == (5, 5)
    assert cf.conv_output_shape((7, 7), (3, 3), 2) == (3, 3)
    with pytest.raises(ValueError, match=r"stride=3 does not fit.*\(7 - 3 \+ 0 \+ 0\) / 3"):
        cf.conv_output_shape((7, 7), (3, 3), 3, strict=True)
    assert cf.conv_output_shape((32, 32), (5, 5), 1, 2) == (32, 32)
    assert cf.conv_output_shape((227, 227), (11, 11), 4, 0) == (55, 55)


@pytest.mark.parametrize(
    "w,f,s,lo,hi,d", list(itertools.product([5, 8], [1, 2, 3], [1, 2, 3], [0, 2], [0, 1], [1, 2]))
)
def test_output_size_matches_brute_force(w, f, s, lo, hi, d):
    f_eff = d * (f - 1) + 1
    if f_eff > w + lo + hi:
        with pytest.raises(ValueError, match="larger than the padded input"):
            cf.conv_output_size(w, f, s, (lo, hi), d)
        return
    assert cf.conv_output_size(w, f, s, (lo, hi), d) == brute_force_positions(w, f, s, lo, hi, d)


@pytest.mark.parametrize(
    "w,f,s,d", list(itertools.product([5, 6, 7], [1, 2, 3, 4], [1, 2, 3], [1, 2]))
)
def test_same_padding_gives_ceil(w, f, s, d):
    pads = cf.resolve_padding("SAME", (w,), (f,), s, d)
    ((lo, hi),) = pads
    assert hi - lo in (0, 1)
    assert cf.conv_output_shape((w,), (f,), s, "SAME", d) == (-(-w // s),)
    ((lo2, hi2),) = cf.resolve_padding("SAME_LOWER", (w,), (f,), s, d)
    assert (lo2, hi2) == (hi, lo)


def test_full_and_causal():
    assert cf.resolve_padding("FULL", (5, 5), (3, 2), 1, (2, 1)) == ((4, 4), (1, 1))
    assert cf.resolve_padding("causal", (5, 5, 5), (3, 3, 1), 1, 1) == ((2, 0), (2, 0), (0, 0))
    assert cf.conv_output_shape((10,), (3,), 1, "CAUSAL") == (10,)


def test_explicit_padding_forms():
    assert cf.resolve_padding(1, (4, 4), (3, 3)) == ((1, 1), (1, 1))
    assert cf.resolve_padding((1, 2), (4, 4), (3, 3)) == ((1, 1), (2, 2))
    assert cf.resolve_padding(((0, 1), (2, 3)), (4, 4), (3, 3)) == ((0, 1), (2, 3))


def test_ceil_mode_pytorch_rule():
    # 5 wide, window 2, stride 2: floor gives 2, ceil gives 3 (last window starts at 4 < 5).
    assert cf.conv_output_size(5, 2, 2, 0, ceil_mode=True) == 3
    # With padding 1 on both sides: span = 5, ceil -> 4 windows, but the 4th starts at 6,
    # which is in the high padding (>= 5 + 1), so PyTorch drops it.
    assert cf.conv_output_size(5, 2, 2, 1, ceil_mode=True) == 3


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: cf.resolve_padding("SAMEE", (4,), (3,)), r"padding='SAMEE' is not a known"),
        (lambda: cf.resolve_padding(-1, (4,), (3,)), r"padding=-1 must be >= 0"),
        (lambda: cf.resolve_padding((1, 2, 3), (4, 4), (3, 3)), r"has 3 entries.*2 spatial"),
        (lambda: cf.resolve_padding(((1, 2, 3),), (4,), (3,)), r"each pair must be \(lo, hi\)"),
        (lambda: cf.resolve_padding(((-1, 0),), (4,), (3,)), r"negative amount"),
        (lambda: cf.normalize_tuple(0, 2, "stride"), r"stride=0 must be >= 1"),
        (lambda: cf.normalize_tuple((1, 2, 3), 2, "dilation"), r"dilation=\(1, 2, 3\) has 3"),
        (lambda: cf.normalize_tuple(1.5, 2, "stride"), r"stride=1.5 must be an int"),
        (lambda: cf.normalize_tuple(True, 2, "stride"), r"not a bool"),
        (lambda: cf.conv_output_size(4, 7), r"kernel_size=7 .* larger than the padded input"),
        (lambda: cf.conv_output_size(4, 2, 0), r"stride=0 must be >= 1"),
        (lambda: cf.conv_output_size(4, 2, 1, 0, 0), r"dilation=0 must be >= 1"),
        (lambda: cf.conv_transpose_output_size(4, 3, 2, 0, 1, 2), r"output_padding=2"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_conv_transpose_output_size_inverts_conv():
    for w, f, s, p, d in itertools.product([4, 7], [1, 3], [1, 2, 3], [0, 1], [1, 2]):
        if d * (f - 1) + 1 > w + 2 * p:
            continue
        out = cf.conv_output_size(w, f, s, p, d)
        back = cf.conv_transpose_output_size(out, f, s, p, d)
        assert 0 <= w - back < s
        op = w - back
        if op < max(s, d):
            assert cf.conv_transpose_output_size(out, f, s, p, d, op) == w
