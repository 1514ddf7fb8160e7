"""The planner's mixed-integer program: the best deployment of a mode, per target and per period.

Modules: :mod:`~planner.optimize.packing` (nodes and domains), :mod:`~planner.optimize.model`
(candidates), :mod:`~planner.optimize.formulation` (the Pyomo model, one ``define_*`` builder per
block), :mod:`~planner.optimize.controls` (the only setters of its parameters and bounds),
:mod:`~planner.optimize.backends` (persistent HiGHS and OR-Tools),
:mod:`~planner.optimize.optimizer` (objectives and re-solves for one period),
:mod:`~planner.optimize.solution` (reading a solved model back), :mod:`~planner.optimize.plan`
(plans and their metrics), :mod:`~planner.optimize.brute_force` (the referee),
:mod:`~planner.optimize.period_bounds` and :mod:`~planner.optimize.layout_sets` (lower bounds that
decompose elastic plans by period and by layout set), :mod:`~planner.optimize.ratio_sets` (upper bounds
that decompose a frontier point by layout set).

Formulation
-----------
Data (from the candidate tables of :mod:`planner.space`): layouts ``c`` (one engine
configuration: pool, TP, PP, EP, attention-DP, batch, chunked prefill) with ``g_c`` GPUs;
rows ``r = (c, k)``, layout ``c`` priced at request class ``k``'s shape, with ``rho_r``
requests/s per instance and ``u_r`` tokens/s per user; classes ``k`` with output length
``OSL_k``; periods ``t`` (one for a frontier point) with share ``s_kt`` and load ``L_t``;
the GPU budget ``G``, ``L`` = ``layouts_per_pool``, node size ``N``, scale-up domain size
``D`` (``M`` nodes; domains of ``M_d`` nodes), and bins ``b`` with ``K_b`` nodes
(:mod:`~planner.optimize.packing`: one bin for the whole cluster when instance sizes chain, else
one per domain; the proofs are in ``docs/formulation.md``). One-shape traffic is one class,
and then rows and layouts coincide.

Variables::

    x[c,b,t] in Z+     instances of c in bin b in period t      (c smaller than a domain)
    w[c,t]   in Z+     instances of c spanning whole domains    (c larger than a domain)
    y[c]     in {0,1}  layout c is used (y[c,t] with allow_relayout)
    f[r,t]   >= 0      requests/s of row r's class routed to layout c's instances
    s[k,b,t] in Z+     nodes of bin b holding sub-node instances of group k
    z[b,t]   in {0,1}  bin b is reserved for domain-spanning instances
    lam[t]   >= 0      served requests/s (all classes)
    e[t]     >= 0      unserved requests/s (elastic studies only)

with ``n[c,t] = sum_b x[c,b,t] + w[c,t]`` and ``GPUs_t = sum_c g_c n[c,t]``.

Constraints::

    sum_{r of c} f[r,t] / rho_r <= n[c,t]            instances time-share their capacity
    sum_{r in pool q, class k} f[r,t] = s_kt lam[t]  for each pool q, class k  (rate matching)
    lam[t] + e[t] >= L_t                             (L_t = 0 for max tokens/s per GPU)
    y[c] <= sum_t n[c,t],  n[c,t] <= floor(G/g_c) y[c]   instances exactly of the used layouts
    1 <= sum_{c in q} y[c] <= L                      for each pool q
    f[r,t] <= 0 if u_r < max(T, floor_k)             decode-like rows (a bound, not a rebuild)
    GPUs_t <= G
    N s[k,b,t] >= sum_{c in k} g_c x[c,b,t]          sub-node instances (g_c < N) fill whole nodes;
                                                     k = all, or per pool with exclusive_nodes; sizes
                                                     that don't chain: by maximal node fillings
    one bin (sizes in nodes chain, the default), W_t = sum_c (g_c/D) w[c,t] domains spanned:
      sum_c (g_c/N) x[c,t] + sum_k s[k,t] + M W_t <= nodes,   W_t <= full domains
      sum_{c: g_c/N >= s_j} (g_c/N) x[c,t] (+ sum_k s[k,t] if s_j = 1) + floor(M/s_j) s_j W_t
          <= sum_d floor(M_d/s_j) s_j                for each size s_j not dividing a domain
    else one bin per domain:
      sum_c (g_c/N) x[c,b,t] + sum_k s[k,b,t] <= K_b (1 - z[b,t]),  W_t <= sum_b z[b,t]
    prefill GPUs within R (1 +- 3%) x decode GPUs    (fixed-ratio studies)
    |n[c,t] - n[c,t-1]| <= (1 - static) floor(G/g_c)  (static = 1 freezes the deployment)
    |GPUs_t - GPUs_{t-1}| <= ramp_limit_gpus,  pool GPUs_t >= min_pool_gpus
    GPUs_t >= LB_t                                   valid: the fewest GPUs period t needs alone
                                                     (:mod:`~planner.optimize.period_bounds`)

Objectives (one linear form ``a sum_t OSL_t lam[t] - sum_t theta_t GPUs_t - sum_t kappa_t nodes_t
- sum_t pi_t e[t]`` whose weights are mutable, ``OSL_t = sum_k s_kt OSL_k``):

- ``max_tokens_per_s_per_gpu``: maximize ``OSL lam / GPUs`` by Dinkelbach's method
  (repeat: maximize ``OSL lam - theta GPUs``, set ``theta`` to the ratio found, until
  the optimum is 0);
- ``min_gpus``: minimize GPUs; ``min_cost``: minimize ``price x N x nodes used``;
- ``max_throughput`` (an owned fleet): maximize ``OSL lam`` with load 0, then keep that rate as
  the load ``L`` and minimize GPUs (its own tie-break);
- then a tie-break: keep the optimum as a constraint, maximize ``OSL lam`` (``min_cost``: then,
  keeping that too, minimize GPUs); for the ratio, Dinkelbach's last step below the optimum
  (``theta' < theta*``) already maximized ``OSL lam - theta' GPUs``, which among the plans of
  ratio ``theta*`` is ``(theta* - theta') GPUs``: its plan is the largest, and no tie-break
  solve runs when ``theta'`` is far enough below ``theta*`` for the solver's gaps to tell plans apart;
- elastic studies: minimize GPU-hours (``theta_t`` = period hours), after minimizing
  hour-weighted unserved load when a period cannot be served.

A frontier point with ``L <= 2`` (no fixed ratio) is solved by layout set: the MIP restricted to
each set of the judged pool's layouts, in decreasing order of an enumerated bound on the set's ratio,
until the best plan meets the next bound (:mod:`~planner.optimize.ratio_sets`; proof in
``docs/formulation.md``); past its limits the full MIP answers the point.

Pruned candidates (dominated rows, :mod:`planner.space`) never change a one-shape optimum, and
the frontier (:mod:`planner.frontier`) solves only at the ``u_r`` where the optimum can change.
For a mix, a layout is dropped only when one other layout of its pool, on a GPU count dividing
its own, is at least as good for every class it serves (dominance in each class by different
layouts is not enough under ``L``); per target, among the rows allowed there, by requests/s per GPU
(:meth:`planner.optimize.model.Candidates.at_target`). Layouts of the pools not judged on
interactivity that no target can use are left out of the model (``usable_somewhere``).

Symbols and their names in the model
------------------------------------
Built by the ``define_*`` functions of :mod:`planner.optimize.formulation`; changed between
solves only through :class:`planner.optimize.controls.Controls`. ::

    ===================  =======================================  =================
    symbol               code name (m.*)                          define_*
    ===================  =======================================  =================
    c, r, k, q, t, b     L, R, K, Q, T, B                         sets
    x[c,b,t]             copies                                   variables
    w[c,t]               spanning_copies                          variables
    y[c] (y[c,t])        use                                      variables
    f[r,t]               flow                                     variables
    lam[t]               served_requests_per_s                    variables
    e[t]                 unserved_requests_per_s                  variables
    n[c,t], GPUs_t       instances, total_gpus                    variables
    s[k,b,t], z[b,t]     shared_nodes, reserved                   packing
    u_p (fillings)       pattern_nodes                            packing
    W_t                  spanned_domains                          packing
    L_t, s_kt            load_requests_per_s, share               parameters
    a, theta_t           tokens_weight, gpu_weight                parameters
    kappa_t, pi_t        node_weight, unserved_weight             parameters
    G, node cap          gpu_cap, node_cap                        parameters
    tie-break floors     ratio_floor, tokens_floor                parameters
    R, fixed ratio on    fixed_ratio, ratio_enforced              parameters
    static, ramp, floor  static, ramp_gpus, min_pool_gpus         parameters
    LB_t                 gpus_floor, gpus_floor_row               study_constraints
    time-sharing         capacity                                 capacity
    rate matching        rate_matching, serve_load                rate_matching
    y-n links            only_if_used, used_runs                  layout_choice
    1..L per pool        layouts_per_pool, pool_present           layout_choice
    GPUs_t <= G          gpu_budget                               packing
    shared nodes         sub_node_fill, patterns_fit              packing
    bins, domains        bin_capacity, spanning_fit, node_budget  packing
    prefix rows (P_j)    prefix_capacity                          packing
    fallback symmetry    bins_ordered, reserved_last              packing
    tie-break            tokens_per_gpu_floor, tokens_floor_row   study_constraints
    fixed ratio          ratio_high, ratio_low                    study_constraints
    pool floor           pool_floor                               study_constraints
    static, ramps        frozen_up/down, ramp_up/down             study_constraints
    objective            objective                                objective
    ===================  =======================================  =================
"""
