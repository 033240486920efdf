"""The tether agent: runs on the GPU host, supervises one job, reports through files.

Standard library only (psutil when present): it is shipped to hosts that may have nothing
but a system Python 3.9+.
"""

__version__ = "0.1.0"
