"""Modal's ``SchedulerPlacement`` (regions, zones, spot): no meaning on a Ray cluster,
whose nodes are where they are; accepted and ignored, as docs/modal.md says."""

from __future__ import annotations

__all__ = ["SchedulerPlacement"]


class SchedulerPlacement:
    def __init__(self, region: str | list[str] | None = None, zone: str | None = None,
                 spot: bool | None = None, instance_type: str | list[str] | None = None) -> None:
        self.region = region
        self.zone = zone
        self.spot = spot
        self.instance_type = instance_type
