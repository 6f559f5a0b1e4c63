"""Records from a W&B project: ``kdsuite table --source wandb:ENTITY/PROJECT``.

Role in the flow: the other source of tables and plots beside the local run records. Each finished
W&B run (as :mod:`kdsuite.analysis.wandb_log` logged it; the fields are decoded with the writer's own codec,
:mod:`kdsuite.analysis.wandb_codec`) converts into the same record dict shape as
``record.json`` (identity fields, ``metrics``, optionally ``history``), so :mod:`kdsuite.analysis.tables` and
:mod:`kdsuite.analysis.plots` never know where a record came from.

How the public API is used (wandb 0.31): ``wandb.Api(timeout=...)`` then
``api.runs("ENTITY/PROJECT", filters=..., order="+created_at", per_page=..., lazy=False)``.

- Filters are applied server side (MongoDB-style): ``state == "finished"`` always, ``group == G``
  when ``--group`` is given, and every ``--tags`` value must be among the run's tags
  (``{"$and": [{"tags": {"$in": [t]}}, ...]}``).
- ``lazy=False`` asks for config and summary inside each page (otherwise every run costs one more
  request when its config is read); ``per_page`` (default 500) sets the page size.
- Runs are iterated lazily, one page at a time (``Runs`` is a paginator), and converted one by one:
  thousands of runs never sit in memory as W&B objects, only as small record dicts.
- A page request that fails with a transient error (timeout, connection error, HTTP 408/429/5xx) is
  retried up to ``retries`` times with exponential back-off; it resumes at the same cursor, so no
  run is skipped or read twice. Access errors (no such entity/project, no permission, no API key)
  raise :class:`WandbSourceError` with what was asked for and what is needed.

What the tests check without a server (tests/test_wandb_source.py): real
``wandb.apis.public.Runs`` / ``Run`` objects built by wandb's own code from GraphQL-shaped
attribute dicts, served by a fake service API in place of wandb-core: the conversion of config,
summary, tags, group and state into records; the filters dict; the ``per_page`` / ``lazy`` /
``order`` arguments; the page variables (``perPage``, ``cursor``) wandb sends for every page; paging
across several pages; the retry of a page after a timeout; access errors; history read through
``Run.history``. What is NOT tested: a real W&B server (authentication, the server's handling of the
filters, its page sizes and rate limits); ``wandb.Api`` construction itself (it verifies the API key
against the server when it is built).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from kdsuite.analysis.wandb_codec import identity_from_config, metrics_from_summary
from kdsuite.core.errors import ConfigError

DEFAULT_PER_PAGE = 500
DEFAULT_TIMEOUT = 60
TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
ACCESS_HTTP = {401, 403, 404}


class WandbSourceError(ConfigError):
    """The W&B source cannot be read (bad path, no access, too many failures)."""


def parse_path(source: str) -> Tuple[str, str]:
    """``wandb:ENTITY/PROJECT`` (or ``ENTITY/PROJECT``) → ``(entity, project)``."""
    path = source[len("wandb:"):] if source.startswith("wandb:") else source
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise WandbSourceError(f"--source {source!r}: a W&B source is written wandb:ENTITY/PROJECT "
                               f"(for example wandb:my-team/kdsuite)")
    return parts[0], parts[1]


def build_filters(group: Optional[str] = None, tags: Sequence[str] = ()) -> Dict[str, Any]:
    """Server-side filters: finished runs, of ``group`` if given, carrying every tag in ``tags``."""
    f: Dict[str, Any] = {"state": "finished"}
    if group:
        f["group"] = group
    if tags:
        f["$and"] = [{"tags": {"$in": [t]}} for t in tags]
    return f


def _http_status(e: BaseException) -> Optional[int]:
    for obj in (getattr(e, "response", None), e):
        for attr in ("http_status", "status_code", "status"):
            v = getattr(obj, attr, None)
            if isinstance(v, int) and v:
                return v
    return None


def is_transient(e: BaseException) -> bool:
    """Timeouts, connection errors and HTTP 408/429/5xx are worth retrying; anything else is not."""
    if isinstance(e, (TimeoutError, ConnectionError)):
        return True
    status = _http_status(e)
    if status in TRANSIENT_HTTP:
        return True
    if status in ACCESS_HTTP:
        return False
    name = type(e).__name__.lower()
    text = str(e).lower()
    return ("timeout" in name or "timed out" in text or "timeout" in text or "deadline" in text
            or "did not respond in time" in text or "connection" in name or "temporarily" in text)


def _access_error(path: str, e: BaseException) -> WandbSourceError:
    return WandbSourceError(
        f"--source wandb:{path}: cannot read the W&B project ({type(e).__name__}: {e}). Needed: an existing "
        f"ENTITY/PROJECT that your API key may read (WANDB_API_KEY or `wandb login`, and WANDB_BASE_URL for "
        f"a private server)")


def make_api(timeout: int = DEFAULT_TIMEOUT):
    try:
        import wandb

        return wandb.Api(timeout=timeout)
    except Exception as e:  # noqa: BLE001 — authentication / network / configuration
        raise WandbSourceError(f"cannot connect to W&B ({type(e).__name__}: {e}); needed: a reachable W&B "
                               f"server and an API key (WANDB_API_KEY or `wandb login`)") from e


def _retrying(fn: Callable[[], Any], what: str, retries: int, backoff: float, sleep: Callable[[float], None]):
    for attempt in range(retries + 1):
        try:
            return fn()
        except (IndexError, StopIteration):
            raise
        except Exception as e:  # noqa: BLE001
            if not is_transient(e) or attempt == retries:
                raise
            delay = backoff * (2 ** attempt)
            import sys

            print(f"[kdsuite] W&B {what}: {type(e).__name__}: {e}; retry {attempt + 1}/{retries} in {delay:.0f}s",
                  file=sys.stderr)
            sleep(delay)


def iter_runs(runs, path: str, retries: int = 4, backoff: float = 2.0,
              sleep: Callable[[float], None] = time.sleep) -> Iterator[Any]:
    """Every run of a ``Runs`` paginator, page by page, retrying a page after a transient error.

    ``runs[i]`` loads pages until run ``i`` is there; a failed page request leaves the paginator at
    the same cursor, so the retry asks for the same page again.
    """
    i = 0
    while True:
        try:
            run = _retrying(lambda: runs[i], f"page of runs from {path}", retries, backoff, sleep)
        except IndexError:
            return
        except WandbSourceError:
            raise
        except Exception as e:  # noqa: BLE001
            if is_transient(e):
                raise WandbSourceError(f"--source wandb:{path}: W&B kept failing after {retries} retries "
                                       f"({type(e).__name__}: {e}); try again later or raise --timeout") from e
            raise _access_error(path, e) from e
        yield run
        i += 1


def _identity(run, config: Dict[str, Any], ident: Dict[str, Any], entity: str, project: str) -> Dict[str, Any]:
    """The record's identity fields: the run's identity block (``ident``), else what its config says."""
    method_cfg = config.get("method") if isinstance(config.get("method"), dict) else {}
    student_cfg = config.get("student") if isinstance(config.get("student"), dict) else {}
    dataset_cfg = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    teachers = ident.get("teachers")
    if teachers is None:
        teachers = [t.get("arch") for t in config.get("teachers") or [] if isinstance(t, dict)]
    return {
        "run_id": ident.get("run_id") or run.id, "config_hash": ident.get("config_hash"), "status": "finished",
        "config": config, "seed": ident.get("seed", config.get("seed")),
        "name": ident.get("name") or config.get("name") or getattr(run, "group", None),
        "method": ident.get("method") or method_cfg.get("name"),
        "category": ident.get("category"), "scheme": ident.get("scheme"),
        "category_title": ident.get("category_title"), "paper": ident.get("paper"),
        "dataset": ident.get("dataset") or dataset_cfg.get("name"),
        "student": ident.get("student") or student_cfg.get("arch"),
        "student_name": ident.get("student_name"), "teachers": list(teachers),
        "teacher_names": ident.get("teacher_names"), "pair": ident.get("pair"),
        "source": "wandb",
        "wandb": {"path": f"{entity}/{project}/{run.id}", "name": run.name, "group": getattr(run, "group", None),
                  "tags": list(getattr(run, "tags", None) or []), "state": run.state},
    }


def _fill_method(rec: Dict[str, Any]) -> None:
    """Category, scheme and paper of a run logged without the identity block, from this checkout's registry."""
    try:
        from kdsuite.methods.registry import CATEGORIES, get_method

        cls = get_method(rec["method"])
        rec["category"], rec["scheme"], rec["paper"] = cls.category, cls.scheme, cls.paper
        rec["category_title"] = CATEGORIES[cls.category].title
    except Exception:  # noqa: BLE001 — a method this checkout does not know
        pass


