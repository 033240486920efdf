"""What a command needs before (or without) the CLI framework: the session it runs in, the one
place errors become a line and an exit code, and the look-at-jobs verbs (`status`, `jobs`,
`logs`) run straight from the command line. Nothing here imports typer, pydantic, paramiko or
httpx, and rich only where a table is drawn: `tether status JOB` pays for what it shows.

    session.py   the Session (places, registry, console) and errors as one line
    verbs.py     their command lines, read without typer (early.py and entry.py read them here)
    looks.py     status, jobs and logs: the commands' bodies (cli/run.py's commands call them,
                 and `run` runs a line verbs.py read)
"""
