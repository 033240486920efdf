"""Commands about hosts rather than jobs: offers, down, login. Registered on the main app."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from agent.protocol import JobState

from launcher.cli.app import app, command, session
from launcher.errors import TetherError, UsageError, provider_errors
from launcher.backends import observe
from launcher.text import inert


@app.command()
@command
def offers(
    gpu: Optional[str] = typer.Option(None, "--gpu", help="e.g. RTX_4090, H100"),
    num_gpus: int = typer.Option(1, "--num-gpus"),
    max_price: Optional[float] = typer.Option(None, "--max-price", help="$/h for the whole host"),
    hours: Optional[float] = typer.Option(None, "--hours", help="to estimate the job's cost"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Live offers from every provider you have a key for, cheapest first, with the job's cost."""
    from rich.table import Table

    from provisioning.base import ProviderError
    from provisioning.registry import RENTED

    from launcher.credentials import api_key
    from launcher.jobs.rent import provider_for, resources_of
    from launcher.spec import HostSpec

    s = session()
    want = resources_of(HostSpec(provider="vast", gpu=gpu, num_gpus=num_gpus, max_price=max_price))
    rows: List[dict] = []
    notes: List[str] = []
    for name in RENTED:
        if not api_key(name, s.places, os.environ):
            notes.append(f"{name}: no API key (tether login {name})")
            continue
        try:
            for o in provider_for(name, s.places, os.environ).offers(want)[:10]:
                rows.append({**o.model_dump(), "job_cost": round(o.price_per_hour * hours, 2) if hours else None})
        except (ProviderError, TetherError) as exc:
            notes.append(f"{name}: {getattr(exc, 'what', exc)}")
    from launcher.backends import quota_line
    line = quota_line(os.environ)
    notes.append(line or "kaggle: no GPU quota figures from Kaggle")
    notes.append("colab: free sessions of up to 12 h: tether colab-cell")
    rows.sort(key=lambda r: r["price_per_hour"])
    if as_json:
        typer.echo(json.dumps({"offers": rows, "notes": notes}, indent=1))
        return
    t = Table(box=None, header_style="bold")
    for col in ("PROVIDER", "OFFER", "GPU", "N", "$/H", "RELIABILITY", "WHERE", "JOB COST"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r["provider"], r["id"], r["gpu"], str(r["num_gpus"]), f"{r['price_per_hour']:.3f}",
                  "-" if r["reliability"] is None else f"{r['reliability']:.3f}", r["location"] or "-",
                  "-" if r["job_cost"] is None else f"${r['job_cost']:.2f}")
    s.console.print(t if rows else "no offers match")
    for n in notes:
        s.console.print(f"  {n}", markup=False)


@app.command()
@command
def down(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    pull_results: bool = typer.Option(True, "--pull/--no-pull", help="pull outputs before destroying"),
) -> None:
    """Stop the job if it runs (final backup), pull its outputs, destroy its rented instance."""
    from launcher.jobs.lifecycle import destroy_instance, pull_and_mark_safe, results_dir

    s = session()
    rec = s.registry.resolve(job)
    if not rec.instance_alive:
        raise UsageError(f"job {rec.id} has no live rented instance", "nothing to take down")
    view = observe([rec], s.places, s.registry, os.environ)[0]
    if view.state not in (JobState.UNREACHABLE, JobState.LOST) and not view.state.is_terminal:
        handle = s.handle(rec.id)
        if handle.stop("stopped by tether down").wait:
            handle.wait_stopped(900)
        view = observe([rec], s.places, s.registry, os.environ)[0]
    if pull_results and view.state != JobState.UNREACHABLE:
        dest = results_dir(s.places, rec)
        n = pull_and_mark_safe(rec, dest, s.ctx, s.console)
        s.console.print(f"pulled {n} file(s) into {dest}")
    destroy_instance(rec, s.places, s.registry, os.environ)
    s.console.print(f"destroyed {inert(rec.instance['provider'])} instance {inert(rec.instance['id'])}")


