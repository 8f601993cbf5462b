"""The CLI contract, checked on the installed ``codemonkeys`` console script run as a subprocess.

Exit codes: 0 done, 1 some instances failed, 2 user error (one line, no
traceback), 130 interrupted (one line: rerun to resume). Every failing case also
checks that the run directory is byte-for-byte what it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codemonkeys.examples import example_instance
from codemonkeys.store import DB_NAME, CallRecord, RunStore
from codemonkeys.testing.fake_server import FakeLLMServer

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("codemonkeys")
ORACLES = [f"models.{stage}.model=oracle" for stage in ("relevance", "ranking", "testing", "editing", "selection")]
IID = "codemonkeys-examples__humansize-1"

pytestmark = pytest.mark.skipif(not CLI.is_file(), reason=f"no installed console script at {CLI}")


def cli(*args: str, env: dict[str, str] | None = None, user: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed script, with this checkout first on the path (as root: optionally as another user)."""
    command = [str(CLI), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=timeout)


def snapshot(path: Path) -> dict[str, str]:
    """Every file and directory under ``path`` with its content hash and mode."""
    if not path.exists():
        return {}
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    found = {}
    for item in sorted(path.rglob("*")):
        rel = str(item.relative_to(path))
        mode = oct(item.stat().st_mode)
        found[rel] = mode if item.is_dir() else f"{mode} {hashlib.sha256(item.read_bytes()).hexdigest()}"
    return found


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, one line on stderr naming the problem, no traceback anywhere."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _archived_run(run: Path) -> Path:
    with RunStore.open(run) as store:
        instance = example_instance()
        store.add_instance(instance.instance_id, instance.repo, instance.model_dump(mode="json"))
        store.record_call(CallRecord("editing", IID, "generation-0", "h1", "anthropic:claude-sonnet-4-5",
                                     input_tokens=1200, output_tokens=300, cost_usd=0.0081, latency_s=1.0, ts=1.0))
        store.add_candidate(f"{IID}/generation/0", IID, "generation", "diff --git a/x b/x\n", "ph", {})
        store.put_selection(IID, f"{IID}/generation/0", "top_vote", {})
        store.set_instance_state(IID, "done", "done")
    return run


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory another user can read (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="cm-cli-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for item in [path, *path.rglob("*")]:
            if not item.is_symlink():
                item.chmod(0o755 if item.is_dir() else 0o644)
        shutil.rmtree(path, ignore_errors=True)


def _other_user() -> int | None:
    """Root ignores permissions: read-only cases then run as ``nobody`` (when setpriv exists)."""
    if os.getuid() != 0:
        return None
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: read-only directories cannot be tested")
    if cli("--help", user=65534, env={"HOME": "/tmp"}).returncode != 0:
        pytest.skip("user nobody cannot run this checkout's CLI (its directories are private)")
    return 65534


def _make_read_only(path: Path) -> None:
    for item in [*path.rglob("*"), path]:
        item.chmod(0o555 if item.is_dir() else 0o444)


# --- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "example"), "Missing option '--run-dir'"),
        (("run", "example", "--run-dir", "x", "--bogus"), "No such option: --bogus"),
        (("status",), "Missing argument"),
        (("nosuchcommand",), "No such command 'nosuchcommand'"),
        (("config", "show", "example", "models.editing.model=openai-compatible:no-server"), "models.editing.model"),
        (("config", "show", "example", "models.ranking.model=vertex:gemini"), "unknown provider 'vertex'"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], needle: str) -> None:
    assert_user_error(cli(*args), needle)


def test_help_documents_the_exit_codes() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for line in ("0  everything asked for finished", "1  finished, but some instances failed", "130  interrupted"):
        assert line in result.stdout


# --- read-only, archived and damaged run directories ------------------------------------------------


def _reading_commands(run: Path, out: Path) -> list[tuple[str, ...]]:
    return [
        ("status", str(run)), ("status", str(run), "--json"),
        ("costs", str(run)), ("costs", str(run), "--json"),
        ("export", str(run), "--output", str(out / "preds.jsonl")),
        ("report", str(run), "--output", str(out / "report.html")),
        ("show", str(run), IID), ("show", str(run), IID, "--json"),
    ]


def test_reading_commands_work_on_a_read_only_archived_run_and_change_nothing(workdir: Path) -> None:
    user = _other_user()
    run = _archived_run(workdir / "archived")
    out = workdir / "out"
    out.mkdir()
    out.chmod(0o777)
    _make_read_only(run)
    before = snapshot(run)
    for args in _reading_commands(run, out):
        result = cli(*args, user=user, env={"HOME": str(out)})
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert snapshot(run) == before, args
    assert IID in (out / "preds.jsonl").read_text()


