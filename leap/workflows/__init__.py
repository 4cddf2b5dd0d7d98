"""Workflows: the analyses LEAP runs on top of the engine (analyze, participants, refine, ...)."""
