"""Population-based training's exploit/explore step (Jaderberg et al. 2017) as one gather.

``pbt_exploit`` decides, for every slot, which slot it continues from (itself, or a top member)
and its next hyperparameters; ``Runner.copy_from`` then applies the decision to the member
states as a gather on the population axis, inside one compiled program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def pbt_exploit(
    key: jax.Array,
    scores: jax.Array,
    hparams: Any,
    quantile: float = 0.25,
    perturb: tuple[float, float] = (0.8, 1.2),
    resample_prob: float = 0.25,
    resample: Any | None = None,
    active: jax.Array | None = None,
) -> tuple[jax.Array, Any, jax.Array]:
    """Truncation selection with perturbation.

    Args:
      key: PRNG key.
      scores: ``(W,)`` current scores, higher is better; non-finite ones rank last.
      hparams: pytree of ``(W,)`` hyperparameter leaves.
      quantile: the bottom ``quantile`` copy a uniformly drawn member of the top ``quantile``.
      perturb: factors one of which multiplies each copied hyperparameter (independently).
      resample_prob: probability a copied hyperparameter is instead taken from ``resample``.
      resample: pytree like ``hparams`` of fresh draws ``(W,)`` (e.g. from the search space);
        ``None`` disables resampling.
      active: ``(W,)`` bool, slots taking part (padding and finished slots do not).

    Returns:
      ``(source (W,) int32, new_hparams, replaced (W,) bool)``; ``source[i] == i`` where slot
      ``i`` keeps its own state.
    """
    if not 0.0 < quantile <= 0.5:
        raise ValueError(f"pbt: quantile={quantile!r} must be in (0, 0.5]")
    w = scores.shape[0]
    active = jnp.ones(w, bool) if active is None else active
    s = jnp.where(jnp.logical_and(active, jnp.isfinite(scores)), scores, -jnp.inf)
    n_active = jnp.sum(active)
    k = jnp.maximum(1, jnp.floor(n_active * quantile)).astype(jnp.int32)
    # rank 0 = best; inactive slots are sorted last and never chosen
    order = jnp.argsort(jnp.where(active, -s, jnp.inf))
    rank = jnp.empty(w, jnp.int32).at[order].set(jnp.arange(w, dtype=jnp.int32))
    bottom = jnp.logical_and(active, rank >= n_active - k)
    k_src, k_fac, k_res = jax.random.split(key, 3)
    src_rank = jax.random.randint(k_src, (w,), 0, k)
    source = jnp.where(bottom, order[src_rank], jnp.arange(w))

    leaves, tree = jax.tree.flatten(hparams)
    res_leaves = jax.tree.leaves(resample) if resample is not None else [None] * len(leaves)
    new = []
    for i, (leaf, fresh) in enumerate(zip(leaves, res_leaves)):
        kf, kr = jax.random.split(jax.random.fold_in(k_fac, i))
        copied = leaf[source]
        factor = jnp.where(jax.random.bernoulli(kf, 0.5, (w,)), perturb[1], perturb[0])
        value = copied * factor
        if fresh is not None:
            value = jnp.where(jax.random.bernoulli(kr, resample_prob, (w,)), fresh, value)
        new.append(jnp.where(bottom, value, leaf))
    return source.astype(jnp.int32), jax.tree.unflatten(tree, new), bottom
