"""Where instances can go: nodes, scale-up domains, and when counting GPUs is exact packing.

Why it exists
    A plan is only real if its instances fit the cluster's nodes. An instance
    smaller than a node must sit inside one node (a TP group never straddles a
    PCIe/NIC boundary); a larger one spans whole nodes; one larger than a
    scale-up domain (PP stages across racks) spans whole domains. This module
    classifies each candidate's GPU count against the cluster and decides how
    the MIP may count capacity without losing exactness.

When aggregate counting is exact
    If the sizes sharing a container form a *divisibility chain* (each divides
    the next, and the largest divides the container) then items fit into
    containers exactly when their total size does, filling largest-first
    (first-fit decreasing never leaves a gap an item could have used). Every
    shipped model has power-of-two instance sizes and power-of-two nodes, so
    the MIP can count sub-node GPUs per node and whole nodes per cluster.

    When the chain breaks the MIP falls back to safe formulations that never
    accept an unpackable plan:

    - sub-node sizes that do not chain (e.g. 3- and 2-GPU instances in an 8-GPU
      node): each node holds instances of one size only;
    - node counts per domain that do not chain with the domain (a GB200 NVL72
      rack is 18 four-GPU nodes; 16-node instances do not tile it): one bin per
      domain, and instances are assigned to domains explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.specs import HardwareSpec


def is_chain(sizes: set[int], container: int) -> bool:
    """True when the sizes, sorted, each divide the next and the container."""
    ordered = sorted(sizes) + [container]
    return all(b % a == 0 for a, b in zip(ordered, ordered[1:], strict=False))


@dataclass(frozen=True)
class Geometry:
    """The cluster as containers: ``bins`` (domains, or the whole cluster) of whole nodes."""

    gpus_per_node: int
    domain_gpus: int
    max_gpus: int
    bin_nodes: tuple[int, ...]
    """Nodes in each bin. One bin (the whole cluster) when aggregate counting is exact."""
    bins_are_domains: bool
    """True when each bin is one scale-up domain (instances larger than a domain span whole bins)."""
    sub_node_chain: bool
    """True when sub-node instance sizes chain, so nodes can be shared by GPU count."""

    @property
    def nodes(self) -> int:
        """Nodes in the budget (a partial last node counts as one)."""
        return sum(self.bin_nodes)

    def placement(self, gpus: int) -> str:
        """``sub_node``, ``whole_nodes``, ``whole_domains``, or why the size cannot be placed."""
        if gpus < self.gpus_per_node:
            return "sub_node"
        if gpus % self.gpus_per_node:
            return f"{gpus} GPUs neither fit in one {self.gpus_per_node}-GPU node nor span whole nodes"
        if gpus <= self.domain_gpus or not self.bins_are_domains:
            return "whole_nodes"
        if gpus % self.domain_gpus:
            return f"{gpus} GPUs neither fit in one {self.domain_gpus}-GPU domain nor span whole domains"
        return "whole_domains"


def geometry(hardware: HardwareSpec, max_gpus: int, instance_gpus: set[int]) -> Geometry:
    """How the MIP should count capacity for instances of these GPU counts on this cluster."""
    node = hardware.gpus_per_node
    domain = max(hardware.scale_up_domain_gpus, node)
    nodes = math.ceil(max_gpus / node)
    sub_node = {g for g in instance_gpus if g < node}
    sub_node_chain = is_chain(sub_node, node)
    nodes_per_domain = domain // node
    domains = math.ceil(max_gpus / domain)
    within = {g // node for g in instance_gpus if node <= g <= domain and g % node == 0}
    within |= {1} if sub_node else set()
    spanning_ok = all(g % domain == 0 for g in instance_gpus if g > domain)
    one_bin = domains == 1 or nodes_per_domain == 1 or (is_chain(within, nodes_per_domain) and spanning_ok)
    if one_bin:
        return Geometry(node, domain, max_gpus, (nodes,), False, sub_node_chain)
    per_bin = [nodes_per_domain] * (nodes // nodes_per_domain)
    if nodes % nodes_per_domain:
        per_bin.append(nodes % nodes_per_domain)
    return Geometry(node, domain, max_gpus, tuple(per_bin), True, sub_node_chain)
