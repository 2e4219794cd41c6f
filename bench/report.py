"""Turn the measured figures into ratios against their targets and print them."""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Figure:
    """One measured comparison: `value` is revcov's figure over its baseline (or a bound)."""

    name: str
    value: float
    target: str
    met: bool
    detail: str


def at_least(name: str, value: float, bound: float, detail: str) -> Figure:
    return Figure(name, value, f">= {bound:g}", not math.isnan(value) and value >= bound, detail)


def at_most(name: str, value: float, bound: float, detail: str) -> Figure:
    return Figure(name, value, f"<= {bound:g}", not math.isnan(value) and value <= bound, detail)


def print_figures(console: Console, title: str, figures: list[Figure]) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("met")
    table.add_column("measured")
    for figure in figures:
        table.add_row(
            figure.name,
            f"{figure.value:.3g}",
            figure.target,
            "yes" if figure.met else "[red]no[/red]",
            figure.detail,
        )
    console.print(table)


def write_json(path: Path, context: dict[str, object], figures: list[Figure]) -> None:
    path.write_text(
        json.dumps({**context, "figures": [asdict(figure) for figure in figures]}, indent=2) + "\n"
    )
