"""Simulated meters: fleet physics, theft scenarios with ground truth, protocol front-ends."""
