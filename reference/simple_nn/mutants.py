"""The bug catalog as executable mutants of the reference.

A submission whose outputs match a mutant on every probe (and do not match the
reference) gets that mutant's id and hint. Mutants run on the trusted side with
the same activation pair the checks use, so a sigmoid notebook's backward bug is
recognised as readily as a ReLU one's.

Backward bugs are built from independent *flags* so that two-bug combinations can
be generated and named, rather than hand-writing every pair.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from typing import Any

import numpy as np

from grader.assignment import Impl, Mutant

from .reference import ActivationPair


def _not_implemented(*_args: Any) -> None:
    return None


def _raises_not_implemented(*_args: Any) -> None:
    raise NotImplementedError


# --- activation -----------------------------------------------------------

def _relu_wrong_side(z: Any) -> Any:
    return z * (np.asarray(z) < 0)


def _identity(z: Any) -> Any:
    return z


def _scalar_max(z: Any) -> Any:
    return max(0, z)


# --- d_activation ---------------------------------------------------------

def _d_wrong_side(z: Any) -> Any:
    return (np.asarray(z) < 0).astype(float)


def _d_returns_activation(z: Any) -> Any:
    return np.maximum(z, 0)


def _d_scalar_only(z: Any) -> Any:
    return 1 if z > 0 else 0


def _d_constant_scalar(z: Any) -> Any:
    return 1.0


def _d_constant(z: Any) -> Any:
    return np.ones_like(np.asarray(z, dtype=float))


# --- forward --------------------------------------------------------------

def _fwd_missing_activation(x: Any, w1: Any, w2: Any, pair: Any) -> Any:
    return x @ w1 @ w2


def _fwd_activation_on_output(x: Any, w1: Any, w2: Any, pair: Any) -> Any:
    return pair.f(pair.f(x @ w1) @ w2)


def _fwd_transposed(x: Any, w1: Any, w2: Any, pair: Any) -> Any:
    return pair.f(w1 @ x) @ w2


# --- backward, by flags -----------------------------------------------------

BACKWARD_FLAGS = frozenset({
    "dact_on_w2_partials", "outer_transposed", "missing_d_activation",
    "activation_instead_of_d_activation", "stale_w2", "gradient_sign_flipped",
    "missing_learning_rate", "missing_loss_derivative", "w2_grad_uses_preactivation",
    "w1_grad_missing_w2", "returns_swapped", "no_return",
})


def backward_with(flags: frozenset[str]) -> Impl:
    """The reference backward with the given bugs switched on."""
    unknown = flags - BACKWARD_FLAGS
    if unknown:
        raise ValueError(f"unknown backward flags {sorted(unknown)}")

    def backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, eta: Any, pair: ActivationPair) -> Any:
        h = x @ w1
        d_loss = y_hat - y
        rate = 1.0 if "missing_learning_rate" in flags else eta
        sign = -1.0 if "gradient_sign_flipped" in flags else 1.0
        w2_partials = d_loss * (h if "w2_grad_uses_preactivation" in flags else pair.f(h))
        w2_new = w2 - sign * rate * w2_partials
        if "dact_on_w2_partials" in flags:
            delta = pair.df(w2_partials)
        else:
            if "activation_instead_of_d_activation" in flags:
                slope = pair.f(h)
            elif "missing_d_activation" in flags:
                slope = 1.0
            else:
                slope = pair.df(h)
            w2_used = w2_new if "stale_w2" in flags else w2
            delta = (1.0 if "missing_loss_derivative" in flags else d_loss) \
                * (1.0 if "w1_grad_missing_w2" in flags else w2_used) * slope
        w1_partials = np.outer(delta, x) if "outer_transposed" in flags else np.outer(x, delta)
        if "no_return" in flags:
            w1 -= sign * rate * w1_partials
            w2 -= sign * rate * w2_partials
            return None
        w1_new = w1 - sign * rate * w1_partials
        return (w2_new, w1_new) if "returns_swapped" in flags else (w1_new, w2_new)

    return backward


def _flag_variants(*flag_sets: tuple[str, ...]) -> tuple[Impl, ...]:
    return tuple(backward_with(frozenset(flags)) for flags in flag_sets)


#: Which flag sets spell each backward id. The template's own line is
#: `np.outer(d_activation(w2_partials), x)`: d_activation on the w2 partials,
#: with the outer product also reversed; students who fix the order but keep the
#: wrong argument make the same bug, so both spellings carry the one id.
BACKWARD_SPELLINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "d_activation_on_w2_partials": (("dact_on_w2_partials", "outer_transposed"), ("dact_on_w2_partials",)),
    "outer_transposed": (("outer_transposed",),),
    "missing_d_activation": (("missing_d_activation",),),
    "activation_instead_of_d_activation": (("activation_instead_of_d_activation",),),
    "stale_w2": (("stale_w2",),),
    "gradient_sign_flipped": (("gradient_sign_flipped",),),
    "missing_learning_rate": (("missing_learning_rate",),),
    "missing_loss_derivative": (("missing_loss_derivative",),),
    "w2_grad_uses_preactivation": (("w2_grad_uses_preactivation",),),
    "w1_grad_missing_w2": (("w1_grad_missing_w2",),),
    "returns_swapped": (("returns_swapped",),),
    "no_return": (("no_return",),),
}

HINTS: dict[str, str] = {
    "not_implemented": "This function returns None or is still the template: fill in its body and return the result.",
    "relu_wrong_side": "Your activation keeps the negative inputs and zeroes the positive ones: check which side of 0 ReLU lets through.",
    "activation_identity": "Your activation returns its input unchanged, so the network stays linear: apply max(0, z) element by element.",
    "activation_scalar_only": "Your activation works on a single number but fails on a numpy array: use an element-wise numpy operation instead of Python's max or if.",
    "d_activation_wrong_side": "Your derivative is 1 where z < 0: ReLU's slope is 1 for positive inputs and 0 for negative ones.",
    "d_activation_returns_activation": "Your derivative returns ReLU(z) itself rather than its slope: the slope of ReLU is 0 or 1.",
    "d_activation_scalar_only": "Your derivative works on a single number but fails on a numpy array: make it element-wise.",
    "d_activation_constant": "Your derivative is 1 everywhere: it should depend on the sign of z.",
    "forward_missing_activation": "Your forward pass never applies the activation to the hidden layer, so the network is linear.",
    "forward_activation_on_output": "Your forward pass applies the activation to the output as well: only the hidden layer has one.",
    "forward_transposed": "Your forward pass multiplies in the wrong order: with x of shape (n_in,) and w1 of shape (n_in, n_hidden), check which side x goes on.",
    "d_activation_on_w2_partials": "The w1 gradient applies d_activation to the w2 partials (the template's bug): the slope belongs on the hidden pre-activation x @ w1, and the chain rule also brings in w2 and the loss derivative.",
    "outer_transposed": "Your w1 gradient has the outer product's arguments swapped: its shape must match w1, (n_in, n_hidden); it only looks right when w1 is square.",
    "missing_d_activation": "Your w1 gradient leaves out the activation's slope at the hidden layer: the chain rule passes through the activation.",
    "activation_instead_of_d_activation": "Your w1 gradient multiplies by the activation where its derivative belongs.",
    "stale_w2": "Your w1 gradient uses w2 after it was already updated: compute both gradients from the weights you were given, then update.",
    "gradient_sign_flipped": "Your update moves the weights uphill: gradient descent subtracts the gradient.",
    "missing_learning_rate": "Your update does not scale the gradient by the learning rate eta.",
    "missing_loss_derivative": "Your w1 gradient leaves out the loss derivative (y_hat - y): both gradients start from it.",
    "w2_grad_uses_preactivation": "Your w2 gradient uses the hidden pre-activation x @ w1: w2 multiplies the hidden layer's output after the activation.",
    "w1_grad_missing_w2": "Your w1 gradient leaves out w2: the error reaches each hidden unit through its output weight.",
    "returns_swapped": "backward returns the new weights in the wrong order: return (w1, w2).",
    "no_return": "backward updates w1 and w2 in place but returns nothing: return the new (w1, w2).",
}


def _mutant(id_: str, function: str, *variants: Impl) -> Mutant:
    return Mutant(id_, function, HINTS[id_], variants)


CATALOG: tuple[Mutant, ...] = (
    _mutant("not_implemented", "activation", _not_implemented, _raises_not_implemented),
    _mutant("relu_wrong_side", "activation", _relu_wrong_side),
    _mutant("activation_identity", "activation", _identity),
    _mutant("activation_scalar_only", "activation", _scalar_max),
    _mutant("not_implemented", "d_activation", _not_implemented, _raises_not_implemented),
    _mutant("d_activation_wrong_side", "d_activation", _d_wrong_side),
    _mutant("d_activation_returns_activation", "d_activation", _d_returns_activation),
    _mutant("d_activation_scalar_only", "d_activation", _d_scalar_only),
    _mutant("d_activation_constant", "d_activation", _d_constant, _d_constant_scalar),
    _mutant("not_implemented", "forward", _not_implemented, _raises_not_implemented),
    _mutant("forward_missing_activation", "forward", _fwd_missing_activation),
    _mutant("forward_activation_on_output", "forward", _fwd_activation_on_output),
    _mutant("forward_transposed", "forward", _fwd_transposed),
    _mutant("not_implemented", "backward", _not_implemented, _raises_not_implemented),
    *(_mutant(id_, "backward", *_flag_variants(*spellings)) for id_, spellings in BACKWARD_SPELLINGS.items()),
)


def mutants_for(function: str) -> list[Mutant]:
    return [m for m in CATALOG if m.function == function]


def backward_pairs() -> list[tuple[tuple[str, str], Impl]]:
    """Every two-bug backward, named by both ids, skipping spellings a single id already covers.

    Built once per process: the same implementation objects every time, so their
    outcomes can be cached by identity (``grader.diagnose``), and no rebuild per notebook.
    """
    return list(_backward_pairs())


@lru_cache(maxsize=1)
def _backward_pairs() -> tuple[tuple[tuple[str, str], Impl], ...]:
    single = {frozenset(flags) for spellings in BACKWARD_SPELLINGS.values() for flags in spellings}
    seen: set[frozenset[str]] = set()
    pairs: list[tuple[tuple[str, str], Impl]] = []
    for (id_a, sp_a), (id_b, sp_b) in combinations(BACKWARD_SPELLINGS.items(), 2):
        for flags_a in sp_a:
            for flags_b in sp_b:
                flags = frozenset(flags_a) | frozenset(flags_b)
                if flags in single or flags in seen:
                    continue
                seen.add(flags)
                pairs.append(((id_a, id_b), backward_with(flags)))
    return tuple(pairs)
