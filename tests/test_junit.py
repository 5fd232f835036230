"""junit.xml: one testsuite, a testcase per gate and per failed call, valid XML."""

import xml.etree.ElementTree as ET

from evaluation.junit import junit_xml, write_junit

SUMMARY = {
    "run_id": "run-1",
    "target": "http://127.0.0.1:1/offer",
    "partial": False,
    "gates": [
        {"name": "latency_p95_ms", "op": "max", "threshold": 3000.0, "value": 2100.0, "n": 40,
         "passed": True, "reason": "2100 <= max 3000"},
        {"name": "understanding.amount", "op": "min", "threshold": 0.9, "value": 0.5, "n": 4,
         "passed": False, "reason": "0.5 < min 0.9"},
        {"name": "barge_in_not_stopped_rate", "op": "max", "threshold": 0.2, "value": None,
         "n": 0, "passed": False, "reason": "no data"},
    ],
}
RECORDS = [
    {"call_id": "call-0001", "persona": "p", "seed": 1, "status": "completed"},
    {"call_id": "call-0002", "persona": "p", "seed": 2, "status": "failed",
     "failure_reason": "ice_timeout", "failure_detail": "no <candidate> & \x01 gave up"},
    {"call_id": "call-0003", "persona": "q", "seed": 3, "status": "failed",
     "failure_reason": None},
]


def parse(text):
    root = ET.fromstring(text.encode("utf-8"))
    (suite,) = root.findall("testsuite")
    return root, suite


def test_one_suite_with_a_case_per_gate_and_per_failed_call():
    root, suite = parse(junit_xml(SUMMARY, RECORDS))
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("gates", "latency_p95_ms <= 3000"),
        ("gates", "understanding.amount >= 0.9"),
        ("gates", "barge_in_not_stopped_rate <= 0.2"),
        ("calls", "call-0002"),
        ("calls", "call-0003"),
    ]
    assert suite.get("tests") == "5" and suite.get("failures") == "4"
    assert root.get("tests") == "5" and root.get("failures") == "4"


def test_failures_carry_messages():
    _, suite = parse(junit_xml(SUMMARY, RECORDS))
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["latency_p95_ms <= 3000"].find("failure") is None
    assert cases["understanding.amount >= 0.9"].find("failure").get("message") == "0.5 < min 0.9"
    no_data = cases["barge_in_not_stopped_rate <= 0.2"].find("failure")
    assert no_data.get("message") == "no data" and "value no data" in no_data.text
    call = cases["call-0002"].find("failure")
    assert call.get("message") == "ice_timeout"
    assert "no <candidate> &" in call.text  # escaped in the file, intact when parsed
    assert cases["call-0003"].find("failure").get("message") == "unknown"


def test_no_gates_and_no_failures_is_an_empty_valid_suite():
    _, suite = parse(junit_xml({"run_id": "r"}, RECORDS[:1]))
    assert suite.get("tests") == "0" and suite.findall("testcase") == []


def test_write_junit_writes_a_file_that_parses(tmp_path):
    path = write_junit(tmp_path, SUMMARY, RECORDS)
    assert path == tmp_path / "junit.xml"
    tree = ET.parse(path)
    assert tree.getroot().tag == "testsuites"
    assert path.read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>')
