"""junit.xml for CI: one testcase per gate result and one per failed call, in one testsuite."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

JUNIT_FILE = "junit.xml"
# XML 1.0 forbids most control characters even when escaped; a transcript could carry them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    return _ILLEGAL.sub("\ufffd", "" if value is None else str(value))


def _gate_name(gate: dict[str, Any]) -> str:
    sign = "<=" if gate.get("op") == "max" else ">="
    threshold = gate.get("threshold")
    shown = f"{threshold:g}" if isinstance(threshold, int | float) else _text(threshold)
    return f"{_text(gate.get('name'))} {sign} {shown}"


def build_junit(summary: dict[str, Any], records: list[dict[str, Any]],
                compare: dict[str, Any] | None = None) -> ET.Element:
    """The <testsuites> element: gates (classname "gates"), failed calls (classname "calls")
    and, with a baseline comparison, one case per compared metric (classname "compare...")."""
    gates = summary.get("gates") or []
    failed_calls = [r for r in records if r.get("status") != "completed"]
    compared = (compare or {}).get("rows") or []
    failures = (sum(1 for g in gates if not g.get("passed")) + len(failed_calls)
                + sum(1 for row in compared if row.get("verdict") == "regression"))
    tests = len(gates) + len(failed_calls) + len(compared)
    name = f"callfleet {_text(summary.get('run_id', ''))}".strip()
    root = ET.Element("testsuites", name=name, tests=str(tests), failures=str(failures),
                      errors="0")
    suite = ET.SubElement(root, "testsuite", name=name, tests=str(tests),
                          failures=str(failures), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "target", "partial"):
        value = summary.get(key)
        shown = str(value).lower() if isinstance(value, bool) else _text(value)
        ET.SubElement(props, "property", name=key, value=shown)
    for gate in gates:
        case = ET.SubElement(suite, "testcase", classname="gates", name=_gate_name(gate))
        if not gate.get("passed"):
            value = gate.get("value")
            message = _text(gate.get("reason") or "failed")
            failure = ET.SubElement(case, "failure", message=message, type="gate")
            shown = "no data" if value is None else f"{value:g}"
            n = gate.get("n")
            failure.text = (f"{_text(gate.get('name'))}: value {shown}"
                            f"{'' if n is None else f' (n={n})'}, threshold {_gate_name(gate)}")
    for record in failed_calls:
        case = ET.SubElement(suite, "testcase", classname="calls",
                             name=_text(record.get("call_id") or "?"))
        reason = _text(record.get("failure_reason") or "unknown")
        failure = ET.SubElement(case, "failure", message=reason, type="call")
        failure.text = (f"persona {_text(record.get('persona'))}, seed {_text(record.get('seed'))}"
                        f": {_text(record.get('failure_detail') or reason)}")
    for row in compared:
        scope = "compare" if row.get("slice") is None else (
            f"compare.{_text(row.get('scope'))}.{_text(row.get('slice'))}")
        allowed = _text((row.get("allowed") or {}).get("text"))
        case = ET.SubElement(suite, "testcase", classname=scope,
                             name=f"{_text(row.get('metric'))} allowed {allowed}")
        ET.SubElement(case, "system-out").text = _text(row.get("text"))
        if row.get("verdict") == "regression":
            failure = ET.SubElement(case, "failure", message=_text(row.get("text")),
                                    type="regression")
            failure.text = _text(row.get("text"))
    return root


def junit_xml(summary: dict[str, Any], records: list[dict[str, Any]],
              compare: dict[str, Any] | None = None) -> str:
    root = build_junit(summary, records, compare)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(run_dir: Path, summary: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """Write run_dir/junit.xml (atomically) and return its path."""
    from evaluation.compare import read_compare

    path = Path(run_dir) / JUNIT_FILE
    tmp = path.with_name(f".{JUNIT_FILE}.tmp")
    tmp.write_text(junit_xml(summary, records, read_compare(run_dir)), encoding="utf-8")
    os.replace(tmp, path)
    return path
