"""Admin commands: `vpet jobs list|show|retry|cancel`, `vpet status`, `vpet rules test`.

Why: kept out of cli.py (which only registers them) so the admin surface stays small and
readable; every command prints a rich table or, with `--json`, one JSON document on stdout.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer

jobs_app = typer.Typer(help="Inspect and steer jobs.", no_args_is_help=True)
rules_app = typer.Typer(help="Routing rules.", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML config file.",
                                         exists=True, dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _config(path: Path | None):
    from dicom_node.config import Config, load_config
    from pipeline.errors import ConfigError

    if path is None:
        return Config()
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None


def _db(path: Path):
    from dicom_node.db import Database

    db = Database(_config(path).database_url)
    db.create_all()  # a fresh node has no tables yet: answer "nothing" rather than crash
    return db


def _emit(data: Any, as_json: bool, render) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


def _console():
    from rich.console import Console

    return Console(width=160)


def _table(title: str, columns: list[str], rows: list[list[Any]]):
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def _admin_call(fn, *args):
    from dicom_node.admin import AdminError

    try:
        return fn(*args)
    except AdminError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _print_job(job: dict) -> None:
    console = _console()
    fields = [[k, v] for k, v in job.items() if k not in ("outputs", "deliveries", "timings")]
    fields.append(["timings", ", ".join(f"{k} {v}" for k, v in job.get("timings", {}).items())])
    console.print(_table(f"Job {job['id']}", ["field", "value"], fields))
    if job.get("outputs"):
        console.print(_table("Outputs", ["kind", "SOP Instance UID", "path"], [
            [o.get("kind"), o.get("sop_instance_uid"), o.get("path")] for o in job["outputs"]]))
    if job.get("deliveries"):
        console.print(_table("Deliveries", ["destination", "SOP Instance UID", "status",
                                            "attempts", "last error"], [
            [d["destination"], d["sop_instance_uid"], d["status"], d["attempts"],
             d["last_error"]] for d in job["deliveries"]]))


@jobs_app.command("list")
def jobs_list(config: ConfigOpt,
              state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
              limit: Annotated[int, typer.Option(min=1)] = 50, as_json: JsonOpt = False) -> None:
    """Newest jobs first."""
    from dicom_node.admin import list_jobs

    jobs = list_jobs(_db(config), state, limit)
    _emit(jobs, as_json, lambda js: _console().print(_table(
        f"Jobs ({len(js)})", ["id", "state", "series", "v", "rule", "recipe", "to", "tries",
                              "reason", "updated"],
        [[j["id"], j["state"], j["series_uid"], j["series_version"], j["rule"], j["recipe"],
          ",".join(j["destinations"]), j["attempts"], j["reason"], j["updated_at"]]
         for j in js])))


@jobs_app.command("show")
def jobs_show(job_id: int, config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """One job: lease, timings, outputs, per-instance deliveries."""
    from dicom_node.admin import show_job

    _emit(_admin_call(show_job, _db(config), job_id), as_json, _print_job)


@jobs_app.command("retry")
def jobs_retry(job_id: int, config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Re-queue a done, failed or dead job (instances already delivered are not re-sent)."""
    from dicom_node.admin import retry_job

    _emit(_admin_call(retry_job, _db(config), job_id), as_json,
          lambda j: typer.echo(f"job {j['id']} re-queued"))


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Cancel a queued, running or sending job (it ends failed, 'cancelled by operator')."""
    from dicom_node.admin import cancel_job

    _emit(_admin_call(cancel_job, _db(config), job_id), as_json,
          lambda j: typer.echo(f"job {j['id']} cancelled ({j['reason']})"))


def _print_status(data: dict) -> None:
    console = _console()
    console.print(_table("Jobs by state", ["state", "count"],
                         [[k, v] for k, v in data["jobs"].items()]))
    console.print(f"queue depth {data['queue_depth']}, active {data['active']}, series "
                  + ", ".join(f"{k} {v}" for k, v in data["series"].items()))
    if data["receiving"]:
        console.print(_table("Series receiving", ["series", "modality", "instances", "v",
                                                  "released", "last received"],
                             [[r["series_uid"], r["modality"], r["instances"], r["version"],
                               r["released"], r["last_received_at"]]
                              for r in data["receiving"]]))
    if data["last_errors"]:
        console.print(_table("Last events", ["at", "kind", "peer", "detail"],
                             [[e["at"], e["kind"], e["peer"], e["detail"]]
                              for e in data["last_errors"]]))
    if data["failed_jobs"]:
        console.print(_table("Failed / dead jobs", ["id", "state", "reason"],
                             [[j["id"], j["state"], j["reason"]] for j in data["failed_jobs"]]))


def status(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Job counts by state, queue depth, series receiving, last error events."""
    from dicom_node.admin import node_status

    _emit(node_status(_db(config)), as_json, _print_status)


