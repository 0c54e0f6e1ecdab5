"""The viewer's charts (uPlot through viser): reward and its terms, episode return and success,
and the family's own numbers (orbit RMS, machine evaluations, contact force).

Values are kept in rolling windows on the Python side and sent at most every
:attr:`Plots.period` seconds: a chart message per env step would cost more than the step.
uPlot's x axis is a time axis unless told otherwise, hence ``scales={"x": {"time": False}}``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from embodied.sim.viewer.session import StepRecord

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
NOT_TIME = {"x": {"time": False}}


def _chart(gui: Any, title: str, x_label: str, names: list[str], order: float) -> Any:
    from viser import uplot

    series = [uplot.Series(label=x_label)] + [
        uplot.Series(label=n, stroke=PALETTE[k % len(PALETTE)], width=1.5) for k, n in enumerate(names)
    ]
    empty = tuple(np.zeros(2) for _ in series)
    return gui.add_uplot(empty, tuple(series), title=title, scales=NOT_TIME, aspect=2.0, order=order)


class Plots:
    """Rolling charts of the shown env; :meth:`push` each step, :meth:`flush` sends them when due."""

    def __init__(self, gui: Any, metric_names: tuple[str, ...], window: int = 300, period: float = 0.2) -> None:
        self.gui = gui
        self.window = window
        self.period = period
        self._last_sent = 0.0
        self.folder = gui.add_folder("Plots", order=20)
        self.steps: deque[float] = deque(maxlen=window)
        self.series: dict[str, deque[float]] = {}
        self.reward_chart: Any = None
        self.episodes: list[tuple[float, float, float]] = []
        with self.folder:
            self.episode_chart = _chart(gui, "Episode return and success", "episode", ["return", "success"], 2)
            self.metric_charts = {m: _chart(gui, m, "step", [m], 3 + k) for k, m in enumerate(metric_names)}
        self.metric_values: dict[str, deque[float]] = {m: deque(maxlen=window) for m in metric_names}
        self.metric_steps: dict[str, deque[float]] = {m: deque(maxlen=window) for m in metric_names}

    def push(self, rec: StepRecord, metrics: dict[str, float]) -> None:
        names = ["reward", *rec.terms]
        if self.reward_chart is None:
            with self.folder:
                self.reward_chart = _chart(self.gui, "Reward and its terms", "step", names, 1)
            self.series = {n: deque(maxlen=self.window) for n in names}
        self.steps.append(rec.step)
        values = {"reward": rec.reward, **rec.terms}
        for n, d in self.series.items():
            d.append(values.get(n, np.nan))
        if rec.done:
            self.episodes.append((len(self.episodes) + 1, rec.episode_return, rec.success or 0.0))
            self.episodes = self.episodes[-self.window :]
        for name, value in metrics.items():
            if name in self.metric_values:
                self.metric_values[name].append(value)
                self.metric_steps[name].append(rec.step)

    def flush(self, force: bool = False) -> bool:
        """Send the charts if :attr:`period` has passed (or ``force``); True if sent."""
        now = time.monotonic()
        if not force and now - self._last_sent < self.period:
            return False
        self._last_sent = now
        if self.reward_chart is not None and len(self.steps) > 1:
            self.reward_chart.data = (np.array(self.steps), *(np.array(d) for d in self.series.values()))
        if len(self.episodes) > 1:
            arr = np.array(self.episodes, dtype=np.float64)
            self.episode_chart.data = (arr[:, 0], arr[:, 1], arr[:, 2])
        for name, chart in self.metric_charts.items():
            if len(self.metric_values[name]) > 1:
                chart.data = (np.array(self.metric_steps[name]), np.array(self.metric_values[name]))
        return True