def test_reading_commands_leave_a_writable_run_dir_byte_for_byte(workdir: Path) -> None:
    run = _archived_run(workdir / "run")
    before = snapshot(run)
    for args in _reading_commands(run, workdir):
        assert cli(*args).returncode == 0, args
    assert snapshot(run) == before  # no -wal/-shm, no schema script, no WAL switch


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_one_line_naming_the_file_for_every_command(workdir: Path, damage: str) -> None:
    run = _archived_run(workdir / "run")
    db = run / DB_NAME
    data = db.read_bytes()
    db.write_bytes(b"\x00garbage, not SQLite" * 300 if damage == "garbage" else data[: len(data) // 3])
    before = snapshot(run)
    for args in [*_reading_commands(run, workdir), ("run", "example", "--dataset", "example", "--run-dir", str(run))]:
        line = assert_user_error(cli(*args), str(db), "damaged", "move it away")
        assert snapshot(run) == before, (args, line)


def test_a_read_only_run_cannot_be_continued_and_says_so(workdir: Path) -> None:
    user = _other_user()
    run = _archived_run(workdir / "run")
    _make_read_only(run)
    before = snapshot(run)
    result = cli("run", "example", "--dataset", "example", "--run-dir", str(run), *ORACLES, user=user, env={"HOME": str(workdir)})
    assert_user_error(result, str(run), "read-only")
    assert snapshot(run) == before


def test_a_read_only_parent_is_one_line(workdir: Path) -> None:
    user = _other_user()
    parent = workdir / "ro"
    parent.mkdir()
    _make_read_only(parent)
    result = cli("run", "example", "--dataset", "example", "--run-dir", str(parent / "run"), user=user, env={"HOME": str(workdir)})
    assert_user_error(result, "cannot create run directory", str(parent / "run"))
    assert snapshot(parent) == {}


def test_a_file_given_as_the_run_dir(workdir: Path) -> None:
    path = workdir / "a-file"
    path.write_text("not a run\n")
    for args in (("run", "example", "--dataset", "example", "--run-dir", str(path)), ("status", str(path)), ("costs", str(path))):
        assert_user_error(cli(*args), str(path))
    assert path.read_text() == "not a run\n"


def test_unknown_grouping_is_a_user_error(workdir: Path) -> None:
    run = _archived_run(workdir / "run")
    assert_user_error(cli("costs", str(run), "--by", "colour"), "--by must be one of")


# --- datasets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("bad.parquet", b"PAR1 this is not parquet at all", ("bad.parquet", "not a readable parquet file")),
        ("bad.json", b'[{"instance_id": "a\tb"}]', ("bad.json", "line 1 column", "Invalid control character")),
        ("bad.jsonl", b'{"instance_id": "a"}\n{"instance_id": \n', ("bad.jsonl", "line 2 column")),
        ("empty.jsonl", b"", ("empty.jsonl", "has no instances")),
        ("empty.json", b"[]", ("empty.json", "has no instances")),
    ],
)
def test_bad_datasets_are_one_line(workdir: Path, name: str, content: bytes, needles: tuple[str, ...]) -> None:
    dataset = workdir / name
    dataset.write_bytes(content)
    run = workdir / "run"
    assert_user_error(cli("run", "example", "--dataset", str(dataset), "--run-dir", str(run), *ORACLES), *needles)
    assert not (run / DB_NAME).exists()


