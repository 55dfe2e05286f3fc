import math

import pytest

from helpers.sharding import compare_sharded_clipping


def test_the_demo_shows_local_clipping_wrong_and_global_clipping_right():
    r = compare_sharded_clipping(max_norm=1.0, norm_type=math.inf, world_size=2)
    assert r["total_norm"] > 1.0 and max(r["shard_norms"]) == pytest.approx(r["total_norm"], rel=1e-12)
    assert r["cosine_local"] < 1 - 1e-6                       # the direction changed
    assert r["norm_after_global"] == pytest.approx(1.0, rel=1e-6)
    assert r["cosine_global"] == pytest.approx(1.0, abs=1e-12) and r["max_difference_global"] < 1e-12


@pytest.mark.parametrize("kwargs, error, text", [
    ({"max_norm": 0.0}, ValueError, "max_norm"),
    ({"world_size": 1}, ValueError, "world_size"),
    ({"seed": "0"}, TypeError, "seed"),
])
def test_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        compare_sharded_clipping(**kwargs)
