"""Test doubles shipped with the package: the loopback LLM server (and the scripted model in ``codemonkeys.llm``).

They live in the package, not under ``tests/``, so downstream tests and the
benchmarks can use them too. Nothing here is imported by production code.
"""
