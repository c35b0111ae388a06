"""An ensemble: the mean of its members' class probabilities, as log-probabilities.

Its output stands where a network's logits do: ``softmax`` of it gives the averaged
probabilities, ``argmax`` the ensemble's prediction, and ``cross_entropy`` on it the
negative log-likelihood of the averaged probabilities. TorchScript traces it and the ONNX
exporter exports it like any network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """Members (networks giving logits for the same classes) averaged in probability."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.log_count = math.log(len(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logs = torch.stack([m(x).float().log_softmax(dim=1) for m in self.members])
        return torch.logsumexp(logs, dim=0) - self.log_count  # log of the mean probability
