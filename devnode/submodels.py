"""Splitting a task's photos into submodels by position, as ODM's split stage does before split-merge.

ODM (OpenSfM's `create_submodels`) groups the photos' GPS positions into clusters of about `split`
photos, then adds to each cluster every photo closer than `split-overlap` metres to one of its photos,
so that neighbouring submodels overlap and their outputs can be merged without seams.

Two choices differ on purpose, both so that a bench can read the makespan off the photo counts:
- clusters come from balanced recursive bisection (cut the longer side of the photos' extent at the
  photo that splits them in proportion), not k-means: every submodel gets `n / k` photos give or take
  one, where k-means on a lawnmower flight can leave one cluster half again as large as another;
- the overlap honours `split-overlap` (ODM's default is 150 m, wider than a whole small test flight) but a
  submodel takes at most `MAX_OVERLAP_SHARE` of its own size in borrowed photos, the nearest first: what a
  seam needs, without turning every submodel into the whole flight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: Most photos a submodel borrows from its neighbours, as a share of its own photos.
MAX_OVERLAP_SHARE = 0.1
#: ODM's default `split-overlap`, in metres.
DEFAULT_OVERLAP_M = 150.0

Position = tuple[float, float]


@dataclass(frozen=True)
class Submodel:
    """One cluster: `own` photos are its share of the flight, `borrowed` the overlap it adds."""

    index: int
    own: tuple[str, ...]
    borrowed: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The folder name ODM gives it (`submodel_0000`)."""
        return f"submodel_{self.index:04d}"

    @property
    def photos(self) -> list[str]:
        return sorted(self.own + self.borrowed)


def submodel_count(photos: int, split: int) -> int:
    """How many submodels `photos` make at `split` photos each; 1 means no split (ODM: photos <= split).
    A submodel has at least two photos, as ODM's `submodel_size` (max(2, split))."""
    if split < 1 or photos <= split:
        return 1
    return math.ceil(photos / max(2, split))


def split_photos(positions: dict[str, Position], split: int, overlap_m: float = DEFAULT_OVERLAP_M,
                 unplaced: list[str] | None = None) -> list[Submodel]:
    """Submodels of about `split` photos from photo name -> (easting, northing) in metres.

    `unplaced` photos (no GPS) go to the first submodel, where ODM would still use them for matching;
    the outputs leave them out of the map, as for any photo without a position."""
    names = sorted(positions)
    count = submodel_count(len(names) + len(unplaced or []), split)
    clusters = _bisect(names, positions, count) if count > 1 else [names]
    overlap_m = max(0.0, overlap_m)
    submodels = []
    for index, own in enumerate(clusters):
        borrowed = _neighbours(own, [n for n in names if n not in set(own)], positions, overlap_m)
        submodels.append(Submodel(index, tuple(own), tuple(borrowed)))
    if unplaced:
        first = submodels[0]
        submodels[0] = Submodel(0, tuple(sorted(first.own + tuple(unplaced))), first.borrowed)
    return submodels


def _bisect(names: list[str], positions: dict[str, Position], count: int) -> list[list[str]]:
    """`count` compact clusters of near-equal size: cut the longer side, in proportion, recursively."""
    if count <= 1 or len(names) <= 1:
        return [names]
    xs = [positions[n][0] for n in names]
    ys = [positions[n][1] for n in names]
    axis = 0 if max(xs) - min(xs) >= max(ys) - min(ys) else 1
    ordered = sorted(names, key=lambda n: (positions[n][axis], positions[n][1 - axis], n))
    first = count // 2
    cut = round(len(ordered) * first / count)
    return _bisect(ordered[:cut], positions, first) + _bisect(ordered[cut:], positions, count - first)


def _neighbours(own: list[str], others: list[str], positions: dict[str, Position], radius: float) -> list[str]:
    """Photos of other clusters within `radius` of one of `own`, nearest first, at most the overlap cap."""
    if radius <= 0 or not own:
        return []
    limit = math.floor(len(own) * MAX_OVERLAP_SHARE)
    near = []
    for name in others:
        x, y = positions[name]
        distance = min(math.hypot(x - positions[o][0], y - positions[o][1]) for o in own)
        if distance <= radius:
            near.append((distance, name))
    return [name for _, name in sorted(near)[:limit]]
