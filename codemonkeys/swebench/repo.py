"""Git sources of SWE-bench repositories, and copies of them frozen at a base commit.

A source is a local git repository per SWE-bench repo: a mirror directory
(``DIR/<owner>__<repo>``, bare or not, for air-gapped machines) or a clone of
GitHub kept in a cache. From it, :func:`materialize` makes a fresh repository
holding the base commit's ancestry and the tags that point into it, and
nothing else: no later commits, no remotes, no ``FETCH_HEAD``. The tags stay
because setuptools_scm-based projects (pytest, astropy, xarray, matplotlib)
derive their version from them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import git

from ..errors import RepoError

log = logging.getLogger(__name__)

GITHUB_URL = "https://github.com/{repo}.git"
DEFAULT_BRANCH = "main"


def repo_slug(repo: str) -> str:
    """``django/django`` -> ``django__django``."""
    return repo.replace("/", "__")


def _git(cwd: Path | None = None) -> git.Git:
    return git.Git(str(cwd) if cwd else None)


@dataclass(frozen=True, slots=True)
class RepoSource:
    """Where full-history repositories come from: a mirror directory, else GitHub clones in ``cache_dir``."""

    mirror_dir: Path | None = None
    cache_dir: Path | None = None
    github_url: str = GITHUB_URL

    def git_dir(self, repo: str) -> Path:
        """A local repository with the full history of ``repo`` (cloned from GitHub on first use)."""
        slug = repo_slug(repo)
        if self.mirror_dir is not None:
            for candidate in (self.mirror_dir / slug, self.mirror_dir / f"{slug}.git"):
                if candidate.is_dir():
                    return candidate
            raise RepoError(f"no mirror of {repo} in {self.mirror_dir} (expected a git repository at {self.mirror_dir / slug})")
        if self.cache_dir is None:
            raise RepoError(f"no mirror directory and no cache directory to clone {repo} into")
        target = self.cache_dir / f"{slug}.git"
        if not target.is_dir():
            url = self.github_url.format(repo=repo)
            log.info("cloning %s into %s", url, target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{slug}.", dir=self._ensure_cache()))
            try:
                _git().clone("--mirror", "--quiet", url, str(tmp / "repo.git"))
                (tmp / "repo.git").rename(target)
            except git.GitCommandError as exc:
                raise RepoError(f"cannot clone {url}: {exc.stderr.strip() or exc}") from exc
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _ensure_cache(self) -> Path:
        assert self.cache_dir is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.cache_dir

    def ensure_commit(self, repo: str, commit: str) -> Path:
        """The source repository, checked to contain ``commit`` (a GitHub clone is refreshed once)."""
        source = self.git_dir(repo)
        if _has_commit(source, commit):
            return source
        if self.mirror_dir is None:
            try:
                _git(source).fetch("--quiet", "origin")
            except git.GitCommandError as exc:
                raise RepoError(f"cannot update the clone of {repo}: {exc.stderr.strip() or exc}") from exc
            if _has_commit(source, commit):
                return source
        raise RepoError(f"commit {commit} of {repo} is not in {source}")


def _has_commit(source: Path, commit: str) -> bool:
    try:
        _git(source).cat_file("-e", f"{commit}^{{commit}}")
    except git.GitCommandError:
        return False
    return True


def read_file_at(source: Path, commit: str, path: str) -> str:
    """The text of ``path`` at ``commit`` in a source repository; :class:`RepoError` if absent."""
    try:
        return _git(source).show(f"{commit}:{path}", strip_newline_in_stdout=False)
    except git.GitCommandError as exc:
        raise RepoError(f"{path} does not exist at {commit[:12]} in {source}") from exc


def commit_date(source: Path, commit: str) -> datetime:
    """When ``commit`` was committed (UTC): the cut-off for package versions of its environment."""
    try:
        stamp = _git(source).log("-1", "--format=%ct", commit)
    except git.GitCommandError as exc:
        raise RepoError(f"cannot read commit {commit} in {source}: {exc.stderr.strip() or exc}") from exc
    return datetime.fromtimestamp(int(stamp.strip()), tz=UTC)


def resolve_commit(source: Path, commit: str) -> str:
    """The full hash of a (possibly abbreviated) commit."""
    try:
        return _git(source).rev_parse("--verify", f"{commit}^{{commit}}").strip()
    except git.GitCommandError as exc:
        raise RepoError(f"commit {commit} is not in {source}") from exc


def _default_branch(source: Path) -> str:
    try:
        ref = _git(source).symbolic_ref("--quiet", "HEAD").strip()
    except git.GitCommandError:
        return DEFAULT_BRANCH
    return ref.removeprefix("refs/heads/") or DEFAULT_BRANCH


def missing_objects(source: Path, commit: str) -> list[str]:
    """Objects the past of ``commit`` refers to that the source lacks (incomplete mirrors have some)."""
    try:
        listing = _git(source).rev_list("--objects", "--missing=print", commit)
    except git.GitCommandError as exc:
        raise RepoError(f"cannot list the objects of {commit[:12]} in {source}: {exc.stderr.strip() or exc}") from exc
    return [line[1:].strip() for line in listing.splitlines() if line.startswith("?")]


def _paths_missing_in_tree(source: Path, commit: str, missing: set[str]) -> list[str]:
    tree = _git(source).ls_tree("-r", "--full-tree", commit)
    return [line.split("\t", 1)[1] for line in tree.splitlines() if line.split()[2] in missing]


def lacking_files(source: Path, commit: str) -> list[str]:
    """Files of ``commit``'s tree whose contents the source lacks (nothing can build such a commit)."""
    entries = [line for line in _git(source).ls_tree("-r", "--full-tree", commit).splitlines() if line.split()[1] == "blob"]
    if not entries:
        return []
    with tempfile.TemporaryFile("w+b") as batch:
        batch.write(("\n".join(line.split()[2] for line in entries) + "\n").encode())
        batch.flush()
        batch.seek(0)
        checked = _git(source).execute(["git", "cat-file", "--batch-check"], istream=batch)
    missing = {line.split()[0] for line in checked.splitlines() if line.endswith(" missing")}
    return [line.split("\t", 1)[1] for line in entries if line.split()[2] in missing]


