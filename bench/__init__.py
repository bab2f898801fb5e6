"""Benchmarks: scripts that print figures for bench/RESULTS.md (run each as a file)."""
