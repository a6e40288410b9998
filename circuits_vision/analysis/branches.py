"""Branch specialization (Voss et al., "Branch Specialization", Distill 2021).

Does a layer made of parallel branches keep one kind of unit in one branch?

- :func:`specialization` / :func:`report`: per category x branch, how many of the category's units lie
  in the branch, how many a uniformly random placement would put there, the enrichment (ratio), and
  the exact one-sided hypergeometric p-value ``P(X >= count)``, corrected for categories x branches
  (Bonferroni and Holm). :func:`branch_statistics` does the same from a branch map alone (no model).
- :func:`branch_routing`: without labels, how much of each downstream unit's weight mass
  (``sum |W|``) arrives through each branch, and :func:`routing_clusters` groups downstream units by it.
- :func:`abs_weight_svd`: the SVD of ``|W|`` between two layers, the article's label-free view of the
  first layers (colour vs frequency).

Branches come from :func:`circuits_vision.hooks.branches` (concatenation layers), from a grouped
convolution's groups, or from a map ``{branch: (start, stop)}`` given by hand.
Categories are ``{name: [units]}``: given by hand, from :func:`circuits_vision.models.facts` (InceptionV1
families, ``facts_categories``), or measured (:func:`circuits_vision.analysis.unit_categories.color_categories`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.analysis._circuit_edit import reads_directly
from circuits_vision.analysis.stats import bonferroni, holm, hypergeometric_log10_sf, hypergeometric_sf
from circuits_vision.hooks import Branch, NotABranchLayerError, get_layer, layer_shape, resolve_layer
from circuits_vision.hooks import branches as hook_branches
from circuits_vision.results import Result

__all__ = [
    "BranchReport",
    "BranchRouting",
    "BranchRow",
    "CategoryError",
    "WeightSVD",
    "abs_weight_svd",
    "branch_routing",
    "branch_statistics",
    "facts_categories",
    "layer_branches",
    "report",
    "routing_clusters",
    "specialization",
]

BranchMap = Mapping[str, tuple[int, int]]


class CategoryError(ValueError):
    """Unit categories that do not fit the layer (out of range, repeated, not integers)."""


@dataclass(frozen=True)
class BranchRow:
    """One category x branch cell. ``p_value = P(X >= count)`` under uniform random placement."""

    category: str
    branch: str
    count: int
    category_size: int
    branch_size: int
    layer_size: int
    expected: float
    enrichment: float  # count / expected; nan for an empty category
    p_value: float
    log10_p: float
    p_bonferroni: float
    p_holm: float
    units: tuple[int, ...]  # the category's units inside this branch
    tested: bool  # False for empty categories (reported, never tested)


@dataclass
class BranchReport(Result):
    """Counts and tests for every category x branch of one layer (rows in category, then branch order)."""

    layer: str
    branches: list[Branch]
    categories: dict[str, list[int]]
    rows: list[BranchRow]
    n_tests: int
    routing: BranchRouting | None = None

    def row(self, category: str, branch: str) -> BranchRow:
        for r in self.rows:
            if r.category == category and r.branch == branch:
                return r
        raise KeyError(
            f"no row for category {category!r} x branch {branch!r}; categories "
            f"{list(self.categories)}, branches {[b.name for b in self.branches]}"
        )

    def best_branch(self, category: str) -> BranchRow:
        """The branch where ``category`` is most over-represented (smallest p, then most units)."""
        rows = [r for r in self.rows if r.category == category]
        if not rows:
            raise KeyError(f"unknown category {category!r}; categories: {list(self.categories)}")
        return min(rows, key=lambda r: (r.log10_p, -r.count))

    def significant(self, alpha: float = 0.05, correction: str = "bonferroni") -> list[BranchRow]:
        """Rows whose corrected p-value (``"bonferroni"``, ``"holm"`` or ``"none"``) is below ``alpha``."""
        key = {"bonferroni": "p_bonferroni", "holm": "p_holm", "none": "p_value"}.get(correction)
        if key is None:
            raise ValueError(f"correction must be 'bonferroni', 'holm' or 'none', got {correction!r}")
        return [r for r in self.rows if r.tested and getattr(r, key) < alpha]

    @property
    def empty_categories(self) -> list[str]:
        return [name for name, units in self.categories.items() if not units]

    def matrix(self, field_name: str = "count") -> tuple[list[str], list[str], list[list[float]]]:
        """``(categories, branches, values[category][branch])`` of one row field (``"count"``, ``"p_value"``, ...)."""
        names = [b.name for b in self.branches]
        values = [[getattr(self.row(c, b), field_name) for b in names] for c in self.categories]
        return list(self.categories), names, values

    def table(self) -> list[dict]:
        """One row per category x branch: its :class:`BranchRow` fields."""
        return [{**dataclasses.asdict(r), "units": list(r.units)} for r in self.rows]

    def __str__(self) -> str:
        """The rows as aligned text, one line per category x branch."""
        header = (
            f"{'category':<28} {'branch':<12} {'count':>9} {'expected':>8} {'enrich':>7} "
            f"{'p':>9} {'p_bonf':>9} {'p_holm':>9}"
        )
        lines = [
            f"branch specialization of layer {self.layer!r}: {self.n_tests} tests "
            f"(categories x branches; empty categories not tested)",
            header,
        ]
        for r in self.rows:
            count = f"{r.count}/{r.category_size}"
            if not r.tested:
                lines.append(f"{r.category[:28]:<28} {r.branch[:12]:<12} {count:>9} {'(empty category)':>27}")
                continue
            lines.append(
                f"{r.category[:28]:<28} {r.branch[:12]:<12} {count:>9} {r.expected:>8.2f} "
                f"{r.enrichment:>7.2f} {_p(r.p_value, r.log10_p):>9} {r.p_bonferroni:>9.2g} {r.p_holm:>9.2g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"BranchReport(layer={self.layer!r}, branches={[b.name for b in self.branches]}, "
            f"categories={list(self.categories)}, n_tests={self.n_tests})"
        )


def _p(p: float, log10_p: float) -> str:
    return f"{p:.2g}" if p > 0 else f"1e{log10_p:.0f}"


# --------------------------------------------------------------------------------------------------
# Branches and categories


def layer_branches(model: nn.Module, layer: str, branches: BranchMap | Sequence[Branch] | None = None) -> list[Branch]:
    """The branches of ``layer`` in channel order.

    ``branches`` (a map ``{name: (start, stop)}`` or a list of :class:`~circuits_vision.hooks.Branch`)
    wins; otherwise a grouped convolution's groups (``group0``, ...), otherwise the concatenation's
    inputs found by :func:`circuits_vision.hooks.branches`.

    Raises:
        NotABranchLayerError: the layer is neither; the message shows how to pass ``branches=``.
    """
    if branches is not None:
        if isinstance(branches, Mapping):
            return hook_branches(model, layer, branch_map=branches)
        return sorted(branches, key=lambda b: b.start)
    module = get_layer(model, layer)
    groups = getattr(module, "groups", 1)
    if isinstance(module, nn.Conv2d) and groups > 1:
        per_group = module.out_channels // groups
        return [
            Branch(f"group{g}", g * per_group, (g + 1) * per_group, resolve_layer(model, layer)[0])
            for g in range(groups)
        ]
    try:
        return hook_branches(model, layer)
    except NotABranchLayerError as error:
        raise NotABranchLayerError(
            f"{error} With the branch analyses, pass branches={{name: (start, stop)}}, e.g. "
            f"specialization(model, {layer!r}, categories, branches={{'a': (0, 32), 'b': (32, 64)}})"
        ) from None


def _check_categories(categories: Mapping[str, Iterable[int]], width: int, layer: str) -> dict[str, list[int]]:
    """Categories as ``{name: sorted unit list}``; every unit an int in ``[0, width)`` in one category only."""
    if not isinstance(categories, Mapping):
        raise CategoryError(f"categories must be a mapping {{name: [units]}}, got {type(categories).__name__}")
    checked: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for name, units in categories.items():
        units = list(units)
        for unit in units:
            if isinstance(unit, bool) or not isinstance(unit, int):
                raise CategoryError(f"category {name!r}: units must be channel indices (int), got {unit!r}")
            if not 0 <= unit < width:
                raise CategoryError(
                    f"category {name!r}: unit {unit} is outside layer {layer!r}, "
                    f"which has {width} channels (0..{width - 1})"
                )
        repeated = sorted({u for u in units if units.count(u) > 1})
        if repeated:
            raise CategoryError(f"category {name!r} lists units {repeated} more than once")
        clashes = sorted(u for u in units if u in owner)
        if clashes:
            other = owner[clashes[0]]
            raise CategoryError(
                f"units {clashes} are in both categories {other!r} and {name!r}; categories must be disjoint "
                f"(test overlapping families in separate calls, one family against the rest)"
            )
        owner.update((u, str(name)) for u in units)
        checked[str(name)] = sorted(units)
    return checked


def facts_categories(layer: str, source: str = "families") -> dict[str, list[int]]:
    """InceptionV1 unit categories packaged with the toolkit (lucid channel ids; see ``models.facts``).

    ``source="families"``: the "Overview of Early Vision" families of ``layer`` (complete partitions for
    conv2d0..mixed3b). ``source="figure5"``: Branch Specialization's figure-5 categories of the 5x5
    branch of ``layer`` (``mixed3a``, ``mixed3b``, ``mixed4a``). These cover that branch only, so they
    describe its composition; testing them across branches would find the 5x5 branch by construction.
    """
    from circuits_vision.models import facts

    if source == "families":
        return facts.families(layer)
    if source == "figure5":
        return facts.branch_specialization_categories(f"{layer}_5x5")
    raise ValueError(f"source must be 'families' or 'figure5', got {source!r}")


# --------------------------------------------------------------------------------------------------
# Statistics


def branch_statistics(
    categories: Mapping[str, Iterable[int]],
    branches: BranchMap | Sequence[Branch],
    layer_size: int,
    *,
    layer: str = "",
    population: Iterable[int] | None = None,
) -> BranchReport:
    """Counts, enrichment and exact hypergeometric tests of ``categories`` over ``branches`` (no model needed).

    The null hypothesis: a category's units are a uniform random subset of the population, by default
    the ``layer_size`` channels. ``p_value = P(X >= count)`` with
    ``X ~ Hypergeometric(population size, branch_size, category_size)``; Bonferroni and Holm corrections run
    over the tested cells (non-empty categories x branches). When the branches leave channels out, the
    population is the channels inside them, and a category unit outside every branch is an error.
    ``population``: the units that were categorised, when that was not the whole layer (e.g. a sample of
    it); each row's ``branch_size`` and ``layer_size`` then count population units only, since a category
    drawn from a sample of one branch is no evidence that the branch is special.
    """
    if isinstance(branches, Mapping):
        branch_list = [Branch(str(n), int(a), int(b), "") for n, (a, b) in branches.items()]
    else:
        branch_list = list(branches)
    branch_list.sort(key=lambda b: b.start)
    for b in branch_list:
        if not 0 <= b.start < b.stop <= layer_size:
            raise ValueError(f"branch {b.name!r} [{b.start}, {b.stop}) is not inside the layer's {layer_size} channels")
    for before, after in zip(branch_list, branch_list[1:]):
        if after.start < before.stop:
            raise ValueError(f"branches {before.name!r} and {after.name!r} overlap")
    checked = _check_categories(categories, layer_size, layer)
    covered = sum(b.width for b in branch_list)
    if covered != layer_size:
        outside = [u for units in checked.values() for u in units if not any(u in b for b in branch_list)]
        if outside:
            raise CategoryError(
                f"units {outside[:10]} lie in no branch of the map {[(b.name, b.start, b.stop) for b in branch_list]}"
            )
    population_size = covered
    width_of = {b.name: b.width for b in branch_list}
    if population is not None:
        pool = set(_check_categories({"population": population}, layer_size, layer)["population"])
        outside = sorted(u for units in checked.values() for u in units if u not in pool)
        if outside:
            raise CategoryError(f"category units {outside[:10]} are not in the population the categories came from")
        pool = {u for u in pool if any(u in b for b in branch_list)}
        population_size = len(pool)
        width_of = {b.name: sum(1 for u in pool if u in b) for b in branch_list}

    cells = []
    for name, units in checked.items():
        for b in branch_list:
            inside = tuple(u for u in units if u in b)
            cells.append((name, b, inside, len(units)))
    tested = [i for i, (_, _, _, size) in enumerate(cells) if size > 0]
    raw = {
        i: hypergeometric_sf(len(cells[i][2]), population_size, width_of[cells[i][1].name], cells[i][3]) for i in tested
    }
    raw_list = [raw[i] for i in tested]
    bonf = dict(zip(tested, bonferroni(raw_list)))
    holm_adjusted = dict(zip(tested, holm(raw_list)))

    rows = []
    for i, (name, b, inside, size) in enumerate(cells):
        width = width_of[b.name]
        expected = size * width / population_size
        if size == 0:
            rows.append(
                BranchRow(
                    name,
                    b.name,
                    0,
                    0,
                    width,
                    population_size,
                    expected=0.0,
                    enrichment=math.nan,
                    p_value=1.0,
                    log10_p=0.0,
                    p_bonferroni=1.0,
                    p_holm=1.0,
                    units=(),
                    tested=False,
                )
            )
            continue
        rows.append(
            BranchRow(
                category=name,
                branch=b.name,
                count=len(inside),
                category_size=size,
                branch_size=width,
                layer_size=population_size,
                expected=expected,
                enrichment=len(inside) / expected if expected > 0 else math.inf,
                p_value=raw[i],
                log10_p=hypergeometric_log10_sf(len(inside), population_size, width, size),
                p_bonferroni=bonf[i],
                p_holm=holm_adjusted[i],
                units=inside,
                tested=True,
            )
        )
    return BranchReport(layer, branch_list, checked, rows, n_tests=len(tested))


def specialization(
    model: nn.Module,
    layer: str,
    categories: Mapping[str, Iterable[int]],
    *,
    branches: BranchMap | Sequence[Branch] | None = None,
    population: Iterable[int] | None = None,
) -> BranchReport:
    """:func:`branch_statistics` for ``layer`` of ``model``, branches found as in :func:`layer_branches`."""
    found = layer_branches(model, layer, branches)
    width = int(layer_shape(model, layer)[0])
    return branch_statistics(categories, found, width, layer=layer, population=population)


def report(
    model: nn.Module,
    layer: str,
    categories: Mapping[str, Iterable[int]] | str = "color",
    *,
    branches: BranchMap | Sequence[Branch] | None = None,
    downstream: str | None = None,
    population: Iterable[int] | None = None,
) -> BranchReport:
    """Branch specialization of ``layer``, optionally with the weight routing into ``downstream``.

    ``population``: the units the categories were drawn from when that is not the whole layer (see
    :func:`branch_statistics`).

    ``categories``: a mapping ``{name: [units]}``; ``"color"`` to measure colour vs black-and-white units
    with stimuli (:func:`~circuits_vision.analysis.unit_categories.color_categories`), ``"orientation"``
    oriented vs unoriented units (:func:`~circuits_vision.analysis.unit_categories.orientation_categories`);
    ``"families"`` for the packaged InceptionV1 families of ``layer`` (:func:`facts_categories`).
    Draw it with :func:`circuits_vision.viz.branches.plot_report`.
    """
    if isinstance(categories, str):
        if categories in ("color", "orientation"):
            from circuits_vision.analysis import unit_categories

            measure = {
                "color": unit_categories.color_categories,
                "orientation": unit_categories.orientation_categories,
            }[categories]
            categories = measure(model, layer)
        elif categories == "families":
            categories = facts_categories(resolve_layer(model, layer)[0], "families")
        else:
            raise ValueError(
                f"categories must be a mapping {{name: [units]}}, 'color', 'orientation' or "
                f"'families'; "
                f"got {categories!r}"
            )
    result = specialization(model, layer, categories, branches=branches, population=population)
    if downstream is not None:
        result.routing = branch_routing(model, layer, downstream, branches=result.branches)
    return result


# --------------------------------------------------------------------------------------------------
# Weight-based views


@dataclass(repr=False)
class BranchRouting(Result):
    """How much of each downstream unit's weight mass arrives through each branch.

    ``mass[t, b] = sum over branch b's channels and all kernel taps of |W[t, s, u, v]|``, ``[C_target, B]``;
    ``fraction`` normalises each row to sum to 1 (rows with no mass stay 0).
    """

    source: str
    target: str
    branches: list[Branch]
    mass: torch.Tensor
    method: str  # "expanded_weights" or "direct"
    fraction: torch.Tensor = field(init=False)

    def __post_init__(self):
        total = self.mass.sum(1, keepdim=True)
        self.fraction = torch.where(total > 0, self.mass / total.clamp(min=1e-30), torch.zeros_like(self.mass))

    def table(self) -> list[dict]:
        """One row per target unit: the fraction of its weight mass from each branch."""
        names = [b.name for b in self.branches]
        return [{"unit": t, **dict(zip(names, row))} for t, row in enumerate(self.fraction.tolist())]

    def dominant(self, threshold: float = 0.5) -> dict[str, list[int]]:
        """``{branch: target units receiving >= threshold of their mass from it}``, plus ``"mixed"``."""
        groups: dict[str, list[int]] = {b.name: [] for b in self.branches}
        groups["mixed"] = []
        best = self.fraction.max(1)
        for unit, (share, index) in enumerate(zip(best.values.tolist(), best.indices.tolist())):
            groups[self.branches[index].name if share >= threshold else "mixed"].append(unit)
        return groups


def _weights_between(model: nn.Module, source: str, target: str) -> tuple[torch.Tensor, str]:
    """``([C_target, C_source, kh, kw], method)``: expanded weights, else the direct conv weights."""
    try:
        from circuits_vision.weights import expanded_weights
    except ImportError:  # the weights package is optional for this view
        expanded_weights = None
    if expanded_weights is not None:
        return expanded_weights(model, source, target).detach(), "expanded_weights"
    return _direct_weights(model, source, target), "direct"


def _direct_weights(model: nn.Module, source: str, target: str) -> torch.Tensor:
    """The weights of conv ``target`` when its input is ``source``'s output (checked by one probe)."""
    conv = get_layer(model, target)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(
            f"layer {target!r} is a {type(conv).__name__}, not a Conv2d; without "
            f"circuits_vision.weights.expanded_weights name the conv that reads {source!r} directly"
        )
    if not reads_directly(model, source, target):
        raise ValueError(
            f"conv {target!r} does not read {source!r}'s output directly; expanded weights are "
            f"needed (circuits_vision.weights.expanded_weights)"
        )
    return conv.weight.detach()


