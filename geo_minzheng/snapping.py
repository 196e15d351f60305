"""Bulk nearest-street-segment lookup on a uniform grid, in numpy.

Snapping hundreds of thousands of demand points to the street network is the first step of
every coverage run. GEOS answers one nearest-neighbour query at a time (``STRtree.query_nearest``
takes ~11 µs a point) and builds a polygon per query box; here every straight piece of every
street segment is hashed once into square cells, and a whole batch of points is matched by
gathering the pieces near each point and measuring the point-to-piece distances with array
arithmetic. A piece within ``radius`` of a point always meets the point's ``radius`` box, and
every piece meeting that box is gathered, so the answer is exact; points with no street within
the largest radius are returned as unmatched for the caller to report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

#: Cell side of the grid (m). Half of it is the first search radius, which finds the street of
#: almost every address point; larger radii look at more cells.
DEFAULT_CELL_M = 50.0
#: Search radii beyond the first (m), each only for the points the previous one left unmatched.
WIDER_RADII_M = (50.0, 100.0, 300.0, 1000.0)
#: Grids up to this many cells (a 100 km x 100 km city at 50 m) look buckets up in a table.
DENSE_MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class Match:
    """Nearest segment of each matched point (``point`` indexes the query, sorted)."""

    point: np.ndarray
    segment: np.ndarray
    distance_m: np.ndarray
    offset_m: np.ndarray  # along the segment from its first vertex
    snapped_xy: np.ndarray  # the nearest position on the segment


@dataclass(frozen=True)
class _Buckets:
    """Piece numbers grouped by an integer key (sorted keys, each with a run of pieces)."""

    keys: np.ndarray
    start: np.ndarray
    count: np.ndarray
    pieces: np.ndarray
    dense: np.ndarray | None  # bucket of every possible key (-1: none), for small grids

    @classmethod
    def of(cls, keys: np.ndarray, pieces: np.ndarray, n_keys: int) -> _Buckets:
        """Buckets of ``pieces`` under ``keys`` (each in ``[0, n_keys)``, or -1 for none)."""
        ok = keys >= 0
        n_pieces = int(pieces.max()) + 1 if len(pieces) else 1
        # one sort of a combined key: by key, then piece, each pair once (np.unique's hash
        # path is several times slower on millions of pairs)
        pair = np.sort(keys[ok] * n_pieces + pieces[ok])
        pair = pair[_first_of_runs(pair)]
        keys, pieces = pair // n_pieces, pair % n_pieces
        start = np.flatnonzero(_first_of_runs(keys))
        uniq, count = keys[start], np.diff(np.append(start, len(keys)))
        dense = None
        if n_keys <= DENSE_MAX_CELLS:  # a direct table beats a binary search per query
            dense = np.full(n_keys, -1, dtype=np.int64)
            dense[uniq] = np.arange(len(uniq))
        return cls(uniq, start, count, pieces.astype(np.int64), dense)

    def _bucket(self, keys: np.ndarray) -> np.ndarray:
        """Bucket of each key, -1 where no piece lies under it."""
        if self.dense is not None:
            return np.where(keys >= 0, self.dense[np.maximum(keys, 0)], -1)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, pos, -1)

    def gather(
        self, query: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every piece under each key (``keys[i]`` of ``query[i]``), grouped by query.

        Returns the queries that have pieces, their piece counts, and per pair the query's
        position among those and the piece.
        """
        bucket = self._bucket(keys)
        hit = np.flatnonzero(bucket >= 0)
        bucket = bucket[hit]
        count = self.count[bucket]
        first = np.repeat(self.start[bucket] - (np.cumsum(count) - count), count)
        owner = np.repeat(np.arange(len(hit)), count)
        return query[hit], count, owner, self.pieces[first + np.arange(len(first))]


