"""The Pinto & Cox model family in torch: functional ops, modules, and the builder."""

from .builder import InvalidArchitecture, Limits, Plan, SLMNet, build_model, plan_model
from .layers import ACTIVATIONS, INITS, NORMS, POOLS

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "NORMS",
    "POOLS",
    "InvalidArchitecture",
    "Limits",
    "Plan",
    "SLMNet",
    "build_model",
    "plan_model",
]