def branch_routing(
    model: nn.Module, layer: str, downstream: str, *, branches: BranchMap | Sequence[Branch] | None = None
) -> BranchRouting:
    """Per downstream unit, the ``sum |W|`` arriving through each branch of ``layer``.

    Uses :func:`circuits_vision.weights.expanded_weights` (``[C_down, C_layer, kh, kw]``, the linearised
    path through any layers in between); where that package is unavailable, ``downstream`` must be a
    Conv2d reading ``layer`` directly and its own weights are used.
    """
    found = layer_branches(model, layer, branches)
    weights, method = _weights_between(model, layer, downstream)
    per_source = weights.abs().sum(dim=(2, 3)).double().cpu()  # [C_target, C_source]; small, kept on the CPU
    mass = torch.stack([per_source[:, b.start : b.stop].sum(1) for b in found], dim=1)
    return BranchRouting(layer, downstream, found, mass, method)


def routing_clusters(routing: BranchRouting, n_clusters: int, *, seed: int = 0) -> torch.Tensor:
    """K-means (scikit-learn, ``random_state=seed``) of downstream units by branch fractions: labels ``[C_target]``."""
    from sklearn.cluster import KMeans

    if not 1 <= n_clusters <= routing.fraction.shape[0]:
        raise ValueError(f"n_clusters must be in 1..{routing.fraction.shape[0]}, got {n_clusters}")
    labels = KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(routing.fraction.numpy())
    return torch.as_tensor(labels)


