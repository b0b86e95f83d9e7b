"""Stage 2: which ports answer, and how. engines.py is the table of engines (connect.py, syn.py, nmap.py,
one module each); base.py what they share; portstates.py every probed pair's state and reply."""
