"""What ``mtquery validate`` reports: one ``Check`` per rule (PASS / FAIL / WARN with a count
and an example) in a ``Report``."""

from __future__ import annotations

from dataclasses import dataclass, field

BATCH_ROWS = 32_768
DEFAULT_TOLERANCE_KM = 2.0
KM_PER_DEG = 111.32

CHECKS = ("columns", "geo_metadata", "readable", "dimension", "vectors", "zero_vectors",
          "timestamp",
          "geometry_valid", "geometry_in_cell", "cell_rowcol", "unique_id")
#: checks whose failures are reported as WARN: queries still work, the data should be fixed
WARN_CHECKS = ("timestamp", "zero_vectors")
TIME_FORMS = "S2 style 20200717T105031 or ISO 8601"


@dataclass
class Check:
    name: str
    failures: int = 0
    checked: int = 0
    example: str | None = None
    skipped: str | None = None
    level: str = "FAIL"  # the status when something failed: FAIL, or WARN

    def fail(self, count: int, example: str) -> None:
        if count:
            self.failures += count
            if self.example is None:
                self.example = example

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        return "PASS" if self.failures == 0 else self.level


@dataclass
class Report:
    files: list[str]
    rows: int = 0
    dims: dict[int, str] = field(default_factory=dict)  # length -> first file with it
    dim_rows: dict[int, int] = field(default_factory=dict)  # length -> rows
    dim_example: dict[int, str] = field(default_factory=dict)  # length -> "unique_id X in F"
    checks: dict[str, Check] = field(default_factory=lambda: {
        n: Check(n, level="WARN" if n in WARN_CHECKS else "FAIL") for n in CHECKS})
    pixel_bbox_order: str | None = None

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(c.status != "FAIL" for c in self.checks.values())

    @property
    def warnings(self) -> list[str]:
        return [c.name for c in self.checks.values() if c.status == "WARN"]

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "files": self.files, "rows": self.rows,
            "dims": sorted(self.dims), "pixel_bbox_order": self.pixel_bbox_order,
            "checks": [{"check": c.name, "status": c.status, "failures": c.failures,
                        "checked": c.checked, "example": c.example or c.skipped}
                       for c in self.checks.values()],
        }
