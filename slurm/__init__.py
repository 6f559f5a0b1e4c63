"""Cluster execution: local and submitit executors for grids, Slurm profiles, job packing, the launch manifest and
the local one-node test cluster (``local_cluster.sh``)."""
if __name__ != "kdsuite.slurm":  # this folder is installed as kdsuite.slurm; a second copy under another name would split state
    raise ImportError("the 'slurm' folder is the package kdsuite.slurm: import kdsuite.slurm")
