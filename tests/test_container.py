"""The container, checked without a Docker engine: what the Dockerfile copies exists and is not
kept out by .dockerignore, the image installs the project from its own pyproject.toml, the
entry point is a command of the installed package and really serves the HEALTHCHECK's URL, the
server runs as a non-root user, and no secret is baked in."""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]+@")


# --- reading the Dockerfile ------------------------------------------------------------------

def instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    text = DOCKERFILE.read_text() if text is None else text
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment or blank line may sit inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def named(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def argv_of(rest: str) -> list[str]:
    """The argv of a CMD, ENTRYPOINT or RUN: exec (JSON) form, or shell form run by sh -c."""
    if rest.startswith("["):
        return json.loads(rest)
    return ["/bin/sh", "-c", rest]


def flags_and_words(rest: str) -> tuple[dict[str, str], list[str]]:
    """A COPY/ADD line's --flags and its sources and destination."""
    words = json.loads(rest) if rest.lstrip().startswith("[") else shlex.split(rest)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def assignments(keyword: str) -> dict[str, str | None]:
    """Names set by ENV or ARG, with their values (None: an ARG without a default)."""
    found: dict[str, str | None] = {}
    for rest in named(keyword):
        words = shlex.split(rest)
        if keyword == "ENV" and words and "=" not in words[0]:  # legacy `ENV NAME value`
            found[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, sep, value = word.partition("=")
            found[name] = value if sep else None
    return found


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image's last stage (the one that runs)."""
    steps = instructions()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return steps[last_from:]


def entry_argv() -> list[str]:
    stage = final_stage()
    entrypoint = [argv_of(rest) for kw, rest in stage if kw == "ENTRYPOINT"]
    cmd = [argv_of(rest) for kw, rest in stage if kw == "CMD"]
    argv = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert argv, "the image has no CMD or ENTRYPOINT"
    return argv


def healthcheck_argv() -> list[str]:
    checks = [rest for kw, rest in final_stage() if kw == "HEALTHCHECK"]
    assert checks, "the image has no HEALTHCHECK"
    options, _, command = checks[-1].partition("CMD")
    assert all(word.startswith("--") for word in shlex.split(options)), checks[-1]
    command = command.strip()
    assert command, "the HEALTHCHECK has no CMD (NONE disables it)"
    return argv_of(command)


# --- reading .dockerignore (the patterns of Docker's own matcher) -----------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((keep, _pattern_regex(pattern)))
    return rules


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out: the last matching rule decides, and a
    pattern that matches a folder matches everything in it."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for keep, regex in ignore_rules():
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not keep
    return verdict


# --- the checks ------------------------------------------------------------------------------

def test_the_parser_reads_what_docker_reads():
    text = "FROM a\n# note\nRUN one \\\n  # inside\n  two\nENV A=1 B=\"x y\"\n"
    assert instructions(text) == [("FROM", "a"), ("RUN", "one  two"), ("ENV", 'A=1 B="x y"')]
    assert _pattern_regex("**/__pycache__").match("service/api/__pycache__")
    assert _pattern_regex("*.egg-info").match("osmanthus.egg-info")
    assert not _pattern_regex("*.egg-info").match("a/osmanthus.egg-info")


def test_base_image_is_a_slim_python_311():
    bases = named("FROM")
    assert bases
    for base in bases:
        image = base.split()[0] if not base.startswith("--") else base.split()[1]
        assert re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11[\w.]*-slim[\w.-]*", image), image


def test_every_copied_path_exists_and_reaches_the_build_context():
    copies = [(kw, rest) for kw, rest in instructions() if kw in ("COPY", "ADD")]
    assert copies
    for kw, rest in copies:
        flags, words = flags_and_words(rest)
        if "from" in flags:  # from another stage: checked there
            continue
        sources = words[:-1]
        assert sources, f"{kw} {rest}: no source"
        for source in sources:
            assert not re.match(r"[a-z]+://", source), f"{kw} {source}: fetches from outside"
            matches = glob.glob(source, root_dir=ROOT)
            assert matches, f"{kw} {source}: no such path in the repository"
            for match in matches:
                assert (ROOT / match).resolve().is_relative_to(ROOT), f"{match} is outside"
                assert not ignored(match), f"{kw} {match}: .dockerignore keeps it out"


def test_the_image_installs_the_project_from_its_own_files():
    copied = {word.rstrip("/") for kw, rest in instructions() if kw == "COPY"
              for word in flags_and_words(rest)[1][:-1]}
    assert {"pyproject.toml", "README.md"} <= copied  # README.md: the project's readme
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, f"the package {pattern} is not copied"
    installs = [rest for rest in named("RUN") if re.search(r"\bpip\b.*\binstall\b", rest)]
    assert installs, "no pip install"
    for rest in installs:
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if "pip" not in " ".join(words[:3]) or "install" not in words:
                continue
            targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
            assert targets == ["."], f"pip installs {targets}, not the project itself: {rest}"


def test_the_server_runs_as_a_non_root_user():
    stage = final_stage()
    users = [(i, rest.split(":")[0]) for i, (kw, rest) in enumerate(stage) if kw == "USER"]
    assert users, "no USER: the server would run as root"
    position, user = users[-1]
    assert user not in ("root", "0"), f"USER {user}"
    created = " ".join(rest for kw, rest in stage[:position] if kw == "RUN")
    assert re.search(rf"\b(useradd|adduser)\b[^&;]*\b{re.escape(user)}\b", created), (
        f"the user {user} is never created")


def _health_url() -> str:
    argv = healthcheck_argv()
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(argv))
    assert len(urls) == 1, f"the HEALTHCHECK should ask one URL: {argv}"
    return urls[0]


def test_healthcheck_asks_healthz_on_the_exposed_port_without_curl():
    argv = healthcheck_argv()
    url = urlparse(_health_url())
    assert url.path == "/healthz"
    assert url.hostname in ("127.0.0.1", "localhost")
    exposed = {word.split("/")[0] for rest in named("EXPOSE") for word in rest.split()}
    assert exposed == {"8000"}
    assert str(url.port) in exposed
    assert argv[0] in ("python", "python3"), "the slim image has no curl or wget: use python"
    assert argv[1] == "-c"
    ast.parse(argv[2])  # the check itself is valid Python


def test_no_secret_is_baked_into_the_image():
    for keyword in ("ENV", "ARG"):
        for name, value in assignments(keyword).items():
            if SECRET_NAME.search(name):
                assert not value, f"{keyword} {name} carries a value: pass it at run time"
            assert not URL_WITH_PASSWORD.search(value or ""), f"{keyword} {name} holds a password"
    baked = assignments("ENV")
    for name in ("DATABASE_URL", "REDIS_URL", "OSMANTHUS_PERSON_KEY", "OSMANTHUS_JWT_SECRET",
                 "OSMANTHUS_CONSENT_KEY", "OSMANTHUS_AUDIT_KEY", "OSMANTHUS_SECRETS_FILE"):
        assert name not in baked, f"{name} belongs to the deployment, not the image"


def test_the_image_defaults_to_production():
    """A container started without its secrets must refuse to start, not invent some."""
    assert assignments("ENV").get("OSMANTHUS_ENV") == "production"


def test_dockerignore_keeps_out_the_venv_var_git_and_caches():
    for path in (".venv/bin/python", "var/demo/osmanthus.db", "var/registry/registry.json",
                 ".git/HEAD", "service/__pycache__/app.cpython-311.pyc", ".pytest_cache/README.md",
                 "osmanthus.egg-info/PKG-INFO", ".hypothesis/examples", "bench/RESULTS.md"):
        assert ignored(path), f".dockerignore lets {path} into the build context"
    for path in ("pyproject.toml", "README.md", "service/wsgi.py", "service/rights/perks.json",
                 "features/catalog.py", "model/registry.py"):
        assert not ignored(path), f".dockerignore keeps out {path}, which the image needs"


def test_the_entry_point_is_a_command_of_the_installed_package():
    argv = entry_argv()
    assert find_spec("gunicorn") is not None, "gunicorn is not installed"
    if argv[0] == "osmanthus":
        scripts = {ep.name: ep for ep in metadata.entry_points(group="console_scripts")}
        assert "osmanthus" in scripts, "the osmanthus command is not installed"
        main = scripts["osmanthus"].load()
        assert argv[1] in main.commands, f"osmanthus has no command {argv[1]}"
        command = main.commands[argv[1]]
        command.make_context(argv[1], list(argv[2:]))  # the arguments parse
        from service.cli.service import gunicorn_command

        served = gunicorn_command("0.0.0.0", 8000, None, None, 120)[0]
        app_spec = served[-1]
    else:
        assert argv[0] == "gunicorn" or argv[:3] == ["python", "-m", "gunicorn"] or "gunicorn" in \
            " ".join(argv), f"the entry point is not gunicorn: {argv}"
        app_spec = next(word for word in argv if re.fullmatch(r"[\w.]+:\w+", word))
    module, attribute = app_spec.split(":")
    spec = find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not importable"
    tree = ast.parse(Path(spec.origin).read_text())
    assert any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == attribute
                                                    for t in node.targets)
               for node in tree.body), f"{module} defines no {attribute}"


