"""The W&B table source against wandb's own ``Api.runs`` / ``Runs`` / ``Run`` objects.

No W&B server is reachable here, so the GraphQL service behind ``wandb.Api`` is replaced by a small
fake that answers the ``Runs`` and ``RunFullHistory`` queries wandb sends, with GraphQL-shaped run
nodes (config as ``{key: {"value": v}}`` JSON, summaryMetrics JSON, tags, group, state). Everything
above the transport — ``Api.runs``, the paginator's page variables and cursors, ``Run``'s parsing of
config and summary, ``Run.history`` — is wandb's real code. Not covered: a real server (auth, its
evaluation of the filters, rate limits).
"""
import json

import pytest
import wandb

from kdsuite.analysis.cli_table import render_table
from kdsuite.analysis.wandb_source import WandbSourceError, build_filters, load_wandb_records
from kdsuite.cli import main


class FakeService:
    """Answers wandb's GraphQL queries from a list of run nodes; records every request."""

    def __init__(self, nodes, history=None, fail_first_pages=0, missing_project=False):
        self.nodes, self.history = nodes, history or {}
        self.requests, self.fail_left, self.missing = [], fail_first_pages, missing_project

    def execute_graphql(self, query, variables=None, parse=None, **_):
        variables = dict(variables or {})
        self.requests.append((query.split("(")[0].split()[-1], variables))
        if "RunFullHistory" in query:
            return {"project": {"run": {"history": [json.dumps(h) for h in self.history.get(variables["name"], [])]}}}
        if self.fail_left:
            self.fail_left -= 1
            raise TimeoutError("the W&B server did not respond in time")
        if self.missing:
            return {"project": None}
        start = int(variables.get("cursor") or 0)
        page = self.nodes[start:start + variables["perPage"]]
        return {"project": {"internalId": "p1", "runCount": len(self.nodes), "readOnly": True, "runs": {
            "edges": [{"node": n, "cursor": str(start + i + 1)} for i, n in enumerate(page)],
            "pageInfo": {"endCursor": str(start + len(page)), "hasNextPage": start + len(page) < len(self.nodes)}}}}


def make_api(service):
    # wandb.Api() authenticates against the server when built: set the fields its __init__ would
    api = object.__new__(wandb.Api)
    api.settings = {"base_url": "https://example.invalid", "entity": None, "project": None, "organization": None}
    api.api_key, api._viewer, api._default_entity, api._timeout = None, None, "team", 60
    api._projects, api._runs, api._sweeps, api._reports = {}, {}, {}, {}
    api._service_api = service
    return api


def node(i, method="kd", seed=0, top1=70.0, state="finished", pair="resnet32x4→resnet8x4", dataset="cifar100"):
    teachers = [] if method == "vanilla" else ["cifar_resnet32x4"]
    config = {"name": "g", "seed": seed, "method": {"name": method}, "student": {"arch": "cifar_resnet8x4"},
              "dataset": {"name": dataset}, "kdsuite": {
                  "run_id": f"h{i}", "config_hash": f"h{i}", "name": "g", "method": method,
                  "category": "baseline" if method == "vanilla" else "response",
                  "scheme": "offline", "dataset": dataset, "student": "cifar_resnet8x4", "student_name": "resnet8x4",
                  "teachers": teachers, "teacher_names": ["resnet32x4"] if teachers else [],
                  "pair": pair if teachers else "resnet8x4", "seed": seed}}
    summary = {"final/status": "finished", "final/last_top1": top1, "final/best_top1": top1 + 0.5,
               "final/teacher_top1": 79.0 if teachers else None, "_step": 3}
    if teachers:
        summary["final/teacher_top1/0"] = 79.0
    return {"id": f"storage{i}", "name": f"run{i}", "displayName": f"kd-s{seed}", "state": state, "group": "g",
            "tags": ["response", method], "config": json.dumps({k: {"value": v} for k, v in config.items()}),
            "summaryMetrics": json.dumps(summary), "projectId": 1, "createdAt": "2026-01-01T00:00:00",
            "heartbeatAt": "2026-01-01T00:00:00", "user": {"name": "u", "username": "u"}}


def test_filters_are_built_for_the_server():
    assert build_filters() == {"state": "finished"}
    assert build_filters("grid1", ["kd", "cifar100"]) == {
        "state": "finished", "group": "grid1", "$and": [{"tags": {"$in": ["kd"]}}, {"tags": {"$in": ["cifar100"]}}]}


