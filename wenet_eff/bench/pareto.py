"""Trade-off plots: WER against a cost (RTF, model size), with the Pareto front drawn.

Lower is better on both axes, so the front is the set of points no other point beats or ties
on both axes while beating it on one: the models worth choosing at some cost budget.
"""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (lower x and lower y are better), sorted by x.

    A point is dominated when another is at most as large on both axes and smaller on one;
    equal points do not dominate each other, so duplicates on the front are all kept.

    Args:
        points: (x, y) pairs, e.g. (RTF, WER %).

    Returns:
        Indices into `points` of the front, by increasing x (then y), i.e. along the step line.
    """

    def dominated(i: int) -> bool:
        xi, yi = points[i]
        return any(
            x <= xi and y <= yi and (x < xi or y < yi) for j, (x, y) in enumerate(points) if j != i
        )

    front = [i for i in range(len(points)) if not dominated(i)]
    return sorted(front, key=lambda i: points[i])


def plot_tradeoff(
    points: Sequence[tuple[float, float]],
    labels: Sequence[str],
    path: str,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
) -> list[int]:
    """Write a PNG of labelled points with the Pareto front as a step line.

    Args:
        points: (cost, WER) per model; labels: one per point; path: the PNG to write.
        log_x: a log-scale cost axis (sizes spanning orders of magnitude).

    Returns:
        The front's indices (`pareto_front(points)`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    on_front = set(front)
    # points equal to 3 significant digits (they would overlap) share one annotation
    names: dict[tuple[str, str], tuple[tuple[float, float], list[str]]] = {}
    for i, ((x, y), label) in enumerate(zip(points, labels, strict=True)):
        names.setdefault((f"{x:.3g}", f"{y:.3g}"), ((x, y), []))[1].append(label)
        ax.scatter(x, y, color="tab:red" if i in on_front else "tab:blue", zorder=3)
    for point, group in names.values():
        ax.annotate(", ".join(group), point, textcoords="offset points", xytext=(5, 4), fontsize=8)
    if front:
        xs = [points[i][0] for i in front]
        ys = [points[i][1] for i in front]
        # the best WER reachable at each cost: flat from a front model's cost to the next one's
        ax.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="Pareto front")
        ax.legend(loc="best", fontsize=8)
    ax.margins(x=0.15, y=0.1)  # room for the labels right of the points
    if log_x:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return front
