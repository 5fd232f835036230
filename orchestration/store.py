"""The run directory: calls.jsonl appended durably per call, summary.json, audio paths."""

from __future__ import annotations

import json
import math
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callers.inputs import excerpt
from callers.record import CallRecord
from orchestration.record_check import record_problem

CALLS_FILE = "calls.jsonl"
SUMMARY_FILE = "summary.json"


def new_run_id() -> str:
    """A sortable, unique-enough run id: UTC time plus a short random suffix."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _jsonable(value: Any) -> Any:
    """Replace NaN/inf with None and numpy scalars with Python ones, so output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item())
    return value


def _dumps(data: Any, **kwargs: Any) -> str:
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except (TypeError, ValueError):
        # Rare path: one odd value must not cost the call its record.
        return json.dumps(_jsonable(data), allow_nan=False, default=str, **kwargs)


class RunStore:
    """One run's directory; append() makes each finished call durable before returning."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.audio_dir = self.run_dir / "audio"
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self.calls_path = self.run_dir / CALLS_FILE
        self.summary_path = self.run_dir / SUMMARY_FILE
        # Opened once: reopening per call costs more than the write itself.
        self._calls = open(self.calls_path, "a", encoding="utf-8")

    def append(self, record: CallRecord | dict[str, Any]) -> None:
        """Write one record as one line and fsync it, so a crash later cannot lose it."""
        data = record.to_dict() if isinstance(record, CallRecord) else record
        self._calls.write(_dumps(data) + "\n")
        self._calls.flush()
        os.fsync(self._calls.fileno())

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Replace summary.json atomically: readers see the old file or the new one, never half."""
        tmp = self.summary_path.with_name(f".{SUMMARY_FILE}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(_dumps(summary, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.summary_path)
        return self.summary_path

    def audio_path(self, call_id: str) -> Path:
        """Where this call's stereo WAV goes."""
        if not call_id or "/" in call_id or "\\" in call_id or call_id.startswith("."):
            raise ValueError(f"call_id not usable as a file name: {call_id!r}")
        return self.audio_dir / f"{call_id}.wav"

    def close(self) -> None:
        """Close calls.jsonl; every appended record is already on disk."""
        if not self._calls.closed:
            self._calls.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read calls.jsonl; a line that is not a call record (bad JSON, wrong field types) or repeats
    an earlier call_id becomes a warning with its line number and is skipped."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}  # call_id -> line it was first read from
    if not path.exists():
        return records, [f"{path.name}: not found"]
    # errors="replace": a torn multi-byte character must cost one line, not the whole file.
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                warnings.append(f"{path.name}:{lineno}: not valid JSON (truncated line?)")
                continue
            if not isinstance(data, dict):
                warnings.append(f"{path.name}:{lineno}: not a JSON object")
                continue
            problem = record_problem(data)
            if problem is not None:
                warnings.append(f"{path.name}:{lineno}: not a call record: {problem}")
                continue
            first = seen.setdefault(data["call_id"], lineno)
            if first != lineno:  # counted once: a second copy would count the call twice
                warnings.append(f"{path.name}:{lineno}: duplicate of line {first} (call_id "
                                f"{excerpt(data['call_id'])})")
                continue
            records.append(data)
    return records, warnings