def test_runs_convert_page_by_page_through_wandbs_paginator():
    nodes = [node(i, method="vanilla" if i < 2 else "kd", seed=i % 2, top1=60.0 + i) for i in range(5)]
    svc = FakeService(nodes)
    recs = list(load_wandb_records("wandb:team/proj", group="g", tags=["response"], api=make_api(svc), per_page=2))
    runs_requests = [v for name, v in svc.requests if name == "Runs"]
    # 5 runs at 2 per page: three page requests, each sending the page size and the previous page's cursor
    assert [(v["perPage"], v["cursor"]) for v in runs_requests] == [(2, None), (2, "2"), (2, "4")]
    assert json.loads(runs_requests[0]["filters"]) == build_filters("g", ["response"])
    assert runs_requests[0]["order"] == "+created_at" and runs_requests[0]["entity"] == "team"
    assert [r["metrics"]["last_top1"] for r in recs] == [60.0, 61.0, 62.0, 63.0, 64.0]
    kd = recs[2]
    assert kd["method"] == "kd" and kd["category"] == "response" and kd["teachers"] == ["cifar_resnet32x4"]
    assert kd["metrics"]["teacher_top1"] == [79.0] and kd["metrics"]["best_top1"] == 62.5
    assert kd["wandb"]["path"] == "team/proj/run2" and kd["config"]["method"] == {"name": "kd"}
    assert "kdsuite" not in kd["config"]  # the identity block becomes record fields, not config


def test_a_timed_out_page_is_retried_at_the_same_cursor():
    svc = FakeService([node(i) for i in range(3)], fail_first_pages=2)
    waits = []
    recs = list(load_wandb_records("wandb:team/proj", api=make_api(svc), per_page=2, sleep=waits.append))
    assert len(recs) == 3 and waits == [2.0, 4.0]  # exponential back-off
    cursors = [v["cursor"] for name, v in svc.requests if name == "Runs"]
    assert cursors == [None, None, None, "2"]  # the failed first page was asked again, nothing skipped


def test_runs_that_did_not_finish_are_left_out_and_history_is_read():
    nodes = [node(0), node(1, state="crashed"), node(2, seed=1)]
    svc = FakeService(nodes, history={"run0": [{"_step": 1, "val/student/top1": 50.0}, {"_step": 2, "val/student/top1": 60.0}]})
    recs = list(load_wandb_records("wandb:team/proj", api=make_api(svc), history=True))
    assert [r["run_id"] for r in recs] == ["h0", "h2"]
    assert [h["val/student/top1"] for h in recs[0]["history"]] == [50.0, 60.0]


def test_access_errors_and_bad_paths_name_what_is_needed():
    with pytest.raises(WandbSourceError, match="wandb:ENTITY/PROJECT"):
        list(load_wandb_records("wandb:just-a-project", api=make_api(FakeService([]))))
    with pytest.raises(WandbSourceError, match="cannot read the W&B project.*API key"):
        list(load_wandb_records("wandb:team/nope", api=make_api(FakeService([], missing_project=True))))


def test_a_table_from_wandb_runs(monkeypatch):
    nodes = [node(0, "vanilla", 0, 72.0), node(1, "vanilla", 1, 73.0), node(2, "kd", 0, 74.0), node(3, "kd", 1, 75.0)]
    svc = FakeService(nodes)
    import kdsuite.analysis.wandb_source as ws

    monkeypatch.setattr(ws, "make_api", lambda timeout=60: make_api(svc))
    recs = list(load_wandb_records("wandb:team/proj"))
    md = render_table(recs, "methods", "md", "last", reference="repdistiller")
    # kd: mean 74.5, sample std 0.71 over 2 seeds; RepDistiller's published KD for res32x4→res8x4 is 73.33
    assert "| kd | Response-based knowledge | **74.50 ± 0.71 (2)** [pub. 73.33, Δ +1.17] |" in md
    assert "| Student (vanilla) | Baseline (no distillation) | 72.50 ± 0.71 (2) [pub. 72.50, Δ +0.00] |" in md
    svc_empty = FakeService([])
    monkeypatch.setattr(ws, "make_api", lambda timeout=60: make_api(svc_empty))
    assert main(["table", "--source", "wandb:team/proj"]) == 2
