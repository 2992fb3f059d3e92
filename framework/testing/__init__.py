"""Helpers for testing jobs and notebooks locally (not used in production paths)."""