def series_in_folder(path: Path) -> dict[str, list]:
    """Headers of every readable DICOM file under `path`, grouped by SeriesInstanceUID."""
    from dicom_node.series_info import read_header

    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    groups: dict[str, list] = defaultdict(list)
    for f in files:
        ds = read_header(f, quiet=True)  # a folder may hold other files
        if ds is not None and "SeriesInstanceUID" in ds:
            groups[str(ds.SeriesInstanceUID)].append((f, ds))
    return groups


def explain_folder(cfg, path: Path, calling_ae: str = "", called_ae: str | None = None,
                   source_address: str = "") -> list[dict[str, Any]]:
    """For each series under `path`: its facts, the rule taking it, why every other did not."""
    from dicom_node.rules import evaluate
    from dicom_node.series_info import count_frames, facts_from_header

    report = []
    for uid, items in series_in_folder(path).items():
        first = items[0][1]
        facts = facts_from_header(first, slice_count=count_frames([f for f, _ in items], first),
                                  calling_ae=calling_ae, source_address=source_address,
                                  called_ae=cfg.node.ae_title if called_ae is None else called_ae)
        verdicts = evaluate(cfg, facts)
        chosen = next((r.name for r, why in verdicts if why is None), None)
        report.append({
            "series_uid": uid, "files": len(items), "facts": dataclasses.asdict(facts),
            "rule": chosen,
            "rules": [{"name": r.name, "priority": r.priority, "matches": why is None,
                       "chosen": r.name == chosen,
                       "reason": why if why is not None else (
                           "matches" if r.name == chosen else "matches, but a rule before it "
                           "took the series")}
                      for r, why in verdicts],
        })
    return report


def _print_rules_report(report: list[dict]) -> None:
    console = _console()
    if not report:
        console.print("no DICOM series found")
    for item in report:
        f = item["facts"]
        console.print(f"[bold]{item['series_uid']}[/bold]  {f['modality']} "
                      f"{f['series_description']!r}, {item['files']} file(s), "
                      f"{f['slice_count']} frame(s) -> "
                      + (f"rule [green]{item['rule']}[/green]" if item["rule"]
                         else "[yellow]no rule: kept, not processed[/yellow]"))
        console.print(_table("", ["rule", "priority", "verdict"], [
            [r["name"], r["priority"], r["reason"]] for r in item["rules"]]))


@rules_app.command("test")
def rules_test(
    path: Annotated[Path, typer.Argument(exists=True, help="Folder (or file) of DICOM files.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", exists=True,
                                                dir_okay=False)] = None,
    calling_ae: Annotated[str, typer.Option(help="Pretend this AE sent the series.")] = "",
    called_ae: Annotated[str | None, typer.Option(help="Called AE (default node.ae_title).")]
    = None,
    source_address: Annotated[str, typer.Option(help="Pretend the series came from here.")]
    = "",
    as_json: JsonOpt = False,
) -> None:
    """Which rule each series in PATH matches, and why the other rules do not."""
    report = explain_folder(_config(config), path, calling_ae, called_ae, source_address)
    _emit(report, as_json, _print_rules_report)
