"""A copy of contracts/abi, made at build time by setup_contracts.py (never committed)."""
