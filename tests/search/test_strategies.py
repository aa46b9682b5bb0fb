"""Uniform-precision params: the baselines queued into a study."""

import pytest
from optuna.trial import FixedTrial

from bitnas.errors import BitnasError
from bitnas.registry import SPACES, load_builtins
from bitnas.search.strategies import uniform_params


@pytest.fixture(scope="module")
def cnn():
    load_builtins()
    return SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, depth=[1, 2], widths=[8, 16],
                         w_bits=[2, 4, 8], a_bits=[4, 8], quantizers=["uniform", "pot"])


def test_every_group_gets_the_bits_and_scheme(cnn):
    params = uniform_params(cnn, 4, "pot", arch={"depth": 2})
    cand = cnn.suggest(FixedTrial(params))
    assert cand.arch_dict()["depth"] == 2
    assert {(lq.w_bits, lq.a_bits, lq.quantizer) for lq in cand.plan.layers.values()} == {(4, 8, "pot")}


def test_bits_outside_the_space_are_refused(cnn):
    with pytest.raises(BitnasError, match="w_bits = 3 is not one of"):
        uniform_params(cnn, 3)
