"""The study as a graph of steps run by executors (`reproduce.py`).

    profile.py      the config schema: profile (what the grid is), executor (what runs it)
    step.py         one step: a command of the project and the steps it needs
    plan.py         the graph: a pure function of the profile and the run folder; grid.json's record
    state.py        markers, content fingerprints, staleness, the one-run-per-folder lock
    running.py      one step: due or not, executed (in process or as its command line), logged, recorded
    executors/      inprocess, subprocess, local, ray, slurm
    script.py       commands.sh, what the named configs decide, the critical path and planned schedule
    reproduce.py    plan → commands.sh and grid.json → executor
"""
