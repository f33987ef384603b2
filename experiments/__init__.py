"""Studies beyond one run: benchmarks, the reproduce pipeline, sweeps."""
