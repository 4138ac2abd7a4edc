"""Schemathesis against a live `glacierflow serve` over a cube and granules: every operation
of the app's OpenAPI document (read from the server, so routes added later are fuzzed too)
in all of schemathesis' phases (schema examples, coverage of boundaries and invalid values,
random valid and invalid requests). Every answer is checked: no 5xx, no dropped connection,
and the status, content type and body the document declares. Deterministic and bounded:
a few minutes on 2 cores."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ServedRegion, glacierflow_serve

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = 40  # per operation and phase: ~1,300 requests, about a minute here


def test_every_operation_answers_as_declared(served_region: ServedRegion, tmp_path: Path) -> None:
    region = dataclasses.asdict(served_region)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": str(Path(__file__).parent),
        "GLACIERFLOW_FUZZ_REGION": json.dumps(region, default=str),
    }
    log = tmp_path / "serve.log"
    with glacierflow_serve(served_region, log=log) as server:
        fuzz = subprocess.run(
            [Path(sys.executable).parent / "st", "run", f"{server.url}/openapi.json",
             "--checks", ",".join(CHECKS), "--phases", "examples,coverage,fuzzing",
             "--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--generation-deterministic",
             "--workers", "1", "--request-timeout", "60", "--no-color"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        alive = server.poll() is None
    report = fuzz.stdout[-20000:] + fuzz.stderr[-4000:]
    assert fuzz.returncode == 0, f"{report}\n--- server log (tail) ---\n{log.read_text()[-6000:]}"
    assert alive, f"the server died during the fuzzing:\n{log.read_text()[-6000:]}"
