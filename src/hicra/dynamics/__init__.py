"""Training dynamics: rollout records (the run directory), per-step metrics, the phase verdict, the report.

`dynamics` reads only run directories, so it serves the lab, the TRL callback, the verl hook and converted
foreign logs alike. Modules are imported directly (`hicra.dynamics.records`, ...); nothing heavy is imported here.
"""
