"""``alignkit monitor run`` (judge a log, queue flagged answers for correction) and ``monitor export``."""

from __future__ import annotations

from typing import Any

import typer

from alignkit.cli.common import config_command
from alignkit.monitor.config import CorrectionsExportConfig, MonitorConfig


def _monitor_done(config: MonitorConfig, r: dict[str, Any]) -> str:
    queued = f"; {r['queued']} queued for review in project {config.project!r}" if "queued" in r else ""
    return f"{r['flagged']} of {r['entries']} answers flagged ({r['flag_rate']:.1%}); verdicts in {config.output}{queued}"


def _export_done(config: CorrectionsExportConfig, r: dict[str, Any]) -> str:
    return (
        f"{r['reviewed']} reviewed: {r['corrected']} corrected, {r['accepted']} accepted, {r['rejected']} rejected, "
        f"{r['open']} open; SFT data {r['sft']}, pairs {r['pairs']}"
    )


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Watch a deployed model: judge its answers, people correct the flagged ones.", no_args_is_help=True)
    config_command(
        sub,
        "run",
        MonitorConfig,
        "alignkit.monitor.run:run_monitor",
        done=_monitor_done,
        help="Judge a log; flag and queue bad answers.",
    )
    config_command(
        sub,
        "export",
        CorrectionsExportConfig,
        "alignkit.monitor.run:run_export",
        done=_export_done,
        help="Corrections as SFT data and DPO pairs.",
    )
    app.add_typer(sub, name="monitor")
