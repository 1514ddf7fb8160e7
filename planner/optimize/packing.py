"""Where instances can go: nodes, scale-up domains, and how the MIP counts capacity exactly.

Why it exists
    A plan is only real if its instances fit the cluster's nodes. An instance
    smaller than a node must sit inside one node (a TP group never straddles a
    PCIe/NIC boundary); a larger one spans whole nodes of one scale-up domain; one
    larger than a domain (PP stages across racks) spans whole domains. This module
    classifies each candidate's GPU count against the cluster and decides how the
    MIP counts capacity without losing exactness (proofs: ``docs/formulation.md``).

Sub-node instances
    Sizes that form a *divisibility chain* with the node (each divides the next,
    the largest divides the node) fill nodes exactly by GPU count. Other sizes
    (3- and 2-GPU instances in an 8-GPU node) are counted by node *patterns*: every
    maximal way to fill one node, so any mix a node can hold is allowed.

Whole-node instances across domains
    When the instance sizes in nodes (1 for a node of sub-node instances) chain
    among themselves, one bin holds the whole cluster and *prefix-capacity* rows make
    it exact even when the sizes do not tile a domain (a GB200 NVL72 rack is 18
    four-GPU nodes; 16-node instances do not tile it): with sizes s_1 | s_2 | ...,
    a placement exists iff, for every j,
    ``sum_{i >= j} s_i n_i <= sum_domains floor(M_d / s_j) s_j``. Only levels where
    some domain is not a multiple of ``s_j`` need a row. Sizes that do not chain
    (3-node and 2-node instances) fall back to one bin per domain, exact, with the
    interchangeable domains ordered to cut symmetric branches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.specs import HardwareSpec


def is_chain(sizes: set[int], container: int) -> bool:
    """True when the sizes, sorted, each divide the next and the container."""
    ordered = sorted(sizes) + [container]
    return all(b % a == 0 for a, b in zip(ordered, ordered[1:], strict=False))


MAX_NODE_PATTERNS = 256
"""Past this many maximal node fillings (huge nodes, many odd sizes) each node holds one size only:
safe (never accepts an unpackable plan) but not exact."""


@dataclass(frozen=True)
class Geometry:
    """The cluster as containers: ``bins`` (domains, or the whole cluster) of whole nodes."""

    gpus_per_node: int
    domain_gpus: int
    max_gpus: int
    bin_nodes: tuple[int, ...]
    """Nodes in each bin: one bin (the whole cluster) unless the per-domain fallback is needed."""
    bins_are_domains: bool
    """True when each bin is one scale-up domain (the exact fallback for sizes that do not chain)."""
    sub_node_chain: bool
    """True when sub-node instance sizes chain, so nodes can be shared by GPU count."""
    sub_node_patterns: bool = False
    """True when sub-node sizes do not chain and nodes are counted by maximal fillings (exact)."""
    domain_nodes: tuple[int, ...] = ()
    """Nodes of each scale-up domain in the budget (only the last may be partial); empty if one domain."""
    prefix_levels: tuple[int, ...] = ()
    """Instance sizes in nodes that need a prefix-capacity row (one bin over several domains)."""

    @property
    def nodes(self) -> int:
        """Nodes in the budget (a partial last node counts as one)."""
        return sum(self.bin_nodes)

    @property
    def spans_domains(self) -> bool:
        """True when there are several domains of several nodes: larger instances take whole domains."""
        return len(self.domain_nodes) > 1

    @property
    def full_domains(self) -> int:
        """Domains with every node in the budget (the ones a domain-spanning instance can take)."""
        nodes_per_domain = self.domain_gpus // self.gpus_per_node
        return sum(1 for n in self.domain_nodes if n == nodes_per_domain)

    def level_capacity(self, level: int) -> int:
        """Nodes instances of ``level`` nodes or more can fill: ``sum_d floor(M_d / level) level``."""
        return sum(n // level * level for n in self.domain_nodes)

    def placement(self, gpus: int) -> str:
        """``sub_node``, ``whole_nodes``, ``whole_domains``, or why the size cannot be placed."""
        if gpus < self.gpus_per_node:
            return "sub_node"
        if gpus % self.gpus_per_node:
            return f"{gpus} GPUs neither fit in one {self.gpus_per_node}-GPU node nor span whole nodes"
        if gpus <= self.domain_gpus or not self.spans_domains:
            return "whole_nodes"
        if gpus % self.domain_gpus:
            return f"{gpus} GPUs neither fit in one {self.domain_gpus}-GPU domain nor span whole domains"
        return "whole_domains"


def node_patterns(
    sizes: list[int], node: int, limit: int = MAX_NODE_PATTERNS
) -> list[tuple[int, ...]] | None:
    """Every maximal filling of one node with these sizes (counts per size), or None past ``limit``."""
    patterns: list[tuple[int, ...]] = []

    def extend(i: int, left: int, chosen: tuple[int, ...]) -> bool:
        if i == len(sizes):
            if all(size > left for size in sizes) and any(chosen):
                patterns.append(chosen)
            return len(patterns) <= limit
        return all(extend(i + 1, left - n * sizes[i], (*chosen, n)) for n in range(left // sizes[i], -1, -1))

    return patterns if extend(0, node, ()) else None


def geometry(
    hardware: HardwareSpec, max_gpus: int, instance_gpus: set[int], *, aggregate: bool = True
) -> Geometry:
    """How the MIP should count capacity for instances of these GPU counts on this cluster.

    ``aggregate=False`` forces one bin per domain wherever there are several (the
    reference formulation the aggregated one is tested against).
    """
    node = hardware.gpus_per_node
    domain = max(hardware.scale_up_domain_gpus, node)
    nodes = math.ceil(max_gpus / node)
    sub_node = {g for g in instance_gpus if g < node}
    sub_node_chain = is_chain(sub_node, node)
    patterns = not sub_node_chain and node_patterns(sorted(sub_node), node) is not None
    nodes_per_domain = domain // node
    if nodes <= nodes_per_domain or nodes_per_domain == 1:
        return Geometry(node, domain, max_gpus, (nodes,), False, sub_node_chain, patterns)
    domain_nodes = [nodes_per_domain] * (nodes // nodes_per_domain)
    if nodes % nodes_per_domain:
        domain_nodes.append(nodes % nodes_per_domain)
    levels = {g // node for g in instance_gpus if node <= g <= domain and g % node == 0}
    levels |= {1} if sub_node else set()
    if aggregate and (not levels or is_chain(levels, max(levels))):
        needed = tuple(s for s in sorted(levels) if any(m % s for m in domain_nodes))
        return Geometry(
            node, domain, max_gpus, (nodes,), False, sub_node_chain, patterns, tuple(domain_nodes), needed
        )
    bins = tuple(domain_nodes)
    return Geometry(node, domain, max_gpus, bins, True, sub_node_chain, patterns, bins)


def least_shared_nodes(sizes: list[int], counts: list[int], node: int) -> int:
    """Fewest nodes holding ``counts[i]`` sub-node instances of ``sizes[i]`` GPUs each (any sizes)."""
    counts_by_size = dict.fromkeys(sorted(set(sizes)), 0)
    for size, count in zip(sizes, counts, strict=True):
        counts_by_size[size] += count
    ordered = [s for s, n in counts_by_size.items() if n]
    if not ordered:
        return 0
    if is_chain(set(ordered), node):
        return -(-sum(s * counts_by_size[s] for s in ordered) // node)
    from scipy.optimize import Bounds, LinearConstraint, milp

    patterns = np.array(node_patterns(ordered, node, limit=10**6), dtype=float)
    need = np.array([counts_by_size[s] for s in ordered], dtype=float)
    found = milp(
        np.ones(len(patterns)),
        constraints=LinearConstraint(patterns.T, lb=need),
        integrality=np.ones(len(patterns)),
        bounds=Bounds(0, np.inf),
    )
    return round(found.fun)
