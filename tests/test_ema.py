"""WeightEMA: the running average, the swap context and the averaged state dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lexret.training.ema import WeightEMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    return m


def test_ema_follows_the_decay_schedule():
    m = _model()
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    ema = WeightEMA(m, decay=0.5)
    expected = {n: p.clone() for n, p in start.items()}
    for t in range(1, 6):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(1.0)
        ema.update(m)
        d = min(0.5, (1 + t) / (10 + t))
        for n, p in m.named_parameters():
            expected[n] = d * expected[n] + (1 - d) * p.detach()
    for n in expected:
        assert torch.allclose(ema.shadow[n], expected[n], atol=1e-6)
        assert not torch.allclose(ema.shadow[n], dict(m.named_parameters())[n])


def test_swapped_restores_live_weights_and_state_dict_has_buffers():
    m = _model()
    ema = WeightEMA(m, decay=0.9)
    with torch.no_grad():
        m[0].weight.mul_(3.0)
    live = m[0].weight.detach().clone()
    ema.update(m)
    with ema.swapped(m):
        assert torch.equal(m[0].weight, ema.shadow["0.weight"])
    assert torch.equal(m[0].weight, live)
    sd = ema.state_dict(m)
    assert set(sd) == set(m.state_dict())  # running_mean etc. come along
    assert torch.equal(sd["0.weight"], ema.shadow["0.weight"])
    assert torch.equal(sd["1.running_mean"], m[1].running_mean)


def test_decay_out_of_range():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(_model(), 1.0)
