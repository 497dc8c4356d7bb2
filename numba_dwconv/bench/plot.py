"""The report's roofline plot: achieved multiply-adds per second against the measured copy bandwidth."""

from __future__ import annotations

import numpy as np


def roofline_plot(panels, path: str) -> None:
    """Write a PNG roofline plot to ``path``.

    Parameters
    ----------
    panels : list of (str, float, list of dict)
        One panel per device: its name, the copy bandwidth in bytes/s (the roof), and
        the report's rows (each with ``fma``, ``bytes``, ``forward_ms`` and ``layout``).

    Each forward row is a point at its arithmetic intensity (multiply-adds per byte
    of input + output) and achieved multiply-adds per second; the roof is
    ``bandwidth x intensity``: a point on it runs at the speed of a copy.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (device, bandwidth, rows) in zip(axes[0], panels):
        intensity = np.array([r["fma"] / r["bytes"] for r in rows])
        achieved = np.array([r["fma"] / (r["forward_ms"] / 1e3) for r in rows])
        span = np.geomspace(intensity.min() / 2, intensity.max() * 2, 50)
        ax.loglog(span, bandwidth * span / 1e9, "k-", label=f"copy roof ({bandwidth / 1e9:.0f} GB/s)")
        for layout, marker in (("channels_last", "o"), ("channels_first", "s")):
            picked = [i for i, r in enumerate(rows) if r["layout"] == layout]
            ax.loglog(intensity[picked], achieved[picked] / 1e9, marker, linestyle="none", label=layout)
            for i in picked:
                ax.annotate(rows[i]["shape"], (intensity[i], achieved[i] / 1e9), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("multiply-adds per byte (input + output)")
        ax.set_ylabel("GFMA/s (forward)")
        ax.set_title(f"{device}: forward pass against the copy roofline")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