def test_the_package_ships_every_data_file_the_server_reads():
    """`pip install .` (not editable, as in the image) copies only the package-data patterns:
    a page's script or a migration template left out works in development and breaks in the
    container."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools.get("package-data", {})
    missing = []
    for package_root in setuptools["packages"]["find"]["include"]:
        for path in sorted((ROOT / package_root.rstrip("*")).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            package = ".".join(path.parent.relative_to(ROOT).parts)
            wanted = patterns.get("*", []) + patterns.get(package, [])
            if not any(Path(path.name).match(pattern) for pattern in wanted):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, ("[tool.setuptools.package-data] leaves out of the installed package: "
                         + ", ".join(missing))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_entry_point_serves_what_the_healthcheck_asks(tmp_path):
    """Run the image's CMD as the image would (its ENV, the user's environment for the rest),
    on a free port, and pass the image's own HEALTHCHECK command."""
    argv = entry_argv()
    port = _free_port()
    assert argv[0] == "osmanthus"
    argv = [str(Path(sys.executable).parent / "osmanthus"), *argv[1:]]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSMANTHUS_", "DATABASE_",
                                                                      "REDIS_"))}
    env.update({k: v or "" for k, v in assignments("ENV").items()})
    env.update({"WEB_CONCURRENCY": "1", "OSMANTHUS_REGISTRY": str(tmp_path / "registry"),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'osmanthus.db'}",
                "OSMANTHUS_PERSON_KEY": "container-test-key"})
    # The image's production default needs PostgreSQL and real secrets (refusing to start
    # without them is tested above); this run is about the entry point and health check, so it
    # overrides the mode the way a developer running the image locally would.
    env.update({"OSMANTHUS_ENV": "development",
                "OSMANTHUS_SECRETS_FILE": str(tmp_path / "secrets.json")})
    check = healthcheck_argv()
    check = [sys.executable, *check[1:-1], check[-1].replace(_health_url(),
                                                              f"http://127.0.0.1:{port}/healthz")]
    server = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, healthy = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            healthy = subprocess.run(check, capture_output=True, text=True, timeout=10)
            if healthy.returncode == 0:
                break
            time.sleep(0.5)
        assert server.poll() is None, "the server stopped:\n" + server.stdout.read().decode()
        assert healthy is not None and healthy.returncode == 0, healthy and healthy.stderr
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # gunicorn's master stops its workers
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