def _first_of_runs(values: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal values."""
    first = np.ones(len(values), dtype=bool)
    first[1:] = values[1:] != values[:-1]
    return first


class SegmentGrid:
    """Straight pieces of line segments hashed into square grid cells.

    Parameters
    ----------
    segments
        Line geometries (a projected CRS, metres); a match names a segment by its position.
    cell_m
        Cell side in metres.
    """

    def __init__(self, segments: np.ndarray, *, cell_m: float = DEFAULT_CELL_M) -> None:
        coords, line = shapely.get_coordinates(segments, return_index=True)
        inner = np.flatnonzero(line[1:] == line[:-1])  # a piece joins vertex k and k + 1
        a, b = coords[inner], coords[inner + 1]
        self.ax, self.ay = a[:, 0].copy(), a[:, 1].copy()
        self.dx, self.dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        # dividing by len2 (not multiplying by 1/len2) keeps t exactly 1 at a piece's end vertex,
        # which the engine reads as the edge's end node
        self.len2 = np.maximum(self.dx**2 + self.dy**2, 1e-300)
        self.segment = line[inner]
        piece_len = np.hypot(self.dx, self.dy)
        run = np.cumsum(piece_len) - piece_len  # length before each piece, over all pieces
        first = _first_of_runs(self.segment)
        self.start_m = run - np.maximum.accumulate(np.where(first, run, 0.0))
        # a segment's last piece ends exactly at the segment's GEOS length, so that a point
        # snapped to a segment's end gets an offset equal to the length (fraction exactly 1)
        last = np.ones(len(inner), dtype=bool)
        last[:-1] = first[1:]
        self.end_m = self.start_m + piece_len
        self.end_m[last] = shapely.length(segments)[self.segment[last]]
        self.cell = float(cell_m)
        # one empty cell of margin below and left, so that every block anchor has a row >= 0
        self.origin = coords.min(axis=0) - self.cell if len(coords) else np.zeros(2)
        span = np.ptp(coords, axis=0) if len(coords) else np.zeros(2)
        self.n_cols, self.n_rows = (np.ceil(span / self.cell).astype(np.int64) + 3).tolist()
        lo, hi, part_piece = self._part_cells(a, b, piece_len)
        self._cells = self._register(lo, hi, part_piece)
        # a point's first-pass box (radius = cell / 2) lies in the 2 x 2 cells anchored at the
        # cell of its lower-left corner: index each piece under every such anchor once
        self._blocks = self._register(lo - 1, hi, part_piece)

    def _cell_of(self, xy: np.ndarray) -> np.ndarray:
        return np.floor((xy - self.origin) / self.cell).astype(np.int64)

    def _key(self, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """Cell key in ``[0, n_cols * n_rows)``; cells outside the grid get -1."""
        inside = (cy >= 0) & (cy < self.n_rows) & (cx >= 0) & (cx < self.n_cols)
        return np.where(inside, cx * self.n_rows + cy, -1)

    def _part_cells(
        self, a: np.ndarray, b: np.ndarray, piece_len: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell ranges of each piece, cut into cell-sized parts (a long diagonal road then
        registers in the cells along it, not in its whole bounding box)."""
        parts = np.maximum(np.ceil(piece_len / self.cell), 1).astype(np.int64)
        piece = np.repeat(np.arange(len(parts)), parts)
        k = np.arange(len(piece)) - np.repeat(np.cumsum(parts) - parts, parts)
        d = b[piece] - a[piece]
        p0 = a[piece] + d * (k / parts[piece])[:, None]
        p1 = a[piece] + d * ((k + 1) / parts[piece])[:, None]
        return self._cell_of(np.minimum(p0, p1)), self._cell_of(np.maximum(p0, p1)), piece

    def _register(self, lo: np.ndarray, hi: np.ndarray, piece: np.ndarray) -> _Buckets:
        """Buckets holding each piece under every cell from ``lo`` to ``hi`` (inclusive)."""
        nx_, ny_ = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
        count = nx_ * ny_
        rep = np.repeat(np.arange(len(piece)), count)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(count) - count, count)
        keys = self._key(lo[rep, 0] + j // ny_[rep], lo[rep, 1] + j % ny_[rep])
        return _Buckets.of(keys, piece[rep], self.n_cols * self.n_rows)

    def nearest(self, xy: np.ndarray, *, max_distance_m: float) -> Match:
        """The nearest segment of each point within ``max_distance_m``.

        Ties in distance go to the lowest segment number, so the answer is deterministic.
        """
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        finite = np.isfinite(xy[:, 0]) & np.isfinite(xy[:, 1])
        left = np.arange(len(xy)) if finite.all() else np.flatnonzero(finite)
        found: list[tuple[np.ndarray, ...]] = []
        first = min(self.cell / 2.0, max_distance_m)
        radii = [first] + [r for r in WIDER_RADII_M if first < r < max_distance_m]
        radii += [max_distance_m] if max_distance_m > radii[-1] else []
        for radius in radii:
            if len(left) == 0 or len(self._cells.keys) == 0:
                break
            if radius == self.cell / 2.0:
                lo = self._cell_of((xy if len(left) == len(xy) else xy[left]) - radius)
                near = self._blocks.gather(left, self._key(lo[:, 0], lo[:, 1]))
            else:
                near = self._around(xy, left, radius)
            hit = self._best(xy, *near, radius=radius)
            found.append(hit)
            done = np.zeros(len(xy), dtype=bool)
            done[hit[0]] = True
            left = left[~done[left]]
        return self._match(found)

    def _around(
        self, xy: np.ndarray, pts: np.ndarray, radius: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pieces in every cell of each point's radius box, as :meth:`_Buckets.gather`."""
        lo = self._cell_of(xy[pts] - radius)
        hi = self._cell_of(xy[pts] + radius)
        span = int(np.ceil(2 * radius / self.cell)) + 1
        dx, dy = np.divmod(np.arange(span * span), span)
        cx = lo[:, 0:1] + dx[None, :]
        cy = lo[:, 1:2] + dy[None, :]
        rows, cols = np.nonzero((cx <= hi[:, 0:1]) & (cy <= hi[:, 1:2]))
        keys = self._key(cx[rows, cols], cy[rows, cols])
        query, _, owner, piece = self._cells.gather(pts[rows], keys)
        # sorted by point, then piece (a piece met in several cells of a box comes twice,
        # which the first-least rule of _best does not mind)
        n = len(self.ax)
        pair = np.sort(query[owner] * n + piece)
        point = pair // n
        head = _first_of_runs(point)
        starts = np.flatnonzero(head)
        count = np.diff(np.append(starts, len(pair)))
        return point[starts], count, np.cumsum(head) - 1, pair % n

    def _best(
        self,
        xy: np.ndarray,
        points: np.ndarray,
        count: np.ndarray,
        owner: np.ndarray,
        piece: np.ndarray,
        *,
        radius: float,
    ) -> tuple[np.ndarray, ...]:
        """Best candidate piece within ``radius`` of each point that has one.

        ``points`` (sorted) have ``count`` candidates each; pair ``k`` is point
        ``points[owner[k]]`` and ``piece[k]``, grouped by point. Returns point, piece, distance,
        fraction along the piece, nearest x and y.
        """
        if len(piece) == 0:
            empty = np.empty(0)
            return points[:0], piece, empty, empty, empty, empty
        wx = np.repeat(xy[points, 0], count)  # from the piece's start to the point
        wy = np.repeat(xy[points, 1], count)
        wx -= self.ax[piece]
        wy -= self.ay[piece]
        dx, dy = self.dx[piece], self.dy[piece]
        t = wx * dx
        t += wy * dy
        t /= self.len2[piece]
        np.clip(t, 0.0, 1.0, out=t)
        wx -= dx * t  # now from the nearest position on the piece to the point
        wy -= dy * t
        d2 = wx * wx
        d2 += wy * wy
        # best per point: least distance, then lowest piece (pieces are numbered segment by
        # segment, so also the lowest segment); candidates come sorted by piece within each
        # point, so the first least wins. A point whose best is beyond radius is left over.
        group_min = np.full(len(count), np.inf)
        np.minimum.at(group_min, owner, d2)  # (faster than reduceat in numpy 2)
        least = np.flatnonzero(d2 == group_min[owner])
        first = _first_of_runs(owner[least])
        best = least[first]
        best = best[d2[best] <= radius * radius]
        win, t = piece[best], t[best]
        x = self.ax[win] + self.dx[win] * t
        y = self.ay[win] + self.dy[win] * t
        return points[owner[best]], win, np.sqrt(d2[best]), t, x, y

    def _match(self, found: list[tuple[np.ndarray, ...]]) -> Match:
        found = [hit for hit in found if len(hit[0])]
        if not found:
            empty = np.empty(0, dtype=np.int64)
            return Match(empty, empty, np.empty(0), np.empty(0), np.empty((0, 2)))
        cols = [np.concatenate(col) for col in zip(*found, strict=True)]
        if len(found) > 1:  # each pass's points are sorted; merge the passes
            order = np.argsort(cols[0], kind="stable")
            cols = [col[order] for col in cols]
        query, piece, dist, t, x, y = cols
        start, end = self.start_m[piece], self.end_m[piece]
        offset = np.where(t >= 1.0, end, np.minimum(start + t * (end - start), end))
        return Match(
            point=query,
            segment=self.segment[piece],
            distance_m=dist,
            offset_m=offset,
            snapped_xy=np.column_stack([x, y]),
        )
