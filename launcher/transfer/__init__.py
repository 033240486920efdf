"""Moving files between the laptop and a host: code up (sync, rsync), results down (pull)."""

# Written into every `tether pull` destination, so a later launch from that folder does not
# send the results back up (ignore.py). Here, not in ignore.py: a pull need not load pathspec.
PULLED_MARKER = ".tether-pulled"
