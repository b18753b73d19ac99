"""Commands for the running service: `ingest`, `audit seal|verify`, `token`, `partners`, `rescore`,
`serve`."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from features.records import Source
from service.base.config import Config


def _engine(config: Config):
    """The store, migrated; an unreachable database is a one-line error, not a traceback."""
    from sqlalchemy.exc import OperationalError

    from service.store.tables import make_engine, migrate

    engine = make_engine(config.database_url)
    try:
        migrate(engine)
    except OperationalError as error:
        engine.dispose()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise click.ClickException(f"the store cannot be reached: {reason}") from None
    return engine


@click.command()
@click.argument("feed", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", required=True, type=click.Choice([s.value for s in Source]),
              help="Which record source the feed holds (one source per file).")
@click.option("--rescore/--no-rescore", default=True, show_default=True,
              help="Re-score the people whose records changed (when a champion serves).")
def ingest(feed: str, source: str, rescore: bool) -> None:
    """Validate FEED and store its good rows; bad rows are quarantined with their reasons.

    Safe to repeat: re-sending a feed, or one that was cut off halfway, never duplicates or
    loses a record. People whose records changed are re-scored as of today."""
    from features.validate import FeedError
    from service.scoring.everyone import rescore_store
    from service.store.ingest import IngestError, ingest_feed

    config = Config.from_env()
    engine = _engine(config)
    try:
        summary = ingest_feed(engine, feed, source, retry_seconds=config.ingest_retry_seconds)
    except (FeedError, IngestError) as error:  # IngestError: the database stayed away
        raise click.ClickException(str(error)) from None
    for line in summary.lines():
        click.echo(line)
    if not (rescore and summary.changed_persons):
        return
    try:
        run = rescore_store(config, engine, sorted(summary.changed_persons))
    except LookupError as error:
        click.echo(f"  not re-scored: {error}", err=True)
        return
    click.echo(f"  re-scored:   {run.scored} as of {run.as_of} with {run.model_version}")


@click.group()
def audit() -> None:
    """The audit log: a Merkle log with signed tree heads (issue 15)."""


@audit.command("seal")
@click.option("--follow", is_flag=True, help="Keep sealing until interrupted.")
@click.option("--every", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between seals with --follow.")
@click.option("--batch", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Entries per transaction and signed tree head.")
def audit_seal(follow: bool, every: float, batch: int) -> None:
    """Put the appended audit entries into the Merkle tree and sign a tree head.

    One sequencer at a time: when another holds the lock this one says so and exits 0 (with
    --follow it waits its turn). Safe to kill at any point: a seal commits whole or not at
    all, and the next run carries on."""
    import signal
    import threading

    from service.base.clock import clock_of
    from service.rights import sequencer

    config = Config.from_env()
    keys = _audit_keys(config)
    if keys.private is None:
        raise click.ClickException("sealing needs the audit signing key: set "
                                   "OSMANTHUS_AUDIT_KEY (an Ed25519 private key, PEM)")
    engine = _engine(config)
    if follow:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        click.echo(f"sealing the audit log every {every:g} s (key {keys.kid}); Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            sequencer.run(engine, keys, every, stop, clock_of(config))
        return
    try:
        head = sequencer.seal(engine, keys, batch=batch, clock=clock_of(config))
    except sequencer.LockHeld:
        click.echo("another sequencer holds the lock and is sealing now; nothing to do")
        return
    if head is None:
        click.echo("nothing to seal")
    else:
        click.echo(f"sealed: tree size {head.tree_size}, root {head.root_hash.hex()}, "
                   f"key {head.key_id}")


def _audit_keys(config: Config):
    from service.base.keys import audit_keys_of

    try:
        return audit_keys_of(config)
    except ValueError as error:
        raise click.ClickException(f"the audit key is not usable: {error}") from None


@audit.command("verify")
def audit_verify() -> None:
    """Check the whole audit log: every signed tree head, every entry's leaf hash, dense leaf
    indexes, the root at every head's size and every stored node. Exit 1 naming the first
    problem; entries not yet sealed are counted, not a problem."""
    from service.rights.transparency import verify_log

    config = Config.from_env()
    keys = _audit_keys(config)
    if not keys.public:
        raise click.ClickException("no audit public key: set OSMANTHUS_AUDIT_KEY or "
                                   "OSMANTHUS_AUDIT_PREVIOUS")
    verdict = verify_log(_engine(config), keys.public)
    summary = (f"{verdict.entries} sealed entries, {verdict.heads} signed tree heads, "
               f"{verdict.unsealed} not yet sealed")
    if verdict.ok:
        click.echo(f"audit log verifies: {summary}")
        return
    click.echo(f"audit log does NOT verify: {verdict.problem} ({summary} checked)", err=True)
    raise SystemExit(1)


@click.command()
@click.argument("role", type=click.Choice(["citizen", "admin"]))
@click.argument("subject")
@click.option("--minutes", type=int, default=24 * 60, show_default=True)
def token(role: str, subject: str, minutes: int) -> None:
    """Issue a development token (refused by a production deployment).

    SUBJECT is a person key (or an 18-character resident ID, turned into its person key here
    and never stored) for a citizen, or a name for an admin. Partners use API keys instead:
    `osmanthus partners add`."""
    from service.rights.auth import SUBJECT, issue_token

    config = Config.from_env()
    if config.production:
        raise click.ClickException("development tokens cannot be issued in production")
    if role == "citizen":
        subject = _person_key(subject)
    elif not SUBJECT["admin"].fullmatch(subject):
        raise click.BadParameter("an admin name of 1 to 64 letters, digits or ._@-",
                                 param_hint="SUBJECT")
    click.echo(issue_token(config, role, subject, minutes=minutes, development=True))


def _person_key(subject: str) -> str:
    import re

    from features.identity import InvalidResidentId, person_key

    if re.fullmatch(r"[0-9a-f]{64}", subject):
        return subject
    if len(subject) == 18:
        try:
            return person_key(subject)
        except InvalidResidentId as error:
            raise click.BadParameter(str(error), param_hint="SUBJECT") from None
    raise click.BadParameter("a person key (64 hex digits) or an 18-character resident ID",
                             param_hint="SUBJECT")


@click.group()
def partners() -> None:
    """Partner services and their API keys (stored hashed; a key is shown once)."""


@partners.command("add")
@click.argument("partner_id")
@click.option("--name", required=True, help="The partner's name, for people.")
@click.option("--rotate", is_flag=True, help="Replace the key of an existing partner.")
def partners_add(partner_id: str, name: str, rotate: bool) -> None:
    """Register PARTNER_ID and print its new API key (only its hash is stored)."""
    from service.rights.partners import add_partner

    try:
        key = add_partner(_engine(Config.from_env()), partner_id, name, rotate=rotate)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"partner {partner_id}: API key (shown once, keep it safe):", err=True)
    click.echo(key)


@partners.command("list")
def partners_list() -> None:
    """Registered partners (never their keys)."""
    from service.rights.partners import list_partners

    rows = list_partners(_engine(Config.from_env()))
    if not rows:
        click.echo("no partner registered")
    for row in rows:
        click.echo(f"{row['partner_id']:<20} {row['name']}  (since {row['created_at']:%Y-%m-%d})")


@click.command()
@click.argument("person_keys", nargs=-1)
@click.option("--all", "everyone_", is_flag=True, help="Re-score everyone in the store.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local processes for --all.")
def rescore(person_keys: tuple[str, ...], everyone_: bool, workers: int) -> None:
    """Re-score PERSON_KEYS (or `--all`) with the champion, as of today (OSMANTHUS_AS_OF)."""
    from service.scoring.everyone import rescore_store

    if bool(person_keys) == everyone_:
        raise click.UsageError("give person keys or --all, not both and not neither")
    config = Config.from_env()
    try:
        run = rescore_store(config, _engine(config), list(person_keys) or None, workers=workers)
    except (LookupError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"re-scored {run.scored:,} of {run.people:,} people as of {run.as_of} with "
               f"{run.model_version} in {run.seconds:.1f} s (run {run.run_id})")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="gunicorn workers (default $WEB_CONCURRENCY, else the number of CPUs).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="LightGBM threads per worker (default $OSMANTHUS_NUM_THREADS, else 1).")
@click.option("--timeout", type=click.IntRange(min=10), default=120, show_default=True,
              help="Seconds before a silent worker is restarted (re-scoring a city is long).")
def serve(host: str, port: int, workers: int | None, threads: int | None, timeout: int) -> None:
    """Serve the API under gunicorn (this process becomes gunicorn)."""
    argv, env = gunicorn_command(host, port, workers, threads, timeout)
    try:
        Config.from_env(env).check()
    except Exception as error:  # noqa: BLE001 - ConfigError or a bad value: say it, don't start
        raise click.ClickException(str(error)) from None
    click.echo(f"serving on http://{host}:{port} ({argv[argv.index('--workers') + 1]} workers)",
               err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    execute(argv, env)


def gunicorn_command(host: str, port: int, workers: int | None, threads: int | None,
                     timeout: int) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.setdefault("OSMANTHUS_AUDIT_SEAL_SECONDS", "1")  # served: the log is sealed each second
    workers = workers or int(env.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    if threads is not None:
        env["OSMANTHUS_NUM_THREADS"] = str(threads)
    from service.http_worker import gunicorn_arguments

    http_threads = int(env.get("OSMANTHUS_HTTP_THREADS") or 4)
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers",
            str(workers), "--timeout", str(timeout), "--access-logfile", "-",
            *gunicorn_arguments(http_threads),  # threads that slow clients cannot hold
            "service.wsgi:app"]
    return argv, env


def execute(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with `argv` (tests replace this function)."""
    os.execve(argv[0], argv, env)
