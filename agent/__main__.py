"""`python -m agent <verb>`: the agent's command line on the host (verbs.py).

Some verbs are waited for and run before argparse and the other verbs' modules load: `status`
(asked many times an hour: job_status.py loads only light parts of the standard library; its
arguments are job folders, nothing else), a pull's `pull-files` (pull_files.py, as light)
and `run JOB_DIR --secrets-on-stdin` (a launch waits until the agent holds its job's lock,
which run_job.py takes before the monitor loads).
"""

from __future__ import annotations

import sys


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["status"] and len(args) > 1 and not any(a.startswith("-") for a in args[1:]):
        from .job_status import main_status

        return main_status(args[1:])
    if args[:1] == ["pull-files"] and len(args) == 2 and not args[1].startswith("-"):
        from .pull_files import main as main_pull

        return main_pull(args)
    if len(args) == 3 and args[0] == "run" and args[2] == "--secrets-on-stdin" and not args[1].startswith("-"):
        from .run_job import main_run

        return main_run(args[1], secrets_on_stdin=True)
    from .verbs import main as main_verb

    return main_verb(args)


if __name__ == "__main__":
    sys.exit(main())
