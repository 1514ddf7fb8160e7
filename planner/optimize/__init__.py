"""The planner's mixed-integer program: the best deployment of a mode at an interactivity target.

Modules: :mod:`~planner.optimize.packing` (nodes and domains), :mod:`~planner.optimize.model`
(the Pyomo model), :mod:`~planner.optimize.backends` (persistent HiGHS and OR-Tools),
:mod:`~planner.optimize.optimizer` (objectives and re-solves), :mod:`~planner.optimize.plan`
(reading a plan back), :mod:`~planner.optimize.brute_force` (the referee).

Formulation
-----------
Data (from the candidate tables of :mod:`planner.space`, one row ``c`` per layout x batch):
``pool(c)`` in the mode's pools (disaggregated: prefill, decode; aggregated: aggregated),
``g_c`` GPUs per instance, ``r_c`` requests/s per instance, ``u_c`` tokens/s per user
(decode-like pools), OSL, the GPU budget ``G``, ``L`` = ``layouts_per_pool``, node size ``N``,
scale-up domain size ``D``, and bins ``b`` with ``K_b`` nodes each (see
:mod:`~planner.optimize.packing`: one bin for the whole cluster when counting is exact,
else one per domain).

Variables::

    x[c,b] in Z+       instances of c placed in bin b          (c smaller than a domain)
    w[c]   in Z+       instances of c spanning whole domains   (c larger than a domain)
    y[c]   in {0,1}    layout c is used
    s[k,b] in Z+       nodes of bin b holding sub-node instances of group k
    z[b]   in {0,1}    bin b is reserved for domain-spanning instances
    lam    >= 0        served requests/s

with ``n[c] = sum_b x[c,b] + w[c]`` and ``GPUs = sum_c g_c n[c]``.

Constraints::

    lam <= sum_{c in q} r_c n[c]                    for each pool q   (rate matching)
    lam >= load                                     (min_gpus / min_cost only; else load = 0)
    y[c] <= n[c] <= floor(G / g_c) y[c]             (instances exactly of the used layouts)
    1 <= sum_{c in q} y[c] <= L                     for each pool q
    y[c] <= 1 if u_c >= T else 0                    decode-like c (target T: a bound, not a rebuild)
    GPUs <= G
    N s[k,b] >= sum_{c in k} g_c x[c,b]             sub-node instances (g_c < N) fill whole nodes;
                                                    k = all, or per pool with exclusive_nodes, or
                                                    per size (floor(N/g) per node) when sizes don't chain
    sum_c (g_c/N) x[c,b] + sum_k s[k,b] <= K_b (1 - z[b])      whole-node instances and shared nodes
    sum_c (g_c/D) w[c] <= sum_b z[b]                domain-spanning instances take whole domains
    prefill GPUs within R (1 +- 3%) x decode GPUs   (--fixed-ratio R only)

Objectives (one linear form ``a OSL lam - theta GPUs - kappa nodes``, weights are mutable):

- ``max_tokens_per_s_per_gpu``: maximize ``OSL lam / GPUs`` by Dinkelbach's method
  (repeat: maximize ``OSL lam - theta GPUs``, set ``theta`` to the ratio found, until
  the optimum is 0);
- ``min_gpus``: minimize GPUs; ``min_cost``: minimize ``price x N x nodes used``;
- then a tie-break: keep the optimum as a constraint, maximize ``OSL lam``.

Pruned candidates (dominated rows, :mod:`planner.space`) never change the optimum, and the
frontier (:mod:`planner.frontier`) solves only at the ``u_c`` where the optimum can change.
"""