def _history_boundary(source: Path, commit: str, missing: set[str]) -> int:
    """A commit time after which no commit of ``commit``'s past holds a missing object.

    A blob last appears in the trees of the parents of the commit that
    replaced it; the newest such replacement is where shallow history starts.
    """
    boundary = 0
    current = 0
    for line in _git(source).log("--raw", "--no-abbrev", "--format=C %ct", commit).splitlines():
        if line.startswith("C "):
            current = int(line.split()[1])
        elif line.startswith(":"):
            fields = line.split()
            if fields[2] in missing or fields[3] in missing:
                boundary = max(boundary, current + (1 if fields[3] in missing else 0))
    return boundary


def materialize(source: Path, base_commit: str, dest: Path) -> Path:
    """Create ``dest`` as a repository at ``base_commit`` holding only its past.

    History after the base commit is not present at all: only the commit's
    ancestry and the tags that point into it are fetched, no remote is
    configured, and the result is checked before it is returned. A mirror that
    lacks some old objects (a pruned data file, say) gives a shallow history
    that starts after the last commit needing them, with the tags in that range.
    """
    if dest.exists() and any(dest.iterdir()):
        raise RepoError(f"cannot materialize into {dest}: it exists and is not empty")
    base = resolve_commit(source, base_commit)
    since: int | None = None
    base_time = int(_git(source).log("-1", "--format=%ct", base).strip())
    while True:
        try:
            _fetch_into(source, base, dest, since)
            break
        except RepoError as exc:
            if "unable to read" not in str(exc) or (since is not None and since >= base_time):
                raise
            shutil.rmtree(dest)
            if since is None:
                since = _shallow_start(source, base)
            else:
                # Merged side branches can still hold a lacking object past the boundary: a year on.
                since = min(since + 365 * 86400, base_time)
            log.warning("%s lacks old objects; history of %s starts at %s", source, base[:12], datetime.fromtimestamp(since, tz=UTC))
    check_no_future(dest, base)
    return dest


def _shallow_start(source: Path, base: str) -> int:
    """Where a shallow copy must start when the mirror lacks objects of ``base``'s past."""
    missing = set(missing_objects(source, base))
    lacking = _paths_missing_in_tree(source, base, missing)
    if lacking:
        raise RepoError(
            f"the mirror {source} lacks {len(lacking)} file(s) of commit {base[:12]} "
            f"({', '.join(lacking[:3])}); fetch a complete mirror"
        )
    return _history_boundary(source, base, missing)


def _fetch_into(source: Path, base: str, dest: Path, since: int | None) -> None:
    """Fetch ``base`` (as the default branch) and the tags into its past into a new repo at ``dest``."""
    tags = _tags_into(source, base, since)
    branch = _default_branch(source)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        repo = git.Repo.init(str(dest), initial_branch=branch)
        refspecs = [f"{base}:refs/heads/{branch}", *(f"+{tag}:{tag}" for tag in tags)]
        depth = [f"--shallow-since={since}"] if since else []
        with tempfile.TemporaryFile("w+b") as specs:
            specs.write(("\n".join(refspecs) + "\n").encode())
            specs.flush()
            specs.seek(0)
            repo.git.execute(
                ["git", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--update-head-ok", *depth, "--stdin", str(source.resolve())],
                istream=specs,
            )
        repo.git.checkout("--quiet", "--force", branch)
        repo.git.reflog("expire", "--expire=now", "--all")
        repo.close()
    except git.GitCommandError as exc:
        raise RepoError(f"cannot materialize {source} at {base[:12]}: {exc.stderr.strip() or exc}") from exc


def _tags_into(source: Path, base: str, since: int | None) -> list[str]:
    """Tags that point into the past of ``base`` (and after ``since``, for a shallow copy)."""
    fmt = "%(refname) %(*committerdate:unix) %(committerdate:unix)"
    try:
        lines = _git(source).for_each_ref("--merged", base, f"--format={fmt}", "refs/tags").splitlines()
    except git.GitCommandError as exc:
        raise RepoError(f"cannot list tags of {source}: {exc.stderr.strip() or exc}") from exc
    tags = []
    for line in lines:
        name, *stamps = line.split()
        when = int(stamps[0]) if stamps and stamps[0].isdigit() else 0
        if since is None or when >= since:
            tags.append(name)
    return tags


def check_no_future(dest: Path, base_commit: str) -> None:
    """Raise :class:`RepoError` if ``dest`` can reach anything that is not in the past of ``base_commit``."""
    repo_git = _git(dest)
    remotes = repo_git.remote().split()
    if remotes:
        raise RepoError(f"{dest} has remotes: {', '.join(remotes)}")
    outside = repo_git.for_each_ref("--no-merged", base_commit, "--format=%(refname)").split()
    if outside:
        raise RepoError(f"{dest} has refs beyond {base_commit[:12]}: {', '.join(outside[:5])}")
    if (dest / ".git" / "FETCH_HEAD").exists() or (dest / "FETCH_HEAD").exists():
        raise RepoError(f"{dest} keeps a FETCH_HEAD")
