"""helpers.claims, for one value and over seeds: what each statement asserts, and that it can fail."""

import math

import numpy as np
import pytest
import torch

from helpers.claims import claim, claim_close, claim_gap, claim_seeds, claim_true, describe_seeds, seed_spread

GOOD = [0.91, 0.93, 0.90, 0.95, 0.92]


def test_claim_prints_only_the_statement(capsys):
    claim("a fact", 0.5, low=0.0, high=1.0)
    claim_close("close", 1.001, 1.0, rel=0.01)
    claim_true("true", True)
    assert capsys.readouterr().out == "✓ a fact\n✓ close\n✓ true\n"


@pytest.mark.parametrize("call", [
    lambda: claim("x", 2.0, high=1.0),
    lambda: claim("x", math.nan, low=0.0),
    lambda: claim_close("x", 1.2, 1.0, rel=0.1),
    lambda: claim_true("x", False),
])
def test_failed_claims_raise_with_the_measured_value(call):
    with pytest.raises(AssertionError, match="claim failed: x"):
        call()


def test_claim_needs_a_bound():
    with pytest.raises(ValueError):
        claim("x", 1.0)


def test_claim_close_absolute_tolerance(capsys):
    claim_close("the mean is zero", 3e-9, 0.0, abs=1e-6)
    claim_close("the slope equals the depth", 9.98, 10, rel=0.01)  # the old signature
    claim_close("either tolerance", 10.5, 10, rel=0.01, abs=1.0)
    assert capsys.readouterr().out.count("✓") == 3
    with pytest.raises(AssertionError, match="expected 0.0"):
        claim_close("the mean is zero", 3e-3, 0.0, abs=1e-6)
    with pytest.raises(AssertionError):
        claim_close("a relative tolerance alone never accepts a non-zero value at 0", 1e-12, 0.0, rel=0.5)


@pytest.mark.parametrize("require, suffix", [("median", "median of 5 seeds"), ("all", "all 5 seeds"),
                                             (3, "at least 3 of 5 seeds")])
def test_claim_seeds_prints_what_it_asserted(capsys, require, suffix):
    claim_seeds("trains", GOOD, low=0.9, require=require)
    assert capsys.readouterr().out == f"✓ trains ({suffix})\n"


@pytest.mark.parametrize("values, kwargs", [
    ([0.5, 0.6, 0.95, 0.96, 0.97], dict(low=0.9, require="all")),
    ([0.5, 0.6, 0.7, 0.96, 0.97], dict(low=0.9)),                      # median 0.7
    ([0.5, 0.6, 0.7, 0.96, 0.97], dict(low=0.9, require=3)),           # only 2 of 5
    ([math.nan, math.nan, math.nan, 0.96, 0.97], dict(low=0.9)),       # diverged seeds are failures
    ([math.nan, math.nan, math.nan, 0.1, 0.1], dict(high=0.2)),        # ... for an upper bound too
    ([0.1, 0.2, 0.3, 0.4, 0.5], dict(low=0.0, high=0.25)),
])
def test_claim_seeds_fails_when_the_seeds_disagree(values, kwargs):
    with pytest.raises(AssertionError, match="per-seed values"):
        claim_seeds("x", values, **kwargs)


@pytest.mark.parametrize("values, kwargs, error", [
    ([0.9] * 4, dict(low=0.5), "at least 5 seeds"),
    (GOOD, dict(), "needs low, high or both"),
    (GOOD, dict(low=0.5, require="most"), "require must be"),
    (GOOD, dict(low=0.5, require=6), "require must be"),
])
def test_claim_seeds_rejects_bad_arguments(values, kwargs, error):
    with pytest.raises(ValueError, match=error):
        claim_seeds("x", values, **kwargs)


def test_claim_gap_needs_a_gap_beyond_the_spread(capsys):
    claim_gap("a beats b", [0.9, 0.91, 0.92, 0.93, 0.94], [0.5, 0.52, 0.51, 0.5, 0.53])
    assert "✓ a beats b" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="not above margin"):   # medians 0.6 vs 0.5, quartile spread 0.4
        claim_gap("noise", [0.2, 0.3, 0.6, 0.7, 0.8], [0.1, 0.3, 0.5, 0.6, 0.7])
    with pytest.raises(AssertionError, match="not above margin"):
        claim_gap("explicit margin", [0.9] * 5, [0.85] * 5, margin=0.1)
    with pytest.raises(AssertionError):
        claim_gap("diverged", [math.nan] * 3 + [1.0, 1.0], [0.0] * 5)


