"""Fit a sentence scorer's weights: an L2-regularized conditional logit, by Newton's method (numpy only).

Each question is one choice among its sentences: ``P(i) = softmax(z @ w)`` over that
question's rows, with ``z`` the standardized features (McFadden's conditional logit; the
listwise softmax loss of learning to rank). The loss is the mean negative log-probability
of the question's positive sentences, weighted per question, plus ``l2 / 2 * |w|^2``. It is
convex, so Newton's method (damped by a backtracking line search) converges to the one
optimum whatever the start: the fit is
deterministic for the same rows, weights and order.

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
>>> y = np.array([1, 0, 0, 1, 0])
>>> model = fit_linear(x, y, groups=np.array([0, 0, 0, 1, 1]), names=("bm25", "lead"), l2=0.1)
>>> bool(model.coef[0] > 0 > model.coef[1])
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optimizer.stages.sentence_scorer import LinearModel


def _check(x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray | None) -> None:
    if x.ndim != 2 or len(x) != len(y) or len(x) != len(groups):
        raise ValueError(f"fit: x must be (rows, features) with one label and group per row, got {x.shape}, {len(y)}, {len(groups)}")
    if len(groups) and np.any(np.diff(groups) < 0):
        raise ValueError("fit: rows must be sorted by group (each question's sentences together)")
    if weights is not None and len(weights) != len(np.unique(groups)):
        raise ValueError(f"fit: need one weight per group ({len(np.unique(groups))}), got {len(weights)}")


def _group_starts(groups: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])


def _softmax_by_group(s: np.ndarray, starts: np.ndarray, index: np.ndarray) -> np.ndarray:
    top = np.maximum.reduceat(s, starts)[index]
    e = np.exp(s - top)
    return e / np.add.reduceat(e, starts)[index]


def _loss_grad_hess(w, z, target, row_w, starts, index, group_w, l2):  # type: ignore[no-untyped-def]
    s = z @ w
    p = _softmax_by_group(s, starts, index)
    logp = np.log(np.maximum(p, 1e-300))
    loss = -float(np.sum(row_w * target * logp)) + 0.5 * l2 * float(w @ w)
    grad = z.T @ (row_w * (p - target)) + l2 * w
    m = np.add.reduceat(p[:, None] * z, starts)  # per group: expected feature vector
    hess = (z * (group_w[index] * p)[:, None]).T @ z - (m * group_w[:, None]).T @ m + l2 * np.eye(len(w))
    return loss, grad, hess


def fit_linear(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups: np.ndarray,
    names: Sequence[str],
    weights: np.ndarray | None = None,
    l2: float = 1.0,
    iterations: int = 50,
) -> LinearModel:
    """Fit a :class:`LinearModel` on rows ``x`` (sorted by ``groups``), labels ``y`` (1 = holds the answer).

    Groups without a positive row or with one row carry no information and are dropped.
    ``weights`` gives each group's weight (default 1); ``l2`` is the ridge penalty on the
    standardized coefficients, per question (the loss is the weighted mean over questions, the
    penalty ``l2 / questions``).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    _check(x, y, groups, weights)
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
        raise ValueError(f"fit: l2 must be a non-negative number, got {l2!r}")
    starts = _group_starts(groups)
    index = np.cumsum(np.r_[False, groups[1:] != groups[:-1]]) if len(groups) else np.zeros(0, dtype=int)
    group_w = np.ones(len(starts)) if weights is None else np.asarray(weights, dtype=np.float64)
    positives = np.add.reduceat(y, starts)
    sizes = np.diff(np.r_[starts, len(groups)])
    keep_group = (positives > 0) & (sizes > 1)
    if not keep_group.any():
        raise ValueError("fit: no question has both a positive and another sentence; nothing to learn from")
    rows = keep_group[index]
    x, y, index = x[rows], y[rows], index[rows]
    old = np.flatnonzero(keep_group)
    index = np.searchsorted(old, index)
    group_w = group_w[keep_group] / group_w[keep_group].sum()
    starts = _group_starts(index)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    target = y / np.add.reduceat(y, starts)[index]  # each group's positives share its weight
    row_w = group_w[index]
    w = np.zeros(z.shape[1])
    penalty = l2 / len(starts)
    for _ in range(iterations):
        loss, grad, hess = _loss_grad_hess(w, z, target, row_w, starts, index, group_w, penalty)
        step = np.linalg.solve(hess + 1e-10 * np.eye(len(w)), grad)
        t = 1.0  # backtracking line search: a damped Newton step that lowers the loss
        while t > 1e-8 and _loss_grad_hess(w - t * step, z, target, row_w, starts, index, group_w, penalty)[0] > loss - 0.25 * t * float(grad @ step):
            t *= 0.5
        w = w - t * step
        if float(np.max(np.abs(t * step))) < 1e-9:
            break
    return LinearModel(names=tuple(names), mean=mean, scale=scale, coef=w)
