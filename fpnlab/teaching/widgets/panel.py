"""Panel: a widget's controls wired to its update function, with the latest state's text and figure below."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure


class Panel:
    """Controls wired to an update function; the latest state's text and figure are shown below them.

    `panel.controls[name].value = v` recomputes `panel.state` (a notebook or a test may do it); displaying
    the panel displays `panel.ui`. Only widgets and options that ipywidgets 7.7 and 8 share are used.
    """

    def __init__(
        self, controls: Mapping[str, widgets.ValueWidget], update: Callable[..., Any], render: Callable[[Any], Figure]
    ) -> None:
        self.controls, self.update, self.render = dict(controls), update, render
        self.text = widgets.HTML()
        self.output = widgets.Output()
        self.state: Any = None
        for control in self.controls.values():
            control.observe(self.refresh, names="value")
        sliders = widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.ui = widgets.VBox([sliders, self.text, self.output])
        self.refresh()

    def refresh(self, change: Any = None) -> None:
        self.state = self.update(**{name: control.value for name, control in self.controls.items()})
        self.text.value = f"<pre style='line-height:1.3'>{html.escape(self.state.text)}</pre>"
        figure = self.render(self.state)
        with self.output:
            self.output.clear_output(wait=True)
            display(figure)

    def _ipython_display_(self) -> None:
        """A panel shows as its widgets. display(widget) is the one way both ipywidgets 7.7 (Colab's) and 8 show a
        widget: 8's widgets have _repr_mimebundle_, 7's have _ipython_display_ instead."""
        display(self.ui)


def slider(description: str, value: int, low: int, high: int, step: int = 1) -> widgets.IntSlider:
    """An integer slider that updates when released (each update redraws a figure)."""
    return widgets.IntSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
    )
