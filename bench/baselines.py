"""The two policies the relay is measured against in the placement simulation (not product code).

Both push a task into one node's queue the moment it arrives (early binding), and both ignore memory,
as the real ones do. Both are given `maxImages` charitably: the real WebODM picks the lowest queue
count whatever the task's size, and the task then fails on the node (status 30); here every baseline
task goes to a node that accepts its image count, so every task completes and makespans compare.
"""
from __future__ import annotations

from collections.abc import Sequence

from proxy.scheduler import NodeState


def _accepts(node: NodeState, images: int) -> bool:
    return node.online and not node.locked and (node.max_images is None or images <= node.max_images)


def clusterodx_choice(images: int, nodes: Sequence[NodeState]) -> str | None:
    """ClusterODX: the smallest `maxImages` that fits, then the most free slots, then the lowest queue count."""
    candidates = [n for n in nodes if _accepts(n, images)]
    if not candidates:
        return None
    best = min(candidates, key=lambda n: (n.max_images if n.max_images is not None else float("inf"),
                                          -(n.slots - n.queue), n.queue))
    return best.id


def webodm_choice(images: int, nodes: Sequence[NodeState]) -> str | None:
    """WebODM's automatic processing node: the lowest queue count (first listed on a tie)."""
    candidates = [n for n in nodes if _accepts(n, images)]
    return min(candidates, key=lambda n: n.queue).id if candidates else None


BASELINES = {"clusterodx": clusterodx_choice, "webodm": webodm_choice}
