"""The ``rssi_rooms`` task: room-level indoor localisation from windows of BLE RSSI.

After Suwannaphong et al., "Optimising TinyML with quantization and distillation of
transformer and Mamba models for indoor localisation on edge devices" (arXiv 2412.09289):
a wearable's received signal strength (RSSI) from every access point (AP) of a house,
one reading per AP per second, is cut into windows of ``window`` = 20 consecutive
samples with a hop of ``hop`` = 10; the task is to name the room the person is in.

Examples, labels and splits
---------------------------
One example is a float32 tensor [window, n_aps] (``input_shape = (window, n_aps)``: time
by AP, L x C). Each reading is normalised as ``x = clip((rssi_dBm + 100) / 70, 0, 1)``
(:data:`RSSI_FLOOR_DBM` = -100 dBm -> 0, :data:`RSSI_CEIL_DBM` = -30 dBm -> 1); a missing
reading is the floor value 0, and so is any reading at or below -100 dBm. A window's label
is the mode of its samples' room labels (on a tie the smallest room index), 0-based
(``num_classes`` rooms). Windows start at 0, hop, 2 hop, ... while a whole window fits
(``(T - window) // hop + 1`` of them; the paper's reference code stops one hop earlier).

* train: the *fingerprint* recording (the person stands and walks in each room in turn),
  less the validation windows and less every training window that shares a sample with
  a validation window;
* val: about ``val_fraction`` (20 %) of the fingerprint windows, held out by seed in
  blocks of 5 consecutive windows, stratified by the blocks' labels (every room with two
  blocks or more gives at least one), so that overlapping windows do not leak between
  train and val;
* test: every window of the *free-living* recording (daily life, another device).

Metrics: accuracy and macro-F1 (:class:`~bitnas.evaluators.base.ClassificationEvaluator`;
macro-F1, the paper's main metric, may be a search objective).

Sources (``task.source``)
-------------------------
``generated`` (default)
    A simulated house ``house`` = "A".."D" (4 / 11 / 9 / 10 rooms and 8 / 11 / 11 / 11
    APs, as the paper's houses); deterministic by seed, built in well under a second. See
    "The generated houses" below.
``csv``
    The paper's files in the folder ``path``: ``csv_house_<H>_fp.csv`` (fingerprint:
    train and val) and ``csv_house_<H>_fl.csv`` (free living: test). A header row (skipped,
    whatever it says); column 0 unused (likely a timestamp); then one RSSI column per AP in
    dBm (``aps`` of them: the house's 8 or 11 unless given); then the room label,
    1-based, 1..``rooms`` (the house's room count unless given). An empty or NaN cell is a
    missing reading. Both files must have the same columns.
``ujiindoorloc``
    The UJIIndoorLoc Wi-Fi data set (Torres-Sospedra et al., IPIN 2014) in the folder
    ``path``: ``trainingData.csv`` (train and val) and ``validationData.csv`` (test), with
    the header ``WAP001`` .. ``WAP520`` (dBm in -104..0; 100 = not detected), then
    ``LONGITUDE, LATITUDE, FLOOR, BUILDINGID, SPACEID, RELATIVEPOSITION, USERID, PHONEID,
    TIMESTAMP``. Its rows are single scans, not a time series: the scans of each
    (USERID, PHONEID) pair, ordered by TIMESTAMP (ties in file order), are cut into windows
    of ``window`` consecutive scans with the same hop, pair by pair (a pair with fewer than
    ``window`` scans gives none). ``label`` = ``"building"`` (3 classes), ``"floor"``
    (building * 5 + floor: 15 classes, some unused, since buildings 0 and 1 have 4 floors)
    or ``"space"`` (each (building, floor, SPACEID) triple of the training file, in sorted
    order; this reads trainingData.csv when the task is built, to count them; a test
    scan whose triple never occurs in training is refused: the public validation file
    reportedly records no SPACEID, so use ``"floor"`` there). ``aps`` (default 520) keeps
    the first ``aps`` WAP columns, in file order, that hold any reading in the training
    file (if fewer do, never-seen columns follow, all 0), so that the input stays small.
    Its readings below -100 dBm map to 0 like a missing one.

The file layouts of the paper's data come from its public code (AloeUoB/
tinyML_indoor_localisation, ``data_utils.py``); the exact header names and how the files
mark a missing reading are unconfirmed (a filler value such as -120 dBm maps to 0 too).

For both loaders ``path`` may also name one of the two files: its folder is used. The files
are read at ``load`` (``label = "space"`` excepted), so a spec naming them validates without
them. ``ram_bytes`` (optional) is the target's RAM budget: a task whose one input window at
8 bits (window x n_aps bytes) exceeds it is refused when built.

The generated houses
--------------------
*Floor plan*: a one-storey rectangle (:data:`HOUSES`: 9 x 6 m for A, 15 x 10, 13 x 9 and
14 x 9.5 m for B-D, about 13 m^2 a room; the real houses have two storeys: an estimate)
cut into rooms by guillotine splits (the largest room is split across its longer side at
35-65 %); every split is a wall, light or heavy; rooms that share 1 m of wall or more have
a door between them. One AP is placed in each room (the rest in distinct random rooms),
at a random spot 0.2 m or more from the walls. The plan, the APs' transmit offsets and
the shadowing fields depend on the house only, not on the seed.

*Propagation* (:data:`PHYSICS`), per AP and second, the multi-wall log-distance model::

    RSSI = P0 + tx_ap + g_device - 10 n log10(d / d0) - sum(walls crossed: L_wall)
           - L_body (1 - cos phi) / 2 + S_ap(x, y) + N(0, sigma_fast)

with d the 3-D distance (AP ``height_diff_m`` above the device, at least d0), the walls
crossed by the straight line from the AP to the device, phi the angle between the way
the person faces and the direction to the AP (the body blocks an AP behind the person),
S_ap a spatially correlated shadowing field (Gaussian values on a grid of spacing
``shadow_grid_m``, bilinearly interpolated) and a per-sample fast fading term. A reading
below the receiver sensitivity is missing, and any reading is dropped with the
recording's dropout probability.

*Recordings* (:data:`RECORDINGS`, :data:`MOVEMENT`), one sample a second, the person's
room being the label:

* fingerprint (``fp``): every room in turn, in a random order, twice, ``fp_visit_s`` a visit
  (with the walk between rooms through the doors, shortest path), standing a few seconds
  at random spots and walking between them; the reference device, few dropouts, the
  device carried in front of the body (little body loss);
* free living (``fl``): ``fl_s`` seconds of daily rounds: each round visits every room
  once, in an order drawn by a random preference per room, and stays in each as long as
  its preference makes it (some rooms long, some briefly), with longer standing; walking
  between rooms goes through the rooms between; another device (a gain
  offset and a per-AP spread), more dropouts and the body shadowing a wrist-worn device
  sees.

Every constant carries its value, unit and source; those marked "estimate" are choices
within the usual range, not taken from a measurement.

*Difficulty* (measured with scikit-learn's logistic regression on the flattened windows,
seeds 0-2, every room visited in the free-living recording): validation accuracy 0.90-1.00
(same conditions as training); free-living test accuracy 0.76-0.98 and macro-F1 0.69-0.97
(house A easiest, C hardest; house B, seed 0: 0.88 and 0.89). Without the fp/fl shift the
test accuracy was 0.96-0.99 (houses C, D, measured before the daily rounds): the device
offset, the dropouts and the body loss each cost several points.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from bitnas.errors import BitnasError
from bitnas.evaluators.base import Split, Task, TaskData, int_option
from bitnas.registry import TASKS

# ------------------------------------------------------------------------------------------
# constants


class Constant(NamedTuple):
    """A model constant: value, unit and where it comes from ("estimate: ..." if unsourced)."""

    value: float
    unit: str
    source: str


#: normalisation: the floor (and a missing reading) maps to 0, the ceiling to 1
RSSI_FLOOR_DBM = -100.0
RSSI_CEIL_DBM = -30.0

#: the radio model of the generated houses
PHYSICS: dict[str, Constant] = {
    "p0_dbm": Constant(-59.0, "dBm", "RSSI at 1 m of a BLE advertiser: the usual iBeacon 'measured "
                                     "power' calibration (typical value; estimate for this device)"),
    "d0_m": Constant(1.0, "m", "reference distance of the log-distance model (COST 231 multi-wall "
                               "model; ITU-R P.1238)"),
    "path_loss_exponent": Constant(2.0, "-", "COST 231 multi-wall model: free-space distance law with the "
                                             "walls counted separately (ITU-R P.1238 gives N = 28, n = 2.8, "
                                             "for residential 2.4 GHz with the walls folded in)"),
    "light_wall_db": Constant(3.4, "dB", "COST 231 multi-wall model, light wall (plasterboard), 1.8 GHz "
                                         "fit (slightly more at 2.4 GHz)"),
    "heavy_wall_db": Constant(6.9, "dB", "COST 231 multi-wall model, heavy wall (brick, concrete), 1.8 GHz "
                                         "fit"),
    "heavy_wall_share": Constant(0.3, "-", "estimate: share of interior walls that are heavy"),
    "shadow_sigma_db": Constant(4.0, "dB", "estimate: log-normal shadowing left after the explicit walls, "
                                           "in the 4-8 dB range of indoor 2.4 GHz fits (ITU-R P.1238: 8 dB "
                                           "residential, 1.8-2 GHz, walls not modelled)"),
    "shadow_grid_m": Constant(1.5, "m", "estimate: decorrelation distance of indoor shadowing (1-3 m)"),
    "fast_sigma_db": Constant(4.0, "dB", "estimate: second-to-second BLE RSSI spread at a fixed spot, "
                                         "2-6 dB (multipath on the three advertising channels)"),
    "ap_tx_sigma_db": Constant(2.0, "dB", "estimate: spread of the APs' transmit power and antennas"),
    "height_diff_m": Constant(1.0, "m", "estimate: AP about 2 m high, device about 1 m"),
    "sensitivity_dbm": Constant(-95.0, "dBm", "receiver sensitivity of a BLE 1 Mbps radio (Nordic nRF52840 "
                                              "product specification: -95 dBm)"),
}

#: what differs between the fingerprint (fp) and the free-living (fl) recording
RECORDINGS: dict[str, dict[str, Constant]] = {
    "fp": {
        "device_gain_db": Constant(0.0, "dB", "the reference device (by definition)"),
        "device_ap_sigma_db": Constant(0.0, "dB", "the reference device (by definition)"),
        "dropout": Constant(0.05, "-", "estimate: share of seconds without an advertisement received"),
        "body_loss_db": Constant(2.0, "dB", "estimate: survey device carried in front of the body, mostly "
                                            "clear of it"),
    },
    "fl": {
        "device_gain_db": Constant(-3.0, "dB", "estimate: RSSI offsets of several dB between receiver "
                                               "models are widely reported (device heterogeneity)"),
        "device_ap_sigma_db": Constant(1.0, "dB", "estimate: the offset's spread across APs (frequency "
                                                  "and orientation response)"),
        "dropout": Constant(0.10, "-", "estimate: more packets lost by a worn device"),
        "body_loss_db": Constant(4.0, "dB", "estimate: a worn device behind the body (2.4 GHz body "
                                            "shadowing is reported from a few dB to over 10 dB)"),
    },
}

#: how the person moves (all estimates: plausible figures, not measurements)
MOVEMENT: dict[str, Constant] = {
    "sample_rate_hz": Constant(1.0, "Hz", "estimate: one RSSI reading per AP per second"),
    "walk_speed_min": Constant(0.6, "m/s", "estimate: slow indoor walking"),
    "walk_speed_max": Constant(1.2, "m/s", "estimate: brisk indoor walking"),
    "wall_margin_m": Constant(0.3, "m", "estimate: closest a person stands to a wall"),
    "door_width_m": Constant(1.0, "m", "estimate: shared wall needed for a door"),
    "jitter_m": Constant(0.05, "m", "estimate: sway while standing"),
    "fp_visits": Constant(2, "-", "estimate: rounds of the fingerprint walk"),
    "fp_visit_s": Constant(150, "s", "estimate: 'a few minutes a room' in the fingerprint walk"),
    "fp_stand_min_s": Constant(5, "s", "estimate"),
    "fp_stand_max_s": Constant(30, "s", "estimate"),
    "fl_s": Constant(4000, "s", "estimate: about an hour of free living"),
    "fl_preference_alpha": Constant(2.0, "-", "estimate: Dirichlet concentration of the rooms' preferences"),
    "fl_dwell_median_s": Constant(150, "s", "estimate: median stay in a room of average preference"),
    "fl_dwell_min_s": Constant(20, "s", "estimate"),
    "fl_dwell_max_s": Constant(1200, "s", "estimate"),
    "fl_stand_min_s": Constant(20, "s", "estimate: sitting or standing at a task"),
    "fl_stand_max_s": Constant(180, "s", "estimate"),
}


class House(NamedTuple):
    rooms: int
    aps: int
    width_m: float
    depth_m: float


#: the paper's houses: rooms and APs as its data; the footprints are estimates (one storey)
HOUSES: dict[str, House] = {
    "A": House(4, 8, 9.0, 6.0),
    "B": House(11, 11, 15.0, 10.0),
    "C": House(9, 11, 13.0, 9.0),
    "D": House(10, 11, 14.0, 9.5),
}

SOURCES = ("generated", "csv", "ujiindoorloc")
UJI_LABELS = ("building", "floor", "space")
UJI_WAPS = tuple(f"WAP{i:03d}" for i in range(1, 521))
UJI_META = ("LONGITUDE", "LATITUDE", "FLOOR", "BUILDINGID", "SPACEID", "RELATIVEPOSITION", "USERID",
            "PHONEID", "TIMESTAMP")
UJI_BUILDINGS = 3
UJI_FLOORS = 5
UJI_NOT_DETECTED = 100.0
#: consecutive windows held out together for validation
VAL_BLOCK = 5


def _c(name: str) -> float:
    return float(PHYSICS[name].value)


def _m(name: str) -> float:
    return float(MOVEMENT[name].value)


def normalise_rssi(rssi_dbm: np.ndarray) -> np.ndarray:
    """RSSI in dBm (NaN = missing) -> float32 in [0, 1]: (rssi + 100) / 70 clipped, missing = 0."""
    x = (np.asarray(rssi_dbm, dtype=np.float64) - RSSI_FLOOR_DBM) / (RSSI_CEIL_DBM - RSSI_FLOOR_DBM)
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------
# windows and the validation split


def make_windows(values: np.ndarray, labels: np.ndarray, window: int, hop: int, *,
                 what: str = "the recording") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of ``window`` samples every ``hop``: (x [N, window, ...], the mode label of each
    (ties: the smallest), the start index of each)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < window:
        raise BitnasError(f"task.window = {window} is longer than {what} ({len(labels)} samples); "
                          "lower task.window")
    starts = np.arange(0, len(labels) - window + 1, hop)
    idx = starts[:, None] + np.arange(window)
    return values[idx], window_modes(labels[idx]), starts


def window_modes(labels: np.ndarray) -> np.ndarray:
    """The most frequent label of each row of [N, window] (ties: the smallest)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return np.zeros(len(labels), dtype=np.int64)
    counts = (labels[:, :, None] == np.arange(int(labels.max()) + 1)).sum(axis=1)
    return counts.argmax(axis=1)  # argmax returns the first maximum: the smallest label


