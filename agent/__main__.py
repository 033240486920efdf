"""`python -m agent <verb>`: the agent's command line on the host (verbs.py).

`status` is asked many times an hour and waited for: it runs from job_status.py, which loads
only light parts of the standard library, before argparse and the other verbs' modules load.
Its arguments are job folders, nothing else.
"""

from __future__ import annotations

import sys


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["status"] and len(args) > 1 and not any(a.startswith("-") for a in args[1:]):
        from .job_status import main_status

        return main_status(args[1:])
    from .verbs import main as main_verb

    return main_verb(args)


if __name__ == "__main__":
    sys.exit(main())
