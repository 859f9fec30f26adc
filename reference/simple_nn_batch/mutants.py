"""simple_nn_batch's bug catalogue, as executable mutants of the reference.

A submission whose outputs match a mutant on every probe (and do not match the reference) gets
that mutant's id and hint. Mutants of forward and backward take the activation pair as their last
argument, after the student's parameters, so a sigmoid notebook's backward bug is recognised as
readily as a ReLU one's; step mutants take the student's parameters only; helper mutants take (z).

Ids the seed's catalogue already has keep their names (a class's report then reads the same for
both assignments). The batch adds its own: partials averaged over the batch, the loop that keeps
only the last sample, the errors summed before the chain rule, helpers that only work on vectors,
and the mistakes of an in-place step.

Backward bugs are built from independent *flags*, so that two-bug combinations can be generated
and named rather than written by hand. Every mutant differs from the reference on the probes, and
no two mutants of one function agree on every probe (tests/test_simple_nn_batch_reference.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations as pairs_of
from typing import Any

import numpy as np

from grader.assignment import Impl, Mutant, Pair


def _float(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=float)


def _not_implemented(*_args: Any) -> None:
    """The body is still ``pass`` (or ``# TODO``): the call returns None."""
    return None


def _raises_not_implemented(*_args: Any) -> None:
    raise NotImplementedError


# --------------------------------------------------------------------------- activation


def _relu_wrong_side(z: Any) -> Any:
    return z * (np.asarray(z) < 0)


def _identity(z: Any) -> Any:
    return z


def _scalar_max(z: Any) -> Any:
    """``max(0, z)``: fine on a number, ValueError on an array."""
    return max(0, z)


def _vector_only(z: Any) -> Any:
    """A list comprehension over the elements: fine on a vector, but each element of a batch is a row."""
    return np.array([max(0, v) for v in z])


# --------------------------------------------------------------------------- d_activation


def _d_wrong_side(z: Any) -> Any:
    return (np.asarray(z) < 0).astype(float)


def _d_returns_activation(z: Any) -> Any:
    return np.maximum(z, 0)


def _d_scalar_only(z: Any) -> Any:
    return 1 if z > 0 else 0


def _d_vector_only(z: Any) -> Any:
    return np.array([1.0 if v > 0 else 0.0 for v in z])


def _d_constant(z: Any) -> Any:
    return np.ones_like(_float(z))


# --------------------------------------------------------------------------- forward


def _fwd_missing_activation(x: Any, w1: Any, w2: Any, pair: Pair) -> Any:
    return _float(x) @ _float(w1) @ _float(w2)


def _fwd_activation_on_output(x: Any, w1: Any, w2: Any, pair: Pair) -> Any:
    return pair.f(_float(pair.f(_float(x) @ _float(w1))) @ _float(w2))


def _fwd_w1_transposed(x: Any, w1: Any, w2: Any, pair: Pair) -> Any:
    """The seed's ``w1 @ x`` applied to every row: ``x @ w1.T`` (runs only when w1 is square)."""
    return _float(pair.f(_float(x) @ _float(w1).T)) @ _float(w2)


def _fwd_x_transposed(x: Any, w1: Any, w2: Any, pair: Pair) -> Any:
    """Samples taken as columns: ``x.T @ w1`` (runs only when the batch is as long as a sample)."""
    return _float(pair.f(_float(x).T @ _float(w1))) @ _float(w2)


# --------------------------------------------------------------------------- backward, by flags

BACKWARD_FLAGS = frozenset({
    "dact_on_w2_partials", "outer_transposed", "missing_d_activation", "activation_instead_of_d_activation",
    "gradient_sign_flipped", "missing_loss_derivative", "w2_grad_uses_preactivation", "w1_grad_missing_w2",
    "returns_swapped", "mean_instead_of_sum", "last_sample_only", "error_summed_first",
})

#: Flags that change the w1 partials only through the per-sample delta, which the template's bug
#: replaces altogether: combined with ``dact_on_w2_partials`` they change nothing.
_DELTA_FLAGS = frozenset({"missing_d_activation", "activation_instead_of_d_activation", "missing_loss_derivative",
                          "w1_grad_missing_w2"})
#: Pairs of flags that are two answers to one question (which slope), so never both at once.
_EXCLUSIVE = (frozenset({"missing_d_activation", "activation_instead_of_d_activation"}),)


def backward_with(flags: frozenset[str]) -> Impl:
    """The reference backward with the given bugs switched on.

    The pair is called on the whole hidden pre-activation only (as the reference does), so a
    student's own tabulated pair can answer for every mutant that uses it there.
    """
    unknown = flags - BACKWARD_FLAGS
    if unknown:
        raise ValueError(f"unknown backward flags {sorted(unknown)}")

    def backward(x: Any, y: Any, y_hat: Any, w1: Any, w2: Any, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        x, w1, w2 = _float(x), _float(w1), _float(w2)
        h = x @ w1
        error = _float(y_hat) - _float(y)
        if "gradient_sign_flipped" in flags:
            error = -error                                  # y - y_hat
        if "error_summed_first" in flags:
            error = np.full(error.shape, error.sum())       # one total error stands in for each sample's
        a = _float(pair.f(h))
        rows = slice(-1, None) if "last_sample_only" in flags else slice(None)
        x_used, error_used, h_used, a_used = x[rows], error[rows], h[rows], a[rows]
        w2_partials: np.ndarray = (h_used if "w2_grad_uses_preactivation" in flags else a_used).T @ error_used
        if "dact_on_w2_partials" in flags:
            # The template: np.outer(d_activation(w2_partials), x.sum(axis=0)), i.e. the same
            # "delta" for every sample, and that delta is the slope at the w2 partials.
            delta = np.ones((len(x_used), 1)) * _float(pair.df(w2_partials))
        else:
            if "activation_instead_of_d_activation" in flags:
                slope = a_used
            elif "missing_d_activation" in flags:
                slope = np.ones_like(h_used)
            else:
                slope = _float(pair.df(h))[rows]
            err = np.ones_like(error_used) if "missing_loss_derivative" in flags else error_used
            weight = np.ones_like(w2) if "w1_grad_missing_w2" in flags else w2
            delta = np.outer(err, weight) * slope
        w1_partials: np.ndarray = delta.T @ x_used if "outer_transposed" in flags else x_used.T @ delta
        if "mean_instead_of_sum" in flags:
            w1_partials, w2_partials = w1_partials / len(x), w2_partials / len(x)
        return (w2_partials, w1_partials) if "returns_swapped" in flags else (w1_partials, w2_partials)

    return backward


@lru_cache(maxsize=256)
def _backward(flags: frozenset[str]) -> Impl:
    """One implementation object per flag set: outcomes can then be cached by identity (grader.diagnose)."""
    return backward_with(flags)


def _flag_variants(*flag_sets: tuple[str, ...]) -> tuple[Impl, ...]:
    return tuple(_backward(frozenset(flags)) for flags in flag_sets)


#: Which flag sets spell each backward id. The template's own line is
#: ``np.outer(d_activation(w2_partials), x.sum(axis=0))``: d_activation on the w2 partials, with the
#: outer product also reversed (unseen on the template's square w1); students who fix the order but
#: keep the wrong argument make the same bug, so both spellings carry the one id, as in simple_nn.
BACKWARD_SPELLINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "d_activation_on_w2_partials": (("dact_on_w2_partials", "outer_transposed"), ("dact_on_w2_partials",)),
    "outer_transposed": (("outer_transposed",),),
    "missing_d_activation": (("missing_d_activation",),),
    "activation_instead_of_d_activation": (("activation_instead_of_d_activation",),),
    "gradient_sign_flipped": (("gradient_sign_flipped",),),
    "missing_loss_derivative": (("missing_loss_derivative",),),
    "w2_grad_uses_preactivation": (("w2_grad_uses_preactivation",),),
    "w1_grad_missing_w2": (("w1_grad_missing_w2",),),
    "returns_swapped": (("returns_swapped",),),
    "mean_instead_of_sum": (("mean_instead_of_sum",),),
    "last_sample_only": (("last_sample_only",),),
    "error_summed_first": (("error_summed_first",),),
}


# --------------------------------------------------------------------------- step


def _step_not_in_place(w1: Any, w2: Any, w1_partials: Any, w2_partials: Any, eta: Any) -> None:
    """``w1 = w1 - eta * w1_partials`` rebinds the local name; the caller's arrays stay as they were."""
    w1 = w1 - eta * w1_partials
    w2 = w2 - eta * w2_partials


def _step_returns_new(w1: Any, w2: Any, w1_partials: Any, w2_partials: Any, eta: Any) -> tuple[Any, Any]:
    """The seed's habit: new arrays returned, which the template's loop ignores."""
    return w1 - eta * w1_partials, w2 - eta * w2_partials


def _step_sign_flipped(w1: Any, w2: Any, w1_partials: Any, w2_partials: Any, eta: Any) -> None:
    w1 += eta * w1_partials
    w2 += eta * w2_partials


def _step_missing_eta(w1: Any, w2: Any, w1_partials: Any, w2_partials: Any, eta: Any) -> None:
    w1 -= w1_partials
    w2 -= w2_partials


# --------------------------------------------------------------------------- hints

HINTS: dict[str, str] = {
    "not_implemented": "This function returns None or is still the template: fill in its body and return the result.",
    "relu_wrong_side": "Your activation keeps the negative inputs and zeroes the positive ones: check which side of 0 ReLU lets through.",
    "activation_identity": "Your activation returns its input unchanged, so the network stays linear: apply max(0, z) element by element.",
    "activation_scalar_only": "Your activation works on a single number but fails on a numpy array: use an element-wise numpy operation instead of Python's max or if.",
    "activation_vector_only": "Your activation loops over the elements of z, which works on a vector but not on a batch, where each element is a row: use an element-wise numpy operation such as np.maximum.",
    "d_activation_wrong_side": "Your derivative is 1 where z < 0: ReLU's slope is 1 for positive inputs and 0 for negative ones.",
    "d_activation_returns_activation": "Your derivative returns ReLU(z) itself rather than its slope: the slope of ReLU is 0 or 1.",
    "d_activation_scalar_only": "Your derivative works on a single number but fails on a numpy array: make it element-wise.",
    "d_activation_vector_only": "Your derivative loops over the elements of z, which works on a vector but not on a batch, where each element is a row: compare the whole array with 0 at once.",
    "d_activation_constant": "Your derivative is 1 everywhere: it should depend on the sign of z.",
    "forward_missing_activation": "Your forward pass never applies the activation to the hidden layer, so the network is linear.",
    "forward_activation_on_output": "Your forward pass applies the activation to the output as well: only the hidden layer has one.",
    "forward_transposed": "Your forward pass multiplies in the wrong orientation: x holds one sample per row, shape (n, n_in), and w1 is (n_in, n_hidden), so the hidden layer is x @ w1, shape (n, n_hidden); it only runs when the shapes happen to be square.",
    "d_activation_on_w2_partials": "The w1 partials apply d_activation to the w2 partials (the template's bug): the slope belongs on the hidden pre-activation x @ w1, and the chain rule also brings in w2 and each sample's loss derivative before summing over the batch.",
    "outer_transposed": "Your w1 partials come out transposed: they must have w1's shape, (n_in, n_hidden), which x.T @ delta gives; it only looks right when w1 is square.",
    "missing_d_activation": "Your w1 partials leave out the activation's slope at the hidden layer: the chain rule passes through the activation.",
    "activation_instead_of_d_activation": "Your w1 partials multiply by the activation where its derivative belongs.",
    "gradient_sign_flipped": "Your partials have the wrong sign: the loss derivative is y_hat - y, so each partial points uphill and step walks down it.",
    "missing_loss_derivative": "Your w1 partials leave out the loss derivative (y_hat - y): both partials start from it, sample by sample.",
    "w2_grad_uses_preactivation": "Your w2 partials use the hidden pre-activation x @ w1: w2 multiplies the hidden layer's output after the activation.",
    "w1_grad_missing_w2": "Your w1 partials leave out w2: the error reaches each hidden unit through its output weight.",
    "returns_swapped": "backward returns the partials in the wrong order: return (w1_partials, w2_partials).",
    "mean_instead_of_sum": "Your partials are averaged over the batch, but L adds the samples' losses up: its partials are sums, not means.",
    "last_sample_only": "Your partials come from the last sample only: a loop over the samples must add each one's partials (+=), not overwrite them.",
    "error_summed_first": "Your partials sum the errors (y_hat - y) over the batch before the chain rule: each sample's error multiplies that sample's own hidden values, and only then are the samples added up.",
    "step_not_in_place": "step leaves the caller's w1 and w2 as they were: w1 = w1 - eta * w1_partials only rebinds the name inside step (and the loop ignores what step returns); change the arrays themselves with w1 -= eta * w1_partials.",
    "step_sign_flipped": "Your step moves the weights uphill: gradient descent subtracts eta times the partials.",
    "step_missing_eta": "Your step does not scale the partials by the learning rate eta.",
}


def _mutant(id_: str, function: str, *variants: Impl) -> Mutant:
    return Mutant(id_, function, HINTS[id_], variants)


MUTANTS: tuple[Mutant, ...] = (
    _mutant("not_implemented", "activation", _not_implemented, _raises_not_implemented),
    _mutant("relu_wrong_side", "activation", _relu_wrong_side),
    _mutant("activation_identity", "activation", _identity),
    _mutant("activation_scalar_only", "activation", _scalar_max),
    _mutant("activation_vector_only", "activation", _vector_only),
    _mutant("not_implemented", "d_activation", _not_implemented, _raises_not_implemented),
    _mutant("d_activation_wrong_side", "d_activation", _d_wrong_side),
    _mutant("d_activation_returns_activation", "d_activation", _d_returns_activation),
    _mutant("d_activation_scalar_only", "d_activation", _d_scalar_only),
    _mutant("d_activation_vector_only", "d_activation", _d_vector_only),
    _mutant("d_activation_constant", "d_activation", _d_constant),
    _mutant("not_implemented", "forward", _not_implemented, _raises_not_implemented),
    _mutant("forward_missing_activation", "forward", _fwd_missing_activation),
    _mutant("forward_activation_on_output", "forward", _fwd_activation_on_output),
    _mutant("forward_transposed", "forward", _fwd_w1_transposed, _fwd_x_transposed),
    _mutant("not_implemented", "backward", _not_implemented, _raises_not_implemented),
    *(_mutant(id_, "backward", *_flag_variants(*spellings)) for id_, spellings in BACKWARD_SPELLINGS.items()),
    # A step that returns None and changes nothing is what an empty body does too: that behaviour
    # is step_not_in_place (whose hint says what to write), so not_implemented is the explicit raise.
    _mutant("not_implemented", "step", _raises_not_implemented),
    _mutant("step_not_in_place", "step", _step_not_in_place, _step_returns_new),
    _mutant("step_sign_flipped", "step", _step_sign_flipped),
    _mutant("step_missing_eta", "step", _step_missing_eta),
)


def mutants_for(function: str) -> list[Mutant]:
    return [m for m in MUTANTS if m.function == function]


def combinations() -> list[tuple[tuple[str, str], Impl]]:
    """Every two-bug backward, named by both ids, skipping spellings a single id already covers and
    pairs where one bug hides the other.

    Built once per process: the same implementation objects every time, so their outcomes can be
    cached by identity (``grader.diagnose``), and no rebuild per notebook.
    """
    return list(_combinations())


@lru_cache(maxsize=1)
def _combinations() -> tuple[tuple[tuple[str, str], Impl], ...]:
    single = {frozenset(flags) for spellings in BACKWARD_SPELLINGS.values() for flags in spellings}
    seen: set[frozenset[str]] = set()
    found: list[tuple[tuple[str, str], Impl]] = []
    for (id_a, spellings_a), (id_b, spellings_b) in pairs_of(BACKWARD_SPELLINGS.items(), 2):
        for flags_a in spellings_a:
            for flags_b in spellings_b:
                flags = frozenset(flags_a) | frozenset(flags_b)
                if flags in single or flags in seen or _hidden(flags):
                    continue
                seen.add(flags)
                found.append(((id_a, id_b), _backward(flags)))
    return tuple(found)


def _hidden(flags: frozenset[str]) -> bool:
    """True when one flag of the set makes another irrelevant (the combination equals a single bug)."""
    if "dact_on_w2_partials" in flags and flags & _DELTA_FLAGS:
        return True
    return any(pair <= flags for pair in _EXCLUSIVE)


def ids() -> Sequence[str]:
    """Every catalogued id, in catalogue order, once."""
    return tuple(dict.fromkeys(m.id for m in MUTANTS))