# --- preflight ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_preflight_fails_before_any_repository_image_or_call(workdir: Path) -> None:
    run = workdir / "run"
    base = ["run", "example", "--dataset", "example", "--run-dir", str(run), *ORACLES]
    with FakeLLMServer(models=["served-model"]) as server:
        url = server.openai_base_url
        started = time.monotonic()
        assert_user_error(cli(*base, f"models.relevance.model=openai-compatible:typo@{url}"), "models.relevance.model", "does not serve 'typo'", "served-model")
        assert time.monotonic() - started < 30
        assert server.request_count == 0  # /models is not a model call
    down = f"http://127.0.0.1:{_free_port()}/v1"
    assert_user_error(cli(*base, f"models.ranking.model=openai-compatible:m@{down}"), "models.ranking.model", "no answer from", down)
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    result = subprocess.run([str(CLI), *base, "models.editing.model=anthropic:claude-sonnet-4-5"], capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert_user_error(result, "ANTHROPIC_API_KEY")
    assert not (run / DB_NAME).exists() and not (run / "repos").exists()


def test_context_and_select_preflight_too(workdir: Path) -> None:
    down = f"http://127.0.0.1:{_free_port()}/v1"
    run = _archived_run(workdir / "run")
    before = snapshot(run)
    result = cli("select", str(run), "--set", f"models.selection.model=openai-compatible:m@{down}")
    assert_user_error(result, "models.selection.model", "no answer from")
    assert snapshot(run) == before
    fresh = workdir / "fresh"
    result = cli("context", "--dataset", "example", "--run-dir", str(fresh), *ORACLES, f"models.relevance.model=openai-compatible:m@{down}")
    assert_user_error(result, "models.relevance.model", "no answer from")
    assert not (fresh / DB_NAME).exists()


# --- interrupted --------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_with_the_rerun_line_and_no_asyncio_noise(workdir: Path) -> None:
    run = workdir / "run"
    with FakeLLMServer(latency_s=8.0) as server:
        command = [str(CLI), "run", "example", "--dataset", "example", "--run-dir", str(run), *ORACLES,
                   "models.relevance.model=anthropic:slow", f"providers.anthropic.base_url={server.anthropic_base_url}",
                   f"environment.cache_dir={workdir / 'cache'}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ANTHROPIC_API_KEY": "test-key"}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 120
            while server.request_count == 0 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() is None and server.request_count > 0, "the run never called the slow model"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    for noise in ("Traceback", "Task exception was never retrieved", "KeyboardInterrupt", "CancelledError"):
        assert noise not in err + out, err
    status = cli("status", str(run), "--json")
    assert status.returncode == 0 and IID in status.stdout  # the store is intact for the rerun


# --- finished, some instances failed ------------------------------------------------------------------


def test_a_run_whose_instance_fails_exits_1(workdir: Path) -> None:
    """The relevance model answers nonsense: the context stage fails the instance (no sandbox needed)."""
    run = workdir / "run"
    with FakeLLMServer(responder=lambda body: "no idea") as server:
        result = cli("run", "example", "--dataset", "example", "--run-dir", str(run), *ORACLES,
                     "models.relevance.model=anthropic:nonsense", f"providers.anthropic.base_url={server.anthropic_base_url}",
                     f"environment.cache_dir={workdir / 'cache'}", env={"ANTHROPIC_API_KEY": "test-key"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "0 of 1 instance(s) done" in result.stderr
    status = cli("status", str(run), "--json")
    assert status.returncode == 0 and '"status": "failed"' in status.stdout
    # A rerun leaves the model-failed instance alone, and still says the run has a failure.
    again = cli("run", "example", "--dataset", "example", "--run-dir", str(run), *ORACLES,
                "models.relevance.model=anthropic:nonsense", "providers.anthropic.base_url=http://127.0.0.1:9/",
                f"environment.cache_dir={workdir / 'cache'}", env={"ANTHROPIC_API_KEY": "test-key"})
    assert again.returncode == 1, again.stderr
    assert "failed before and are left alone" in again.stderr and "Traceback" not in again.stderr


def test_hub_warnings_reach_the_terminal_once(capsys: pytest.CaptureFixture[str]) -> None:
    """The hub client has its own handler; the CLI's root handler must not print its records again."""
    import logging

    from codemonkeys.swebench.instances import _hub_logs_once

    hub = logging.getLogger("huggingface_hub")
    own = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    ours = logging.StreamHandler(sys.stderr)
    hub.addHandler(own)
    root.addHandler(ours)
    try:
        with _hub_logs_once():
            logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    finally:
        hub.removeHandler(own)
        root.removeHandler(ours)
    assert capsys.readouterr().err.count("Retrying in 1s") == 1
    assert hub.propagate  # restored


@pytest.fixture(scope="module")
def older_typer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """typer 0.12 over the separate ``click`` 8.1 package (a fresh install gets typer 0.29 with click bundled)."""
    target = tmp_path_factory.mktemp("older-typer")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), "typer==0.12.5", "click==8.1.7"],
        capture_output=True, text=True, timeout=300,
    )
    if installed.returncode != 0:
        pytest.skip(f"cannot install typer 0.12 / click 8.1: {installed.stderr.strip()[-200:]}")
    return target


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "example"), "Missing option '--run-dir'"),
        (("run", "example", "--run-dir", "x", "--bogus"), "No such option: --bogus"),
        (("nosuchcommand",), "No such command 'nosuchcommand'"),
    ],
)
def test_usage_errors_are_one_line_under_an_older_typer_and_click(older_typer: Path, args: tuple[str, ...], needle: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(older_typer), str(ROOT)])}
    probe = subprocess.run([sys.executable, "-c", "import typer, click; print(typer.__version__, click.__version__)"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.stdout.split() == ["0.12.5", "8.1.7"]
    result = subprocess.run([sys.executable, "-m", "codemonkeys", *args], capture_output=True, text=True, env=env, timeout=120)
    assert_user_error(result, needle)
