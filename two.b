/dev/fd/3: line 72: sthook.py: command not found
