"""The one progress-callback type of the package's long-running calls."""
from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: ``done`` of ``total`` units (tiles, images) are finished, and
``what`` names the work (for a label). Called as work finishes, not on a timer."""
