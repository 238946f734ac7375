"""The gate result as JUnit XML (``cmraudit gate --junit``): one testcase per rule, off rules skipped."""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..io_guard import atomic_file
from .policy import RULE_HELP

# characters XML 1.0 cannot hold (control characters but tab, newline, carriage return; lone surrogates; U+FFFE/F):
# a reason taken from a report may carry them, and ElementTree writes them as they are (a file CI cannot parse)
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def write_junit(result: Any, path: str | os.PathLike) -> Path:
    """Write the gate result as JUnit XML (one testcase per rule; off rules are skipped)."""
    path = Path(path)
    suite = ET.Element(
        "testsuite",
        name="cmraudit-gate",
        tests=str(len(result.rules)),
        failures=str(len(result.failed_rules)),
        skipped=str(sum(r.status == "off" for r in result.rules)),
        errors="0",
    )
    for r in result.rules:
        case = ET.SubElement(suite, "testcase", classname="cmraudit.gate", name=r.rule)
        if r.status == "fail":
            fail = ET.SubElement(case, "failure", message=_xml_text(f"{r.rule}: {r.reason}"), type="GateRuleFailed")
            fail.text = _xml_text(f"{r.rule} ({RULE_HELP.get(r.rule, '')}): {r.reason}")
        elif r.status == "off":
            ET.SubElement(case, "skipped", message=_xml_text(r.reason))
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(r.reason)
    suites = ET.Element("testsuites")
    suites.append(suite)

    with atomic_file(path) as tmp:  # all or nothing: never a 0-byte or half-written file
        ET.ElementTree(suites).write(tmp, encoding="utf-8", xml_declaration=True)
    return path