@dataclass(repr=False)
class WeightSVD(Result):
    """SVD of ``M = sum over taps |W|`` (``[C_target, C_source]``): ``M = U diag(S) V^T``, top ``k`` kept.

    ``target_coords = U S`` ``[C_target, k]``, ``source_loadings = V`` ``[C_source, k]``. Signs are fixed so
    each column's largest-magnitude source loading is positive.
    """

    source: str
    target: str
    singular_values: torch.Tensor
    target_coords: torch.Tensor
    source_loadings: torch.Tensor

    def table(self) -> list[dict]:
        """One row per kept component: its singular value and its largest source loading."""
        return [
            {"component": i, "singular_value": float(s), "top_source": int(self.source_loadings[:, i].argmax())}
            for i, s in enumerate(self.singular_values.tolist())
        ]


def abs_weight_svd(model: nn.Module, source: str, target: str, k: int = 3, *, center: bool = True) -> WeightSVD:
    """The label-free view of "Branch Specialization": SVD of the absolute weights between two layers.

    With ``center=True`` each source column's mean over targets is removed first, so component 1 is the
    main axis along which targets differ (in InceptionV1's first layers: colour vs black-and-white /
    frequency) rather than the overall weight scale.
    """
    weights, _ = _weights_between(model, source, target)
    m = weights.abs().sum(dim=(2, 3)).double().cpu()
    if center:
        m = m - m.mean(0, keepdim=True)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    k = min(k, s.numel())
    v = vh[:k].T
    signs = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    signs[signs == 0] = 1
    return WeightSVD(source, target, s[:k], u[:, :k] * s[:k] * signs, v * signs)