def split_windows(starts: np.ndarray, labels: np.ndarray, window: int, val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of windows in time order (``starts`` in one sample axis).

    Blocks of :data:`VAL_BLOCK` consecutive windows are held out by seed, stratified by the
    blocks' mode labels (a label with two blocks or more gives at least one, and keeps one);
    training windows that share a sample with a validation window are dropped.
    """
    n = len(labels)
    block = np.arange(n) // VAL_BLOCK
    n_blocks = int(block[-1]) + 1 if n else 0
    block_label = np.array([window_modes(labels[block == b][None])[0] for b in range(n_blocks)],
                           dtype=np.int64)
    rng = np.random.default_rng(seed)
    val_blocks: list[int] = []
    for label in np.unique(block_label):
        members = rng.permutation(np.flatnonzero(block_label == label))
        k = min(max(round(val_fraction * len(members)), 1), len(members) - 1) if len(members) > 1 else 0
        val_blocks.extend(int(b) for b in members[:k])
    is_val = np.isin(block, val_blocks)
    covered = np.zeros(int(starts.max()) + window + 1 if n else 1, dtype=np.int64)
    for s in starts[is_val]:
        covered[s:s + window] = 1
    prefix = np.concatenate([[0], np.cumsum(covered)])
    overlaps = prefix[starts + window] - prefix[starts] > 0
    return np.flatnonzero(~is_val & ~overlaps), np.flatnonzero(is_val)


def _tensor_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                 torch.from_numpy(np.asarray(y, dtype=np.int64)))


def build_task_data(fp_x: np.ndarray, fp_y: np.ndarray, fp_starts: np.ndarray, test_x: np.ndarray,
                    test_y: np.ndarray, window: int, val_fraction: float, seed: int,
                    what: str = "the fingerprint recording") -> TaskData:
    """Train and val from the fingerprint windows (:func:`split_windows`), test as given."""
    train, val = split_windows(fp_starts, fp_y, window, val_fraction, seed)
    if len(val) == 0 or len(train) == 0:
        raise BitnasError(f"task rssi_rooms: {what} gives {len(fp_y)} windows, too few to hold "
                          f"{val_fraction:.0%} out for validation; use a longer recording or a smaller "
                          "task.window or task.hop")
    return TaskData(train=_tensor_split(fp_x[train], fp_y[train]), val=_tensor_split(fp_x[val], fp_y[val]),
                    test=_tensor_split(test_x, test_y))


# ------------------------------------------------------------------------------------------
# the generated houses


@dataclass(frozen=True)
class FloorPlan:
    """A generated house: rooms [R, 4] (x0, y0, x1, y1), walls [W, 4] (segments), their
    losses [W] in dB, adjacency [R, R], doors {(i, j): point}, APs [C, 2], the APs' transmit
    offsets [C] in dB, and per AP a shadowing grid [C, gx, gy] in dB of spacing ``grid_m``."""

    house: str
    rooms: np.ndarray
    walls: np.ndarray
    wall_loss_db: np.ndarray
    adjacency: np.ndarray
    doors: dict[tuple[int, int], np.ndarray]
    aps: np.ndarray
    tx_offset_db: np.ndarray
    shadow_db: np.ndarray
    grid_m: float

    def room_of(self, pos: np.ndarray) -> np.ndarray:
        """The room index of each point [T, 2] (a point on a shared wall: the lower index)."""
        r = self.rooms
        inside = ((pos[:, None, 0] >= r[None, :, 0] - 1e-9) & (pos[:, None, 0] <= r[None, :, 2] + 1e-9)
                  & (pos[:, None, 1] >= r[None, :, 1] - 1e-9) & (pos[:, None, 1] <= r[None, :, 3] + 1e-9))
        return inside.argmax(axis=1)

    def shadow(self, pos: np.ndarray) -> np.ndarray:
        """The shadowing [T, C] in dB at each point, bilinear in the grid."""
        gx, gy = pos[:, 0] / self.grid_m, pos[:, 1] / self.grid_m
        nx, ny = self.shadow_db.shape[1:]
        ix = np.clip(np.floor(gx).astype(int), 0, nx - 2)
        iy = np.clip(np.floor(gy).astype(int), 0, ny - 2)
        fx, fy = np.clip(gx - ix, 0, 1)[:, None], np.clip(gy - iy, 0, 1)[:, None]
        s = self.shadow_db.transpose(1, 2, 0)  # [gx, gy, C]
        return ((1 - fx) * (1 - fy) * s[ix, iy] + fx * (1 - fy) * s[ix + 1, iy]
                + (1 - fx) * fy * s[ix, iy + 1] + fx * fy * s[ix + 1, iy + 1])


def _house(house: object, field: str = "task.house") -> str:
    if not isinstance(house, str) or house not in HOUSES:
        raise BitnasError(f"{field} must be one of {', '.join(map(repr, HOUSES))} (the paper's houses), "
                          f"got {house!r}")
    return house


def _adjacency(rooms: np.ndarray, door: float) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    n = len(rooms)
    adj = np.zeros((n, n), dtype=bool)
    doors: dict[tuple[int, int], np.ndarray] = {}
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = rooms[i], rooms[j]
            for axis in (0, 1):  # a's far side on `axis` touches b's near side
                other = 1 - axis
                if abs(a[axis + 2] - b[axis]) < 1e-9:
                    lo, hi = max(a[other], b[other]), min(a[other + 2], b[other + 2])
                    if hi - lo >= door:
                        point = np.empty(2)
                        point[axis], point[other] = a[axis + 2], (lo + hi) / 2
                        adj[i, j] = adj[j, i] = True
                        doors[(i, j)] = doors[(j, i)] = point
    return adj, doors


def _connected(adj: np.ndarray) -> bool:
    seen, todo = {0}, [0]
    while todo:
        for j in np.flatnonzero(adj[todo.pop()]):
            if int(j) not in seen:
                seen.add(int(j))
                todo.append(int(j))
    return len(seen) == len(adj)


@functools.lru_cache(maxsize=8)
def make_floor_plan(house: str) -> FloorPlan:
    """The floor plan, APs and shadowing of house "A".."D" (fixed per house; see the module doc)."""
    spec = HOUSES[_house(house, "house")]
    rng = np.random.default_rng([20241212, "ABCD".index(house)])
    for _ in range(1000):
        rooms = [(0.0, 0.0, spec.width_m, spec.depth_m)]
        walls = []
        while len(rooms) < spec.rooms:
            i = int(np.argmax([(r[2] - r[0]) * (r[3] - r[1]) for r in rooms]))
            x0, y0, x1, y1 = rooms[i]
            f = rng.uniform(0.35, 0.65)
            if x1 - x0 >= y1 - y0:
                c = x0 + f * (x1 - x0)
                rooms[i], new, wall = (x0, y0, c, y1), (c, y0, x1, y1), (c, y0, c, y1)
            else:
                c = y0 + f * (y1 - y0)
                rooms[i], new, wall = (x0, y0, x1, c), (x0, c, x1, y1), (x0, c, x1, c)
            rooms.append(new)
            walls.append(wall)
        rooms_a = np.asarray(rooms)
        adj, doors = _adjacency(rooms_a, _m("door_width_m"))
        if _connected(adj):
            break
    else:  # pragma: no cover - the footprints above connect within a few tries
        raise RuntimeError(f"no connected floor plan for house {house}")
    walls_a = np.asarray(walls)
    heavy = rng.random(len(walls_a)) < _c("heavy_wall_share")
    wall_loss = np.where(heavy, _c("heavy_wall_db"), _c("light_wall_db"))
    ap_rooms = np.concatenate([np.arange(spec.rooms),
                               rng.choice(spec.rooms, spec.aps - spec.rooms, replace=False)])
    ap_rooms = rng.permutation(ap_rooms)
    aps = np.stack([_random_point(rooms_a[r], 0.2, rng) for r in ap_rooms])
    tx = rng.normal(0.0, _c("ap_tx_sigma_db"), spec.aps)
    grid = _c("shadow_grid_m")
    shape = (spec.aps, math.ceil(spec.width_m / grid) + 2, math.ceil(spec.depth_m / grid) + 2)
    shadow = rng.normal(0.0, _c("shadow_sigma_db"), shape)
    return FloorPlan(house=house, rooms=rooms_a, walls=walls_a, wall_loss_db=wall_loss, adjacency=adj,
                     doors=doors, aps=aps, tx_offset_db=tx, shadow_db=shadow, grid_m=grid)


def _random_point(room: np.ndarray, margin: float, rng: np.random.Generator) -> np.ndarray:
    x0, y0, x1, y1 = room
    mx, my = min(margin, (x1 - x0) / 3), min(margin, (y1 - y0) / 3)
    return np.array([rng.uniform(x0 + mx, x1 - mx), rng.uniform(y0 + my, y1 - my)])


def _crossings(pos: np.ndarray, aps: np.ndarray, walls: np.ndarray) -> np.ndarray:
    """Whether the segment from each point [T, 2] to each AP [C, 2] crosses each wall: [T, C, W]."""
    p = pos[:, None, None, :]
    a = aps[None, :, None, :]
    q1, q2 = walls[None, None, :, :2], walls[None, None, :, 2:]

    def orient(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return ((v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1])
                - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0]))

    return ((orient(p, a, q1) * orient(p, a, q2) < 0) & (orient(q1, q2, p) * orient(q1, q2, a) < 0))


def rssi_dbm(plan: FloorPlan, pos: np.ndarray, heading: np.ndarray, kind: str,
             rng: np.random.Generator | None, device_ap_db: np.ndarray | None = None) -> np.ndarray:
    """RSSI [T, C] in dBm at the points [T, 2] with the person facing ``heading`` [T] (radians),
    under recording ``kind`` ("fp" or "fl"), NaN where missing. With ``rng = None`` there is
    no fast fading and no random dropout (only the sensitivity floor): the mean field."""
    cond = RECORDINGS[kind]
    delta = plan.aps[None, :, :] - pos[:, None, :]  # [T, C, 2]
    flat = np.linalg.norm(delta, axis=-1)
    d = np.maximum(np.sqrt(flat**2 + _c("height_diff_m") ** 2), _c("d0_m"))
    path_loss = 10.0 * _c("path_loss_exponent") * np.log10(d / _c("d0_m"))
    walls = _crossings(pos, plan.aps, plan.walls).astype(np.float64) @ plan.wall_loss_db
    facing = np.stack([np.cos(heading), np.sin(heading)], axis=-1)[:, None, :]
    cos_phi = (facing * delta).sum(-1) / np.maximum(flat, 1e-9)
    body = cond["body_loss_db"].value * (1.0 - cos_phi) / 2.0
    gain = cond["device_gain_db"].value + (0.0 if device_ap_db is None else device_ap_db)
    r = (_c("p0_dbm") + plan.tx_offset_db + gain - path_loss - walls - body + plan.shadow(pos))
    missing = r < _c("sensitivity_dbm")
    if rng is not None:
        r = r + rng.normal(0.0, _c("fast_sigma_db"), r.shape)
        missing = (r < _c("sensitivity_dbm")) | (rng.random(r.shape) < cond["dropout"].value)
    return np.where(missing, np.nan, r)


class _Walker:
    """The person's path, one point and heading a second."""

    def __init__(self, plan: FloorPlan, start: np.ndarray, rng: np.random.Generator) -> None:
        self.plan, self.rng = plan, rng
        self.pos = start
        self.heading = rng.uniform(-np.pi, np.pi)
        self.points: list[np.ndarray] = []
        self.headings: list[float] = []

    def __len__(self) -> int:
        return len(self.points)

    def walk_to(self, target: np.ndarray) -> None:
        delta = target - self.pos
        dist = float(np.linalg.norm(delta))
        if dist < 1e-9:
            return
        speed = self.rng.uniform(_m("walk_speed_min"), _m("walk_speed_max"))
        steps = max(1, math.ceil(dist / speed))
        self.heading = math.atan2(delta[1], delta[0])
        for k in range(1, steps + 1):
            self.points.append(self.pos + delta * (k / steps))
            self.headings.append(self.heading)
        self.pos = target.copy()

    def stand(self, seconds: int) -> None:
        self.heading = self.rng.uniform(-np.pi, np.pi)
        sway = self.rng.normal(0.0, _m("jitter_m"), (seconds, 2))
        for k in range(seconds):
            self.points.append(self.pos + sway[k])
            self.headings.append(self.heading)

    def stay(self, room: int, seconds: int, stand: tuple[float, float]) -> None:
        """Stand at random spots of ``room`` and walk between them for about ``seconds``."""
        end = len(self) + seconds
        while len(self) < end:
            self.stand(min(int(self.rng.uniform(*stand)), end - len(self)) or 1)
            if len(self) < end:
                self.walk_to(_random_point(self.plan.rooms[room], _m("wall_margin_m"), self.rng))

    def go(self, room: int) -> None:
        """Walk to a random spot of ``room`` through the doors (shortest path in rooms)."""
        here = int(self.plan.room_of(self.pos[None])[0])
        path = _shortest_path(self.plan.adjacency, here, room)
        for a, b in zip(path, path[1:], strict=False):
            self.walk_to(self.plan.doors[(a, b)])
        self.walk_to(_random_point(self.plan.rooms[room], _m("wall_margin_m"), self.rng))


def _shortest_path(adj: np.ndarray, start: int, goal: int) -> list[int]:
    prev = {start: start}
    todo = deque([start])
    while todo:
        i = todo.popleft()
        if i == goal:
            break
        for j in np.flatnonzero(adj[i]):
            if int(j) not in prev:
                prev[int(j)] = i
                todo.append(int(j))
    path = [goal]
    while path[-1] != start:
        path.append(prev[path[-1]])
    return path[::-1]


@dataclass(frozen=True)
class Recording:
    """RSSI [T, C] in dBm (NaN = missing) and the room [T] (0-based) of each second."""

    rssi_dbm: np.ndarray
    room: np.ndarray


def simulate_recording(plan: FloorPlan, kind: str, rng: np.random.Generator) -> Recording:
    """The fingerprint (``kind = "fp"``) or free-living (``"fl"``) recording of one person."""
    n_rooms = len(plan.rooms)
    if kind == "fp":
        first = rng.permutation(n_rooms)
        walker = _Walker(plan, _random_point(plan.rooms[first[0]], _m("wall_margin_m"), rng), rng)
        stand = (_m("fp_stand_min_s"), _m("fp_stand_max_s"))
        for visit in range(int(_m("fp_visits"))):
            for room in first if visit == 0 else rng.permutation(n_rooms):
                walker.go(int(room))
                walker.stay(int(room), int(_m("fp_visit_s")), stand)
        length = len(walker)
    elif kind == "fl":
        preference = rng.dirichlet(np.full(n_rooms, _m("fl_preference_alpha")))
        room = int(preference.argmax())
        walker = _Walker(plan, _random_point(plan.rooms[room], _m("wall_margin_m"), rng), rng)
        stand = (_m("fl_stand_min_s"), _m("fl_stand_max_s"))
        length = int(_m("fl_s"))
        # a daily round: every room once a round, in an order drawn by preference, the stay
        # in each as long as its preference makes it (so every room appears in the test data)
        while len(walker) < length:
            for room in rng.choice(n_rooms, n_rooms, replace=False, p=preference):
                if len(walker) >= length:
                    break
                walker.go(int(room))
                median = _m("fl_dwell_median_s") * n_rooms * preference[room]
                dwell = np.clip(median * rng.lognormal(0.0, 0.5), _m("fl_dwell_min_s"), _m("fl_dwell_max_s"))
                walker.stay(int(room), int(dwell), stand)
    else:
        raise ValueError(f"kind must be 'fp' or 'fl', got {kind!r}")
    pos = np.asarray(walker.points[:length])
    heading = np.asarray(walker.headings[:length])
    sigma = RECORDINGS[kind]["device_ap_sigma_db"].value
    device_ap = rng.normal(0.0, sigma, len(plan.aps)) if sigma else None
    return Recording(rssi_dbm=rssi_dbm(plan, pos, heading, kind, rng, device_ap), room=plan.room_of(pos))


def generate_house(house: str = "A", seed: int = 0) -> tuple[Recording, Recording]:
    """The (fingerprint, free-living) recordings of house "A".."D", deterministic by seed."""
    plan = make_floor_plan(_house(house, "house"))
    rng = np.random.default_rng([seed, "ABCD".index(house)])
    return simulate_recording(plan, "fp", rng), simulate_recording(plan, "fl", rng)


# ------------------------------------------------------------------------------------------
# reading files


def _read_table(path: Path, skip_first: bool = False) -> tuple[list[str], np.ndarray]:
    """A CSV file with a header: (column names, values [rows, cols] float64 with NaN = empty).

    A cell that is not a number is refused with its file, line and column; ``skip_first``:
    column 0 is unused and may hold anything (it reads as NaN)."""
    import pandas as pd

    if not path.is_file():
        raise BitnasError(f"{path.name} not found in {path.parent}")
    try:
        frame = pd.read_csv(path, skip_blank_lines=False, low_memory=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise BitnasError(f"{path} is empty; it needs a header row and one row per sample") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BitnasError(f"{path} is not a readable CSV file ({first})") from None
    columns = [str(c) for c in frame.columns]
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    frame = frame.iloc[: filled[-1] + 1 if len(filled) else 0]  # blank lines at the end of the file
    for k, name in enumerate(columns):
        col = frame.iloc[:, k]
        if k == 0 and skip_first:  # unused (a timestamp in the paper's files): any text
            frame[frame.columns[0]] = np.nan
            continue
        if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            numbers = pd.to_numeric(col.astype(str).where(col.notna()), errors="coerce")
            bad = numbers.isna() & col.notna()
            if bool(bad.any()):
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise BitnasError(f"{path.name} line {row + 2}, column {k + 1} ({name}): "
                                  f"{str(col.iloc[row])!r} is not a number")
            frame[frame.columns[k]] = numbers
    return columns, frame.to_numpy(dtype=np.float64)


def _integer_labels(values: np.ndarray, lo: int, hi: int, path: Path, column: str, what: str) -> np.ndarray:
    ok = np.isfinite(values) & (values == np.round(values)) & (values >= lo) & (values <= hi)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        shown = "empty" if np.isnan(values[row]) else f"{values[row]:g}"
        raise BitnasError(f"{path.name} line {row + 2}, column {column}: {what} {shown} is not an integer "
                          f"in {lo}..{hi}")
    return values.astype(np.int64)


def read_house_csv(path: Path, *, aps: int | None = None, rooms: int) -> Recording:
    """One of the paper's files: column 0 unused, RSSI columns (dBm; empty or NaN = missing),
    the room label 1..``rooms`` last. Returns the rooms 0-based."""
    path = Path(path)
    columns, table = _read_table(path, skip_first=True)
    if len(columns) < 3:
        raise BitnasError(f"{path.name} has {len(columns)} column(s); it needs column 0 (unused), one RSSI "
                          "column per access point and the room label last")
    n_aps = len(columns) - 2
    if aps is not None and n_aps != aps:
        raise BitnasError(f"{path.name} has {n_aps} RSSI column(s) between column 0 and the label; task "
                          f"rssi_rooms expects {aps} (set task.aps to the file's count)")
    if len(table) == 0:
        raise BitnasError(f"{path.name} holds no samples, only a header")
    rssi = table[:, 1:-1]
    high = np.isfinite(rssi) & (rssi > 0)
    if high.any():
        row, col = (int(v[0]) for v in np.nonzero(high))
        raise BitnasError(f"{path.name} line {row + 2}, column {col + 2} ({columns[col + 1]}): RSSI "
                          f"{rssi[row, col]:g} is above 0 dBm; the RSSI columns must hold dBm (negative), "
                          "empty or NaN when missing")
    label = _integer_labels(table[:, -1], 1, rooms, path, f"{len(columns)} ({columns[-1]})", "room label")
    return Recording(rssi_dbm=rssi, room=label - 1)


@dataclass(frozen=True)
class UjiScans:
    """UJIIndoorLoc scans: RSSI [N, 520] in dBm (NaN = not detected) and their metadata."""

    rssi_dbm: np.ndarray
    floor: np.ndarray
    building: np.ndarray
    space: np.ndarray
    user: np.ndarray
    phone: np.ndarray
    timestamp: np.ndarray


def read_ujiindoorloc(path: Path) -> UjiScans:
    """``trainingData.csv`` or ``validationData.csv`` of UJIIndoorLoc (layout in the module doc)."""
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    return _read_uji_cached(str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)


@functools.lru_cache(maxsize=2)
def _read_uji_cached(path_str: str, mtime_ns: int, size: int) -> UjiScans:
    path = Path(path_str)
    columns, table = _read_table(path)
    expected = (*UJI_WAPS, *UJI_META)
    for k, name in enumerate(expected):
        if k >= len(columns) or columns[k] != name:
            found = f"finds {columns[k]!r}" if k < len(columns) else "finds no more columns"
            raise BitnasError(f"{path.name}: column {k + 1} must be {name} (UJIIndoorLoc layout: WAP001.."
                              f"WAP520, {', '.join(UJI_META)}), {found}")
    if len(table) == 0:
        raise BitnasError(f"{path.name} holds no scans, only a header")
    rssi = table[:, :520].astype(np.float32)
    rssi[rssi == UJI_NOT_DETECTED] = np.nan
    meta = {name: table[:, 520 + k] for k, name in enumerate(UJI_META)}

    def ints(name: str, lo: int, hi: int, what: str) -> np.ndarray:
        return _integer_labels(meta[name], lo, hi, path, f"{520 + UJI_META.index(name) + 1} ({name})", what)

    big = 2**62
    return UjiScans(rssi_dbm=rssi, floor=ints("FLOOR", 0, UJI_FLOORS - 1, "floor"),
                    building=ints("BUILDINGID", 0, UJI_BUILDINGS - 1, "building"),
                    space=ints("SPACEID", 0, big, "space id"), user=ints("USERID", 0, big, "user id"),
                    phone=ints("PHONEID", 0, big, "phone id"),
                    timestamp=ints("TIMESTAMP", 0, big, "timestamp"))


def uji_labels(scans: UjiScans, label: str, spaces: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """Per-scan class: building, building * 5 + floor, or the index of the (building, floor,
    SPACEID) triple in ``spaces`` (-1 where it is not there)."""
    if label == "building":
        return scans.building.copy()
    if label == "floor":
        return scans.building * UJI_FLOORS + scans.floor
    index = {t: k for k, t in enumerate(spaces or [])}
    return np.array([index.get(t, -1) for t in zip(scans.building.tolist(), scans.floor.tolist(),
                                                   scans.space.tolist(), strict=True)], dtype=np.int64)


def uji_spaces(scans: UjiScans) -> list[tuple[int, int, int]]:
    """The (building, floor, SPACEID) triples of the scans, sorted."""
    return sorted(set(zip(scans.building.tolist(), scans.floor.tolist(), scans.space.tolist(), strict=True)))


def uji_columns(scans: UjiScans, aps: int) -> np.ndarray:
    """The first ``aps`` WAP columns holding any reading (then never-seen ones), in file order."""
    seen = np.isfinite(scans.rssi_dbm).any(axis=0)
    order = np.concatenate([np.flatnonzero(seen), np.flatnonzero(~seen)])
    return order[:aps]


def uji_windows(scans: UjiScans, labels: np.ndarray, columns: np.ndarray, window: int, hop: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over the scans of each (USERID, PHONEID), ordered by TIMESTAMP: (x [N, window,
    len(columns)] normalised, mode labels [N], starts in one sample axis, pairs apart)."""
    xs, ys, starts = [], [], []
    offset = 0
    order = np.lexsort((np.arange(len(labels)), scans.timestamp, scans.phone, scans.user))
    pairs = np.stack([scans.user[order], scans.phone[order]], axis=1)
    cuts = np.flatnonzero((pairs[1:] != pairs[:-1]).any(axis=1)) + 1
    for group in np.split(order, cuts):
        if len(group) >= window:
            x, y, s = make_windows(scans.rssi_dbm[group][:, columns], labels[group], window, hop)
            xs.append(normalise_rssi(x))
            ys.append(y)
            starts.append(s + offset)
        offset += len(group) + window
    if not xs:
        return (np.zeros((0, window, len(columns)), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(starts)


# ------------------------------------------------------------------------------------------
# the task


@TASKS.register("rssi_rooms")
class RssiRoomsTask(Task):
    """Room-level indoor localisation from windows of BLE RSSI (generated houses, CSVs, UJIIndoorLoc).

    Options and data in the module docstring of :mod:`bitnas.evaluators.rssi`.
    """

    def __init__(self, *, source: str = "generated", house: str | None = None, path: str | None = None,
                 window: int = 20, hop: int = 10, label: str | None = None, aps: int | None = None,
                 rooms: int | None = None, val_fraction: float = 0.2, ram_bytes: int | None = None) -> None:
        if source not in SOURCES:
            raise BitnasError(f"task.source must be one of {', '.join(map(repr, SOURCES))}, got {source!r}")
        self.source = source
        self.window = int_option(window, "task.window", 1)
        self.hop = int_option(hop, "task.hop", 1)
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not (
                0 < val_fraction < 0.5):
            raise BitnasError(f"task.val_fraction must be a fraction in (0, 0.5), got {val_fraction!r}")
        self.val_fraction = float(val_fraction)
        self._only(house is not None, "house", ("generated", "csv"))
        self._only(path is not None, "path", ("csv", "ujiindoorloc"))
        self._only(label is not None, "label", ("ujiindoorloc",))
        self._only(aps is not None, "aps", ("csv", "ujiindoorloc"))
        self._only(rooms is not None, "rooms", ("csv",))
        self.house = _house("A" if house is None else house) if source != "ujiindoorloc" else None
        self.path: Path | None = None
        if source != "generated":
            if not isinstance(path, str) or not path.strip():
                need = (f"the folder holding csv_house_{self.house}_fp.csv and csv_house_{self.house}_fl.csv"
                        if source == "csv" else "the folder holding trainingData.csv and validationData.csv")
                raise BitnasError(f"task rssi_rooms with source = {source!r} needs path = \"/data/...\" "
                                  f"({need}), got {path!r}")
            self.path = Path(path).expanduser()
        self.label = None
        self.spaces: list[tuple[int, int, int]] | None = None
        if source == "ujiindoorloc":
            if label is None:
                label = "building"
            if label not in UJI_LABELS:
                choices = ", ".join(map(repr, UJI_LABELS))
                raise BitnasError(f"task.label must be one of {choices}, got {label!r}")
            self.label = label
            self.n_aps = int_option(520 if aps is None else aps, "task.aps", 1, 520)
            if label == "space":
                self.spaces = uji_spaces(read_ujiindoorloc(self._file("trainingData.csv")))
                self.num_classes = len(self.spaces)
            else:
                self.num_classes = UJI_BUILDINGS if label == "building" else UJI_BUILDINGS * UJI_FLOORS
        else:
            spec = HOUSES[self.house]
            self.n_aps = spec.aps if aps is None else int_option(aps, "task.aps", 1)
            self.num_classes = spec.rooms if rooms is None else int_option(rooms, "task.rooms", 2)
        self.input_shape = (self.window, self.n_aps)
        self.ram_bytes = None if ram_bytes is None else int_option(ram_bytes, "task.ram_bytes", 1)
        need = self.window * self.n_aps
        if self.ram_bytes is not None and self.ram_bytes < need:
            raise BitnasError(f"task.ram_bytes = {self.ram_bytes} is smaller than one input window "
                              f"({self.window} x {self.n_aps} = {need} bytes at 8 bits); raise "
                              "task.ram_bytes or lower task.window")

    def _only(self, given: bool, option: str, sources: tuple[str, ...]) -> None:
        if given and self.source not in sources:
            where = " or ".join(repr(s) for s in sources)
            raise BitnasError(f"task.{option} applies to source = {where} only; remove it or set task.source "
                              f"(now {self.source!r})")

    def _file(self, name: str) -> Path:
        """The file ``name`` in task.path (a folder, or a file beside it)."""
        assert self.path is not None
        folder = self.path
        if self.path.is_file():
            folder = self.path.parent
        elif not self.path.is_dir():
            raise BitnasError(f"task.path {self.path} is not a directory; it must be the folder that holds "
                              f"{name}")
        file = folder / name
        if not file.is_file():
            raise BitnasError(f"{name} not found in {folder}; task.path must be the folder that holds it")
        return file

    def load(self, seed: int) -> TaskData:
        if self.source == "ujiindoorloc":
            return self._load_uji(seed)
        if self.source == "generated":
            fp, fl = generate_house(self.house, seed)
            names = ("the generated fingerprint recording", "the generated free-living recording")
        else:
            names = (f"csv_house_{self.house}_fp.csv", f"csv_house_{self.house}_fl.csv")
            fp, fl = (read_house_csv(self._file(n), aps=self.n_aps, rooms=self.num_classes) for n in names)
        fp_x, fp_y, fp_starts = make_windows(fp.rssi_dbm, fp.room, self.window, self.hop, what=names[0])
        fl_x, fl_y, _ = make_windows(fl.rssi_dbm, fl.room, self.window, self.hop, what=names[1])
        return build_task_data(normalise_rssi(fp_x), fp_y, fp_starts, normalise_rssi(fl_x), fl_y,
                               self.window, self.val_fraction, seed, what=names[0])

    def _load_uji(self, seed: int) -> TaskData:
        train = read_ujiindoorloc(self._file("trainingData.csv"))
        test = read_ujiindoorloc(self._file("validationData.csv"))
        columns = uji_columns(train, self.n_aps)
        xs = {}
        for name, scans in (("trainingData.csv", train), ("validationData.csv", test)):
            labels = uji_labels(scans, self.label, self.spaces)
            if (labels < 0).any():
                raise BitnasError(f"task.label = 'space': {int((labels < 0).sum())} scan(s) of {name} lie "
                                  "in a (building, floor, SPACEID) that trainingData.csv never has; use "
                                  "label = 'floor' or 'building'")
            x, y, starts = uji_windows(scans, labels, columns, self.window, self.hop)
            if len(y) == 0:
                raise BitnasError(f"task.window = {self.window} is longer than every (USERID, PHONEID) "
                                  f"recording in {name}; lower task.window")
            xs[name] = (x, y, starts)
        (fp_x, fp_y, fp_starts), (fl_x, fl_y, _) = xs["trainingData.csv"], xs["validationData.csv"]
        return build_task_data(fp_x, fp_y, fp_starts, fl_x, fl_y, self.window, self.val_fraction, seed,
                               what="trainingData.csv")
