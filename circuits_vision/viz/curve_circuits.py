"""Figures of the Curve Circuits experiments (display only): weight vs orientation, echo, replacement.

Built with ``matplotlib.figure.Figure`` (no pyplot state, headless with Agg).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["echo_survey_figure", "echo_tuning_figure", "replacement_figure", "weight_vs_orientation_figure"]


def weight_vs_orientation_figure(circuit, *, size: float = 4.0) -> Figure:
    """Net expanded weight of every (target curve, source curve) pair against their orientation difference.

    ``circuit``: a :class:`~circuits_vision.analysis.curve_circuits.CurveCircuit`. Dots are pairs, the
    line the mean per 45-degree bin, the grey band the 5-95% range of those means with the source
    orientations shuffled.
    """
    fig = Figure(figsize=(size * 1.5, size))
    ax = fig.add_subplot()
    delta, net = circuit.delta.flatten().numpy(), circuit.net.flatten().numpy()
    colour = np.where(net > 0, "tab:red", "tab:blue")
    ax.scatter(delta, net, s=10, c=colour, alpha=0.6, linewidths=0)
    bins = np.array(circuit.bins + [180.0])  # repeat the -180 bin at +180 so the curve closes
    profile = np.array(circuit.profile + circuit.profile[:1])
    low = np.array(circuit.null_low + circuit.null_low[:1])
    high = np.array(circuit.null_high + circuit.null_high[:1])
    ax.fill_between(bins, low, high, color="0.8", label="shuffled orientations (5-95%)")
    ax.plot(bins, profile, color="k", marker="o", lw=1.5, label="mean per 45 deg")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(np.arange(-180, 181, 45))
    ax.set_xlabel(f"orientation difference {circuit.target} - {circuit.source} (deg)")
    ax.set_ylabel("net expanded weight")
    ax.set_title(
        f"{circuit.source} -> {circuit.target} curve circuit: r = {circuit.correlation:.2f} with cos, "
        f"p = {circuit.p_value:.2g}",
        fontsize=9,
    )
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _echo_tuning_panel(ax, report, control=None, *, tick_step: int = 45) -> None:
    """One detector's tuning curve original (black) and with its opposite inhibition removed (red), plus the
    control edit's (grey) when given, on ``ax``; dotted lines at the preferred orientation and opposite it."""
    angles = report.orientations.numpy()
    ax.plot(angles, report.before.numpy(), color="k", label="original")
    ax.plot(angles, report.after.numpy(), color="tab:red", label="opposite inhibition removed")
    if control is not None:
        ax.plot(angles, control.numpy(), color="0.6", label="orthogonal removed (control)")
    ax.axvline(report.preferred_orientation, color="k", ls=":", lw=0.8)
    ax.axvline((report.preferred_orientation + 180) % 360, color="tab:red", ls=":", lw=0.8)
    ax.set_xticks(np.arange(0, 361, tick_step))
    ax.set_xlabel("curve orientation (deg)")
    ax.set_ylabel("response (baseline std)")
    ax.set_title(f"{report.target}:{report.unit}: echo {report.echo_before:.2f} -> {report.echo_after:.2f}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)


def echo_tuning_figure(report, *, size: float = 4.0) -> Figure:
    """Tuning curve of the edited unit before (black) and after (red) removing its opposite inhibition.

    ``report``: a :class:`~circuits_vision.analysis.curve_experiments.EchoReport`.
    """
    fig = Figure(figsize=(size * 1.5, size))
    _echo_tuning_panel(fig.add_subplot(), report)
    fig.tight_layout()
    return fig


def echo_survey_figure(survey, *, size: float = 4.0) -> Figure:
    """The echo edit on every detector: the strongest one's tuning, and echo growth per detector.

    ``survey``: an :class:`~circuits_vision.analysis.curve_experiments.EchoSurvey`. Left: the strongest
    echo's tuning curve original (black), opposite inhibition removed (red) and orthogonal inhibition
    removed (the control, grey). Right: echo-ratio growth of each detector under the edit and the
    control, detectors by preferred orientation; the dotted line is where an echo counts as appearing.
    """
    from circuits_vision.analysis.curve_experiments import ECHO_GROWTH

    fig = Figure(figsize=(size * 2.6, size))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _echo_tuning_panel(left, survey.reports[survey.strongest], survey.control_curves[survey.strongest], tick_step=90)
    order = np.argsort([r.preferred_orientation for r in survey.reports], kind="stable")
    x = np.arange(len(order))
    growth, control = np.array(survey.growth)[order], np.array(survey.control_growth)[order]
    right.bar(x - 0.2, growth, width=0.4, color="tab:red", label=f"edit: echo in {survey.n_echo}")
    right.bar(x + 0.2, control, width=0.4, color="0.6", label=f"control: echo in {survey.n_control_echo}")
    right.axhline(ECHO_GROWTH, color="k", ls=":", lw=0.8)
    right.set_xticks(x, [f"{survey.reports[i].unit}" for i in order], rotation=90, fontsize=6)
    right.set_xlabel(f"{survey.target} curve detector (by preferred orientation)")
    right.set_ylabel("echo-ratio growth")
    right.set_title(f"{len(order)} detectors: edit beats control at sign-test p = {survey.p_value:.2g}", fontsize=9)
    right.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def replacement_figure(report, *, size: float = 4.0) -> Figure:
    """Accuracy per curve class (and overall): original, curve detectors ablated, hand-built ones, and the
    control rebuilt from each unit's own weights from the source curve detectors.

    ``report``: a :class:`~circuits_vision.analysis.curve_experiments.ReplacementReport`.
    """
    rows = report.table()
    fig = Figure(figsize=(size * 2, size))
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    bars = (
        ("original", "0.3", "original"),
        ("ablated", "tab:blue", "ablated"),
        ("hand_built", "tab:orange", "hand-built"),
        ("curve_inputs_only", "tab:green", "own curve weights (control)"),
    )
    for k, (key, colour, label) in enumerate(bars):
        ax.bar(x + (k - 1.5) * 0.2, [100 * r[key] for r in rows], width=0.2, color=colour, label=label)
    ax.set_xticks(x, [r["class"] for r in rows], rotation=45, fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, frameon=False, ncols=4, loc="lower left")
    ax.set_title(f"{report.target} curve detectors: original / ablated / hand-built / own curve weights", fontsize=9)
    fig.tight_layout()
    return fig