def test_seed_spread_and_description():
    s = seed_spread([1.0, 2.0, math.nan, 3.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["finite"], s["n"]) == (2.5, 1.0, 4.0, 4, 5)
    assert describe_seeds([1.0, 2.0, math.nan, 3.0, 4.0], ".1f") == "median 2.5 [1.0, 4.0] over 5 seeds, 1 diverged"
    assert math.isnan(seed_spread([math.nan])["median"])
    assert seed_spread(np.array([[1.0], [3.0]]))["median"] == 2.0


def test_claims_refuse_arguments_that_would_assert_something_else():
    with pytest.raises(ValueError, match="1-D sequence"):
        claim_seeds("x", np.ones((5, 3)), low=0.5)
    with pytest.raises(ValueError, match="low must be <= high"):
        claim_seeds("x", GOOD, low=2, high=0)
    with pytest.raises(ValueError, match="low must be a real number"):
        claim_seeds("x", GOOD, low=math.nan)
    with pytest.raises(ValueError, match="margin must be a number >= 0"):
        claim_gap("x", [0.5] * 5, [0.6] * 5, margin=-1)


def test_claim_gap_counts_a_diverged_seed_as_the_worst():
    with pytest.raises(AssertionError):          # 2 of 5 'better' seeds diverged: its median drops to 0.9 ... or NaN
        claim_gap("x", [0.9, 0.9, math.nan, math.nan, math.nan], [0.5] * 5)
    claim_gap("a run that trains beats one that diverges", [0.9] * 5, [0.1, math.nan, math.nan, math.nan, 0.2])


# ---- F8: bad arguments are a TypeError/ValueError naming them, not an AssertionError or float()'s message

@pytest.mark.parametrize("call, error, text", [
    (lambda: claim_close("x", 1.0, 1.0, rel="0.1"), TypeError, r"rel must be a real number, got str \('0.1'\)"),
    (lambda: claim_close("x", 1.0, 1.0, abs=None), TypeError, "abs must be a real number, got NoneType"),
    (lambda: claim_close("x", 1.0, 1.0, rel=math.nan), ValueError, "rel must be finite"),
    (lambda: claim_close("x", 1.0, 1.0, abs=-1e-3), ValueError, "abs must be >= 0.0"),
    (lambda: claim_close("x", None, 1), TypeError, "value must be a number, got NoneType"),
    (lambda: claim_close("x", 1.0, None), TypeError, "expected must be a number, got NoneType"),
    (lambda: claim_close("x", "1.0", 1.0), TypeError, r"value must be a number, got str \('1.0'\)"),
    (lambda: claim_close("x", 1.0, b"1"), TypeError, "expected must be a number, got bytes"),
    (lambda: claim_close("x", torch.tensor([1.0, 1.0]), 1.0), TypeError,
     r"value must be one number .*got Tensor of shape \(2,\)"),
    (lambda: claim_close("x", 1.0, np.array([1.0, 2.0])), TypeError, r"expected must be one number .*shape \(2,\)"),
    (lambda: claim_close("x", [1.0], 1.0), TypeError, "value must be one number .*got list"),
    (lambda: claim("x", 1.0, low="a"), TypeError, r"low must be a number, got str \('a'\)"),
    (lambda: claim("x", 1.0, high=[2.0]), TypeError, "high must be one number"),
    (lambda: claim("x", 1.0, low=True), TypeError, "low must be a real number or None, got True"),
    (lambda: claim("x", 1.0, low=2, high=0), ValueError, "low must be <= high, got low=2, high=0"),
    (lambda: claim("x", 1.0, low=math.nan), ValueError, "low must be a real number or None, got nan"),
    (lambda: claim("x", 1.0, high=np.float32("nan")), ValueError, "high must be a real number or None"),
    (lambda: claim("x", "1.0", low=0.0), TypeError, r"value must be a number, got str \('1.0'\)"),
    (lambda: claim("x", None, low=0.0), TypeError, "value must be a number, got NoneType"),
    (lambda: claim_seeds("x", GOOD, low="a"), TypeError, "low must be a number"),
], ids=lambda v: "" if callable(v) else str(v)[:30])
def test_claims_name_a_bad_argument(call, error, text, capsys):
    with pytest.raises(error, match=text):
        call()
    assert capsys.readouterr().out == ""      # no ✓ printed


def test_claims_take_one_number_in_any_form(capsys):
    claim("a tensor value and bounds", torch.tensor(0.5), low=torch.tensor(0.0), high=np.float32(1.0))
    claim("a one-element array", np.array([0.5]), low=0)
    claim_close("a 0-d tensor", torch.tensor(9.98), np.float64(10.0), rel=0.01, abs=np.float32(0.0))
    claim_seeds("numpy bounds", GOOD, low=np.float32(0.5), high=torch.tensor(1.0))
    claim("an infinite bound", 1e300, high=math.inf)
    assert capsys.readouterr().out.count("✓") == 5
