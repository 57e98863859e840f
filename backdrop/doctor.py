"""`backdrop doctor`: check the data folder and the database, and say what to do (storage.doctor).
Exits 2 when something needs doing; it changes nothing."""

from __future__ import annotations

import argparse


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check the data folder and the database; say what to do",
                              description="Checks the data folder (BACKDROP_DATA_DIR), the database (its integrity, "
                              "its schema), the image store against it, and runs whose process is gone. It only "
                              "reads. Exit status 2 when a problem is found.")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from storage.doctor import examine

    findings = examine()
    for finding in findings:
        print(f"{'ok' if finding.ok else 'PROBLEM'}: {finding.what}")
        if finding.fix:
            print(f"    what to do: {finding.fix}")
    problems = sum(not f.ok for f in findings)
    print(f"{problems} problem(s) found" if problems else "no problems found")
    return 2 if problems else 0
