"""Contract tests over the model-layer registries: every condition kind and every latent quantizer."""
from __future__ import annotations

import pytest
import torch

from vaelab.core.errors import VaelabError
from vaelab.core.vocab import CONDITIONS


@pytest.mark.parametrize("name", CONDITIONS.names())
def test_every_condition_kind_turns_its_inputs_into_vectors_of_its_width(name):
    cond = CONDITIONS.get(name)(5)
    y = cond.random_inputs(7)
    v = cond.vector(y)
    assert v.shape == (7, 5) and v.dtype == torch.float32 and torch.isfinite(v).all()
    labels = cond.all_labels(2)
    if cond.takes_labels:
        assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        cond.check_label(4)
        with pytest.raises(VaelabError, match="out of range"):
            cond.check_label(5)
    else:
        assert labels is None
        with pytest.raises(VaelabError):
            cond.check_label(0)
    with pytest.raises(VaelabError):  # inputs of the wrong width or range are refused with a message
        cond.vector(cond.random_inputs(3) + 10 if cond.takes_labels else torch.rand(3, 4))