@app.command()
@command
def login(provider: str = typer.Argument(..., help="vast or novita")) -> None:
    """Store a provider's API key (read from stdin, never from the command line) in a 0600 file."""
    from provisioning.registry import RENTED

    from launcher.credentials import store_api_key

    if provider not in RENTED:
        raise UsageError(f"{provider!r} takes no API key here", f"use one of {', '.join(RENTED)}")
    key = getpass.getpass(f"{provider} API key: ") if sys.stdin.isatty() else sys.stdin.readline()
    if not key.strip():
        raise UsageError("no key given", f"paste your {provider} API key")
    path = store_api_key(provider, key, session().places)
    session().console.print(f"saved the {provider} key in {path} (mode 600)")


@app.command("colab-cell")
@command
def colab_cell(tunnel: str = typer.Option("cloudflared", "--tunnel", help="cloudflared or ngrok")) -> None:
    """Print the notebook cell that makes a Colab (or Kaggle) runtime an SSH host for `attach`."""
    from provisioning.base import ProviderError

    from provisioning.colab import bootstrap_cell, require_cloudflared

    from launcher.credentials import ssh_keypair

    _, public_key = ssh_keypair(session().places)
    with provider_errors(UsageError):
        typer.echo(bootstrap_cell(public_key, tunnel))
    if tunnel == "cloudflared":
        try:
            require_cloudflared()
        except ProviderError as exc:  # the cell is still good; attaching will need it
            typer.echo(f"note: {exc.what} — {exc.todo}", err=True)


@app.command()
@command
def attach(
    spec: Path = typer.Argument(..., help="the job spec (host.provider: colab)"),
    address: str = typer.Argument(..., help="what the cell printed: NAME.trycloudflare.com or HOST:PORT"),
) -> None:
    """Launch the job on a notebook runtime that ran `tether colab-cell`'s cell."""
    from provisioning.colab import endpoint_for

    from launcher.credentials import ssh_keypair
    from launcher.jobs.launch import attach as do_attach
    from launcher.spec import load_spec

    s = session()
    loaded = load_spec(spec, os.environ)
    if loaded.spec.host.provider != "colab":
        raise UsageError(f"{spec}: host.provider is {loaded.spec.host.provider!r}",
                         "attach is for provider colab; use `tether launch` for the others")
    identity, _ = ssh_keypair(s.places)
    with provider_errors(UsageError):
        endpoint = endpoint_for(address, str(identity))
    done = do_attach(loaded, endpoint, s.places, s.registry, s.console, os.environ)
    rec = done.record
    s.console.print(f"launched job [bold]{rec.id}[/] ({rec.name}) on {endpoint} (colab session)")
    s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f    tether pull {rec.id}")


@app.command()
@command
def publish(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    repo: str = typer.Option(..., "--repo", help="user/name on the Hugging Face Hub"),
    private: bool = typer.Option(True, "--private/--public", help="a new repo is private by default"),
    from_host: bool = typer.Option(False, "--from-host", help="upload straight from the GPU host "
                                   "(needs huggingface_hub there)"),
) -> None:
    """Upload the job's exported model (or its outputs) with a model card to the Hub."""
    from launcher.jobs.publishing import publish_results

    s = session()
    done = publish_results(s.registry.resolve(job), s.ctx, repo, private, from_host, s.console)
    where = " from the host" if from_host else ""
    if done.uploaded:
        s.console.print(f"published {done.files} file(s) to {done.url}{where}")
    else:
        s.console.print(f"nothing changed: {done.url} already has these {done.files} file(s)")


@app.command("colab-notebook")
@command
def colab_notebook(
    spec: Path = typer.Argument(..., help="the job spec"),
    out: Path = typer.Option(Path("tether-job.ipynb"), "-o", "--out", help="where to write the notebook"),
) -> None:
    """Write a notebook that runs the job directly in Colab (no tunnel): open it there and run it."""
    from launcher.transfer import sync
    from launcher.backends import colab_notebook as make
    from launcher.backends import notebook_record
    from launcher.jobs.launch import workload_command
    from launcher.spec import load_spec

    loaded = load_spec(spec, os.environ)
    tree = sync.scan(loaded.workdir, sync.hash_cache_for(session().places.cache, loaded.workdir))
    job_id, text = make(loaded, tree, workload_command(loaded.spec, "python3"), os.environ)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    session().registry.add(notebook_record(loaded, job_id, out.resolve()))
    session().console.print(f"wrote {out} (job {job_id}): open it in Colab with a GPU runtime and run it; "
                            f"results land in /content/tether/jobs/{job_id}/outputs/")