def _fill_names(rec: Dict[str, Any]) -> None:
    """Display names of the student and teachers and the pair label, where the run did not log them."""
    try:
        from kdsuite import zoo

        name = zoo.display_name
    except Exception:  # noqa: BLE001
        def name(a):
            return a
    rec["student_name"] = rec["student_name"] or (name(rec["student"]) if rec["student"] else None)
    rec["teacher_names"] = rec["teacher_names"] or [name(t) for t in rec["teachers"]]
    rec["pair"] = rec["pair"] or ("+".join(rec["teacher_names"]) + "→" + str(rec["student_name"])
                                  if rec["teacher_names"] else rec["student_name"])


def run_to_record(run, entity: str, project: str, history: bool = False, history_samples: int = 10000
                  ) -> Dict[str, Any]:
    """One W&B ``Run`` → a record dict shaped like ``record.json`` (fields decoded by
    :mod:`kdsuite.analysis.wandb_codec`, filled from the registry and the zoo where the run lacks them)."""
    config = dict(run.config or {})
    summary = dict(run.summary_metrics or {})
    rec = _identity(run, config, identity_from_config(config), entity, project)
    if rec["category"] is None or rec["scheme"] is None:  # runs logged without the identity block
        _fill_method(rec)
    if rec["student_name"] is None or rec["teacher_names"] is None or rec["pair"] is None:
        _fill_names(rec)
    metrics, extra = metrics_from_summary(summary)
    rec.update(extra)
    rec["metrics"] = metrics
    if config.get("export_teacher"):
        rec["teacher_export"] = {"wandb": rec["wandb"]["path"]}
    rec["history"] = []
    if history:
        rows = run.history(samples=history_samples, pandas=False)
        rec["history"] = [{"epoch": row.get("_step"), **{k: v for k, v in row.items() if not k.startswith("_")}}
                          for row in rows]
    return rec


