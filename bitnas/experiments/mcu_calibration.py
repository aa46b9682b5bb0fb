"""The Cortex-M models against MLPerf Tiny v1.0: DS-CNN keyword spotting and ResNet-8.

Both networks are rebuilt as plain torch modules with the reference shapes
(``mlcommons/tiny`` benchmark/training/keyword_spotting/keras_model.py, model ``ds_cnn``,
and benchmark/training/image_classification/keras_model.py, ``resnet_v1_eembc``, read at
bceb91c, the v0.5/v1.0 models: 16 filters in ResNet-8's first stage), costed at int8 by
``cortex_m4`` (NUCLEO-L4R5ZI), ``cortex_m7`` (NUCLEO-H7A3ZI-Q) and ``cortex_m33``
(NUCLEO-U575ZI-Q), and set beside the published closed-division figures (ST X-CUBE-AI,
``mlcommons/tiny_results_v1.0``; /work/shared/HARDWARE.md section 2).

- DS-CNN: input 49 x 10 x 1 (MFCC frames x coefficients), conv 10x4 stride 2 "same" to
  64 channels (25 x 5), 4 blocks of depthwise 3x3 + pointwise 1x1 at 64 channels, each
  conv followed by BatchNorm and ReLU, average pool (24, 5) (Keras: input size / 2),
  fully connected to 12 classes: 2,656,768 MACs.
- ResNet-8: input 32 x 32 x 3, conv 3x3 to 16, three residual stages of two 3x3 convs
  (16, 32, 64 channels, the first conv of stages 2 and 3 with stride 2, a 1x1 stride-2
  projection on their skip path, no BatchNorm after the projection), average pool 8x8,
  fully connected to 10: 12,501,632 MACs.

TensorFlow's "same" padding is asymmetric at stride 2 (one more row below); the torch
rebuilds pad symmetrically with the same output sizes, so MACs, shapes and buffers agree.

How the model was calibrated, and so what the table tests: each board's cycles per
instruction (``cpi``) is fitted on ResNet-8's published latency (:func:`fitted_cpi`), so
that row's latency error is 0 by construction; the board's power is the published KWS
energy / latency, so the KWS energy error equals its latency error. The held-out figures
are the KWS latency (the kernels' structure: a one-channel first layer, depthwise and
pointwise convolutions against ResNet's 3x3 convolutions) and the ResNet-8 energy (the
power). :data:`TOLERANCE` bounds every row; the test asserts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bitnas.hardware_models import extract_workload
from bitnas.hardware_models.base import Cost, LayerWorkload
from bitnas.hardware_models.workload import Op, counter
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE

#: the error every modelled figure stays within (latency and energy, every board)
TOLERANCE = 0.30


class ResidualAdd(nn.Module):
    """``a + b``, a module so that the workload counts the residual add."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


@counter(ResidualAdd)
def _residual_add(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    n = out[0].numel()
    return [Op("eltwise", macs=n, in_elems=2 * n, out_elems=n, in_shape=tuple(out.shape[1:]),
               out_shape=tuple(out.shape[1:]))]


def _conv_bn(c_in: int, c_out: int, k: int | tuple[int, int], stride: int = 1,
             padding: int | tuple[int, int] = 0, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups),
            nn.BatchNorm2d(c_out), nn.ReLU()]


