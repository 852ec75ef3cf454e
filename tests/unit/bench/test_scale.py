"""The scale curve's arithmetic (music_rl/bench/scale.py) and the sizes a bench run may change (music-rl bench
+sizes.<field>=...)."""

from __future__ import annotations

import pytest

from music_rl.bench.scale import growth_exponent
from music_rl.bench.sizes import Sizes
from music_rl.cli.bench import with_sizes
from music_rl.core.errors import ConfigError


def test_the_growth_exponent_is_the_slope_over_the_sizes_of_a_million_and_more():
    sizes = [100_000, 1_000_000, 10_000_000, 100_000_000]
    assert growth_exponent(sizes, [5.0, 1.0, 10.0, 100.0]) == pytest.approx(1.0)  # 100k left out: fixed costs
    assert growth_exponent(sizes[1:], [1.0, 10 ** 1.5, 1000.0]) == pytest.approx(1.5)
    assert growth_exponent([100_000, 200_000], [1.0, 2.0]) == pytest.approx(1.0)  # fewer than two at >= 1M: all
    assert growth_exponent([1_000_000], [1.0]) is None
    assert growth_exponent([1_000_000, 10_000_000], [0.0, 1.0]) is None  # a stage that took no time


def test_a_size_is_changed_by_name_and_an_unknown_one_refused():
    sizes = with_sizes(Sizes(), {"scale_tracks": [1000, 2000], "recommend_tracks": 5000})
    assert sizes.scale_tracks == (1000, 2000) and sizes.recommend_tracks == 5000
    with pytest.raises(ConfigError, match=r"sizes\.scale: not a size"):
        with_sizes(Sizes(), {"scale": [1]})
