"""Latency lookup tables (build, validate, import/export) and whole-model benchmarks."""