def load_wandb_records(source: str, group: Optional[str] = None, tags: Iterable[str] = (), api=None,
                       per_page: int = DEFAULT_PER_PAGE, timeout: int = DEFAULT_TIMEOUT, retries: int = 4,
                       backoff: float = 2.0, history: bool = False,
                       sleep: Callable[[float], None] = time.sleep) -> Iterator[Dict[str, Any]]:
    """Finished runs of ``wandb:ENTITY/PROJECT`` as records, lazily (a generator)."""
    entity, project = parse_path(source)
    path = f"{entity}/{project}"
    tags = list(tags or [])
    if api is None:
        api = make_api(timeout)
    try:
        runs = api.runs(path, filters=build_filters(group, tags), order="+created_at", per_page=per_page,
                        lazy=False)
    except Exception as e:  # noqa: BLE001
        raise _access_error(path, e) from e
    for run in iter_runs(runs, path, retries=retries, backoff=backoff, sleep=sleep):
        if run.state != "finished":  # the server filter already asks for finished runs; be sure
            continue
        yield run_to_record(run, entity, project, history=history)


def describe_filters(group: Optional[str], tags: List[str]) -> str:
    bits = ["state=finished"] + ([f"group={group}"] if group else []) + [f"tag={t}" for t in tags]
    return ", ".join(bits)
