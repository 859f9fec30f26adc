#!/usr/bin/env bash
# Grade one notebook the way the GitHub Actions workflow (grade.yml) does, so the same
# commands can be tried on a laptop first:
#
#     bash .github/grade.sh NOTEBOOK [OUT_DIR]
#
# Writes OUT_DIR/report.html (for people), OUT_DIR/junit.xml (for CI test views),
# OUT_DIR/classroom.json (GitHub Classroom runner result) and OUT_DIR/report.json,
# prints one GitHub annotation per failed check, and exits like `grader check`:
#   0  graded, at or above FAIL_UNDER percent        1  graded, under FAIL_UNDER
#   2  the notebook could not be graded (not a notebook, unreadable, ...)
#
# Environment: FAIL_UNDER (default 60), GRADER_ARGS (extra options for every
# `grader check`, e.g. "--rubric course.toml --seed 3"), PYTHON (default python).
# Inside Actions, GITHUB_OUTPUT gets `result` (base64 of classroom.json, for
# classroom-resources/autograding-grading-reporter) and GITHUB_STEP_SUMMARY a score table.
set -uo pipefail

notebook="${1:?usage: grade.sh NOTEBOOK [OUT_DIR]}"
out="${2:-.}"
fail_under="${FAIL_UNDER:-60}"
python="${PYTHON:-python}"
read -r -a extra <<< "${GRADER_ARGS:-}"
mkdir -p "$out"

# Each run grades the notebook afresh; the default seed makes every run give the same report.
grader check "$notebook" ${extra[@]+"${extra[@]}"} --format html > "$out/report.html"
grader check "$notebook" ${extra[@]+"${extra[@]}"} --format junit > "$out/junit.xml"
grader check "$notebook" ${extra[@]+"${extra[@]}"} --format classroom > "$out/classroom.json"
cat "$out/classroom.json"

# The JSON report decides the job: exit 1 under the threshold, 2 when it cannot grade.
grader check "$notebook" ${extra[@]+"${extra[@]}"} --format json --fail-under "$fail_under" > "$out/report.json"
status=$?

# One `::error` annotation per failed check (or one for a notebook that could not be graded),
# shown on the notebook in the run summary and the pull request; `%`, CR, LF (and in
# properties `:` and `,`) are escaped as the workflow-command syntax requires.
"$python" - "$notebook" "$out/report.json" "$out/classroom.json" "$fail_under" <<'PY'
import base64, json, os, sys

notebook, report_path, classroom_path, fail_under = sys.argv[1:5]

def data(text):
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

def prop(text):
    return data(text).replace(":", "%3A").replace(",", "%2C")

def num(value):  # the report writes a non-finite number as null
    return value if isinstance(value, (int, float)) else 0

try:
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
except (OSError, ValueError) as exc:
    print(f"::error file={prop(notebook)},title=grading::{data(f'grader produced no report ({exc})')}")
    sys.exit(0)

if report["status"] == "error":
    print(f"::error file={prop(notebook)},title=grading::{data(report.get('error', 'not graded'))}")
failed = [check for check in report["checks"] if not check["passed"]]
for check in failed:
    hints = [f"known mistake {d['id']}: {d['message']}" for d in report["diagnoses"]
             if d["function"] == check["function"]]
    print(f"::error file={prop(notebook)},title={prop(check['id'])}::{data(chr(10).join([check['message'], *hints]))}")

score, max_score = num(report["score"]), num(report["max_score"])
percent = 100 * score / max_score if max_score else 0
line = f"{notebook}: {score:g}/{max_score:g} ({percent:.0f}%), pass mark {float(fail_under):g}%"
print(f"::notice title=grade::{data(line)}")

if os.environ.get("GITHUB_OUTPUT"):
    with open(classroom_path, "rb") as handle:
        encoded = base64.b64encode(json.dumps(json.load(handle), separators=(",", ":")).encode()).decode()
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
        handle.write(f"result={encoded}\n")
if os.environ.get("GITHUB_STEP_SUMMARY"):
    rows = [f"| `{c['id']}` | {'✅' if c['passed'] else '❌'} | {num(c['score']):g}/{num(c['max_score']):g} |"
            for c in report["checks"]]
    reason = f"\n\nNot graded: {report['error']}" if report["status"] == "error" else ""
    with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
        handle.write("\n".join([f"### {line}{reason}", "", "| check | | points |", "|---|---|---|", *rows, ""]))
PY

exit "$status"
