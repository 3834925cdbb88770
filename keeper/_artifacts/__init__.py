"""Package data written at build time by setup_contracts.py (never committed): contracts.json
(ABI and bytecode of contracts/src, compiled by npm solc) and abi/ (a copy of contracts/abi).
Read through keeper.package_data."""
