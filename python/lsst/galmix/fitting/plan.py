"""Planning a patch fit: which objects are fitted together, and how each group is fitted.

`plan_patch` splits a patch's objects into rows that cannot be placed (`placeable`) and groups:
isolated objects (alone, or linked by distance when there are no footprints) and blends (children of one
parent). `route_group` is the one place that decides how a group is fitted: alone, jointly, or in blocks
with the neighbours' models subtracted (``"subtract"`` mode, and blends larger than ``max_children``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

__all__ = ["GROUP_LINK_STAMPS", "MAX_POSITION", "PatchPlan", "Route", "group_rows", "placeable", "plan_patch",
           "route_group"]

GROUP_LINK_STAMPS = 2.0
"""Without footprints, isolated objects closer than this many ``stamp_min`` are fitted jointly."""

MAX_POSITION = 1e9
"""Largest absolute catalogue pixel coordinate at which an object can be placed. Beyond it a finite position
is as unusable as a non-finite one: no image is that large, and the neighbour searches' squared distances
would overflow (a coordinate of 1e308 made them raise)."""


def placeable(xy: np.ndarray) -> np.ndarray:
    """Which rows of ``(N, 2)`` catalogue positions can be placed: finite, within `MAX_POSITION`."""
    return (np.abs(np.asarray(xy, float)) <= MAX_POSITION).all(axis=1)


@dataclass(frozen=True)
class Route:
    """How one group of objects is fitted.

    Attributes
    ----------
    kind : `str`
        ``"single"`` (one object), ``"joint"`` (all children at once, one engine problem) or ``"blocks"``
        (blocks of ``block_size`` children, the others' models subtracted; `lsst.galmix.fitting.blend`).
    block_size : `int`
        Children per block (``"blocks"`` only).
    too_many_children : `bool`
        The blend is fitted in blocks because joint mode allows at most ``max_children``: each child gets
        the ``too_many_children`` flag.
    """

    kind: str
    block_size: int = 1
    too_many_children: bool = False


def route_group(n_objects: int, blend_mode: str, max_children: int) -> Route:
    """How to fit a group of ``n_objects`` objects (see `Route`).

    Raises
    ------
    ValueError
        If ``blend_mode`` is not ``"joint"`` or ``"subtract"`` (for groups of more than one object).
    """
    if n_objects <= 1:
        return Route("single")
    if blend_mode not in ("joint", "subtract"):
        raise ValueError(f"blend_mode must be 'joint' or 'subtract', not {blend_mode!r}")
    if blend_mode == "joint" and n_objects <= max_children:
        return Route("joint", n_objects)
    if blend_mode == "subtract":
        return Route("blocks", 1)
    return Route("blocks", max(max_children, 1), too_many_children=True)


def group_rows(objects: Table, rows: Sequence[int], link: float = 0.0) -> list[list[int]]:
    """Indices of ``rows`` grouped by blend (isolated objects alone).

    With ``link > 0`` (no footprints say which pixels are whose), isolated objects closer than ``link``
    pixels to each other are fitted as one group, so a faint object's fit models its bright neighbour
    instead of taking its light.
    """
    parent = (np.asarray(objects["parentObjectId"]) if "parentObjectId" in objects.colnames
              else np.zeros(len(objects), int))
    groups: dict[int, list[int]] = {}
    alone: list[int] = []
    for i in rows:
        if parent[i] == 0:
            alone.append(i)
        else:
            groups.setdefault(int(parent[i]), []).append(i)
    out = [[i] for i in alone]
    if link > 0 and len(alone) > 1:
        xy = np.column_stack([np.asarray(objects["x"], float)[alone], np.asarray(objects["y"], float)[alone]])
        root = list(range(len(alone)))

        def find(k: int) -> int:
            while root[k] != k:
                root[k] = root[root[k]]
                k = root[k]
            return k

        for a, b in sorted(cKDTree(xy).query_pairs(link)):
            root[find(a)] = find(b)
        linked: dict[int, list[int]] = {}
        for k, i in enumerate(alone):
            linked.setdefault(find(k), []).append(i)
        out = list(linked.values())
    return out + list(groups.values())


@dataclass
class PatchPlan:
    """The groups of a patch and how each is fitted.

    Attributes
    ----------
    xy : `numpy.ndarray`
        ``(N, 2)`` catalogue positions of all rows.
    unplaced : `list` [`int`]
        Rows whose position cannot be placed (`placeable`; not fitted: ``bad_position``).
    groups : `list` [`list` [`int`]]
        Rows fitted together, isolated objects first.
    routes : `list` [`Route`]
        How each group is fitted.
    """

    xy: np.ndarray
    unplaced: list[int] = field(default_factory=list)
    groups: list[list[int]] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[tuple[list[int], Route]]:
        """The groups (with their routes) fitted as ``kind``."""
        return [(g, r) for g, r in zip(self.groups, self.routes) if r.kind == kind]


def plan_patch(objects: Table, has_footprints: bool, blend_mode: str, max_children: int, stamp_min: int
               ) -> PatchPlan:
    """Group a patch's objects and route each group.

    Parameters
    ----------
    objects : `astropy.table.Table`
        Needs ``x``, ``y``; uses ``parentObjectId``.
    has_footprints : `bool`
        Whether a footprint image says which pixels are whose (otherwise near isolated objects are linked,
        `GROUP_LINK_STAMPS`).
    blend_mode, max_children, stamp_min
        The `lsst.galmix.fitting.source.SourceFitConfig` settings of the same names.
    """
    xy = np.column_stack([np.asarray(objects["x"], float), np.asarray(objects["y"], float)]).reshape(-1, 2)
    placed = placeable(xy)
    link = 0.0 if has_footprints else GROUP_LINK_STAMPS * stamp_min
    groups = group_rows(objects, np.flatnonzero(placed).tolist(), link)
    routes = [route_group(len(g), blend_mode, max_children) for g in groups]
    return PatchPlan(xy, np.flatnonzero(~placed).tolist(), groups, routes)
