"""Cluster execution: submitit executors, cluster profiles and the local one-node test cluster."""