class DSCNN(nn.Module):
    """MLPerf Tiny's keyword-spotting DS-CNN (``ds_cnn``, 64 filters), NCHW input 1x49x10."""

    def __init__(self, filters: int = 64, classes: int = 12) -> None:
        super().__init__()
        layers = _conv_bn(1, filters, (10, 4), stride=2, padding=(5, 1))
        for _ in range(4):
            layers += _conv_bn(filters, filters, 3, padding=1, groups=filters)
            layers += _conv_bn(filters, filters, 1)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d((24, 5))
        self.fc = nn.Linear(filters, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class _Stage(nn.Module):
    """Two 3x3 convs (the first with ``stride``), a 1x1 projection on the skip path when the
    shape changes, the add, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, 3, stride=stride, padding=1),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out))
        self.skip = nn.Conv2d(c_in, c_out, 1, stride=stride) if stride != 1 else None
        self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return torch.relu(self.add(self.skip(x) if self.skip is not None else x, y))


class ResNet8(nn.Module):
    """MLPerf Tiny's image-classification ResNet-8 (``resnet_v1_eembc``, 16/32/64 filters),
    NCHW input 3x32x32."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16, 3, padding=1))
        self.stages = nn.Sequential(_Stage(16, 16, 1), _Stage(16, 32, 2), _Stage(32, 64, 2))
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@dataclass(frozen=True)
class Network:
    """One MLPerf Tiny benchmark network and the MACs of its reference model."""

    name: str
    build: type[nn.Module]
    input_shape: tuple[int, ...]
    macs: int


NETWORKS = (
    Network("kws", DSCNN, (1, 49, 10), 2_656_768),
    Network("resnet8", ResNet8, (3, 32, 32), 12_501_632),
)


@dataclass(frozen=True)
class Published:
    """A closed-division MLPerf Tiny v1.0 result (ST X-CUBE-AI)."""

    hardware: str
    board: str
    network: str
    latency_ms: float
    energy_uj: float


PUBLISHED = (
    Published("cortex_m4", "NUCLEO-L4R5ZI", "kws", 75.1, 3371),
    Published("cortex_m4", "NUCLEO-L4R5ZI", "resnet8", 226.9, 10676),
    Published("cortex_m7", "NUCLEO-H7A3ZI-Q", "kws", 16.8, 2719),
    Published("cortex_m7", "NUCLEO-H7A3ZI-Q", "resnet8", 54.3, 8703),
    Published("cortex_m33", "NUCLEO-U575ZI-Q", "kws", 44.2, 1140),
    Published("cortex_m33", "NUCLEO-U575ZI-Q", "resnet8", 139.7, 3652),
)
#: the network each board's cpi is fitted on (its latency error is 0 by construction), and
#: the one its power comes from (its energy error equals its latency error)
FIT_NETWORK, POWER_NETWORK = "resnet8", "kws"


def network_workload(network: Network) -> tuple[list[LayerWorkload], QuantPlan]:
    """The network's workload (every conv and linear layer its own group) and its int8 plan."""
    model = network.build()  # its weights do not matter: only shapes enter the workload
    groups = {n: [n] for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    workload = extract_workload(model, torch.zeros(1, *network.input_shape), groups)
    return workload, QuantPlan({g: LayerQuant(8, 8, "uniform") for g in groups})


def network_cost(network: Network, hardware: str, **overrides: Any) -> Cost:
    """The model's cost of one network at int8 weights and activations."""
    workload, plan = network_workload(network)
    return HARDWARE.create(hardware, **overrides).cost(workload, plan)


def fitted_cpi(hardware: str) -> float:
    """The cpi that puts the FIT_NETWORK's modelled latency on the published one: published
    cycles / the model's instructions (what the data file's ``cpi`` holds)."""
    net = next(n for n in NETWORKS if n.name == FIT_NETWORK)
    pub = next(p for p in PUBLISHED if p.hardware == hardware and p.network == FIT_NETWORK)
    model = HARDWARE.create(hardware)
    instructions = network_cost(net, hardware).value("cycles") / model.c["cpi"]
    return pub.latency_ms * 1e-3 * model.c["clock_hz"] / instructions


def calibration_rows() -> list[dict[str, Any]]:
    """Model against MLPerf Tiny, per board and network: MACs, cycles, latency, energy, errors,
    and what each figure was fitted on."""
    rows = []
    nets = {n.name: n for n in NETWORKS}
    for pub in PUBLISHED:
        net = nets[pub.network]
        cost = network_cost(net, pub.hardware)
        latency_ms, energy_uj = cost.latency_s * 1e3, cost.energy_j * 1e6
        rows.append({
            "hardware": pub.hardware, "board": pub.board, "network": pub.network,
            "macs": int(cost.value("macs")), "reference_macs": net.macs,
            "cycles": cost.value("cycles"), "cycles_per_mac": cost.value("cycles") / cost.value("macs"),
            "latency_ms": latency_ms, "published_latency_ms": pub.latency_ms,
            "latency_error": latency_ms / pub.latency_ms - 1,
            "energy_uj": energy_uj, "published_energy_uj": pub.energy_uj,
            "energy_error": energy_uj / pub.energy_uj - 1,
            "latency_fitted": pub.network == FIT_NETWORK, "energy_fitted": pub.network == POWER_NETWORK,
            "ram_bytes": int(cost.value("ram_bytes")), "flash_bytes": int(cost.value("flash_bytes")),
            "feasible": cost.feasible,
        })
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The calibration table in Markdown; a fitted figure is marked (fit): its error tests
    nothing."""
    out = ["| board | network | MACs | cycles/MAC | latency ms (model / published) | latency error "
           "| energy uJ (model / published) | energy error | RAM B | flash B |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat_fit = " (fit)" if r["latency_fitted"] else ""
        en_fit = " (= latency error: power from this pair)" if r["energy_fitted"] else ""
        out.append(f"| {r['board']} ({r['hardware']}) | {r['network']} | {r['macs']:,} | "
                   f"{r['cycles_per_mac']:.2f} | {r['latency_ms']:.1f} / {r['published_latency_ms']:.1f} | "
                   f"{r['latency_error']:+.1%}{lat_fit} | {r['energy_uj']:,.0f} / "
                   f"{r['published_energy_uj']:,.0f} | {r['energy_error']:+.1%}{en_fit} | "
                   f"{r['ram_bytes']:,} | {r['flash_bytes']:,} |")
    return "\n".join(out)
