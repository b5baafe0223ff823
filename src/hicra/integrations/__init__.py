"""Engines users already run: TRL (one machine) and verl (a cluster). Import the submodule you need."""
