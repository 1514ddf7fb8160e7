"""How many measurements stand behind a prediction, and a warning when they are few.

Every prediction uses one calibration block (GPU generation x precision, see
:mod:`planner.perf.calibration`); the block's constants were fitted to
``rows_per_block[key]`` measured rows (``disagg calibrate`` records it). A block with
fewer than :func:`thin_block_rows` rows (two per fitted constant, 22 with today's 11) is
*thin*: its constants are barely determined, so its numbers are estimates. The ``default`` block,
used for a GPU generation with no block of its own, rests on no row of that hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from planner.perf.calibration import Calibration, load_calibration
from planner.specs import HardwareSpec, Precision

ROWS_PER_FITTED_CONSTANT = 2


def thin_block_rows() -> int:
    """Rows below which a block is thin: two per constant ``disagg calibrate`` fits."""
    from planner.calibrate import FITTED_FIELDS  # the fit imports this module's caller

    return ROWS_PER_FITTED_CONSTANT * len(FITTED_FIELDS)


@dataclass(frozen=True)
class BlockSupport:
    """The calibration block behind a prediction and the rows it was fitted on."""

    block: str
    rows: int

    @property
    def thin(self) -> bool:
        """Fewer rows than :func:`thin_block_rows`."""
        return self.rows < thin_block_rows()

    def warning(self, hardware_name: str, precision: str) -> str | None:
        """One sentence for the terminal when the block is thin, else None."""
        if not self.thin:
            return None
        plural = "s" if self.rows != 1 else ""
        basis = (
            f"no block for {hardware_name} at {precision}: the default block, fitted on other hardware"
            if self.block == "default"
            else f"calibration block {self.block} rests on {self.rows} measured row{plural}"
        )
        return (
            f"warning: {basis} (fewer than {thin_block_rows()}, two per fitted constant), so these numbers "
            f"are estimates; add measurements of {hardware_name} at {precision} and run `disagg calibrate`"
        )

    def as_dict(self) -> dict[str, object]:
        """The JSON / CSV fields: ``calibration_block``, ``calibration_rows``, ``calibration_thin``."""
        return {"calibration_block": self.block, "calibration_rows": self.rows, "calibration_thin": self.thin}


def block_support(
    calibration: Calibration | None, hardware: HardwareSpec, precision: Precision
) -> BlockSupport:
    """Which block prices this hardware and precision, and how many rows it was fitted on."""
    calibration = calibration or load_calibration()
    key = calibration.block_key(hardware, precision)
    return BlockSupport(key, 0 if key == "default" else int(calibration.rows_per_block.get(key, 0)))


def with_block_support(frame: pd.DataFrame, support: BlockSupport) -> pd.DataFrame:
    """The frame with ``calibration_block`` and ``calibration_rows`` columns (one block per table)."""
    return frame.assign(calibration_block=support.block, calibration_rows=support.rows)
