#!/usr/bin/env node
// Compile Aave V3 3.6 (npm @aave-dao/aave-v3-origin 3.6.0, sources only) with npm solc 0.8.27
// (installed as the alias "solc-0.8.27") and the package's own foundry.toml settings:
// optimizer 200 runs, evm "shanghai", no metadata hash, no via-IR. Writes one JSON file:
//
//   node keeper/devnet/compile_aave36.js [OUT_FILE]      default: build/aave36.json
//
// Only the units the devnet deploys are compiled (UNITS below): the Pool / PoolConfigurator /
// token instances, their external logic libraries (linked from linkReferences), AaveOracle,
// AaveProtocolDataProvider, PoolAddressesProvider, ACLManager, DefaultReserveInterestRateStrategyV2,
// helpers/LiquidationDataProvider, and the Errors library (ABI only: the custom errors that the
// external libraries revert with are not in the Pool's ABI).
//
// Imports are resolved under node_modules with the package's remappings:
//   openzeppelin-contracts/contracts/             -> @openzeppelin/contracts/             (5.1.0)
//   openzeppelin-contracts-upgradeable/contracts/ -> @openzeppelin/contracts-upgradeable/ (5.1.0)
//   solidity-utils/                               -> @bgd-labs/solidity-utils/src/
//
// Compiling takes tens of seconds, so the output is cached: it holds a sha256 of the solc
// version, the settings and every source file solc read (their list is kept in the output),
// and solc only runs when that hash changes. Prints the output path on stdout; on a compile
// error prints solc's messages on stderr and exits 1. With KEEPER_COMPILE_STATS=1 it prints the
// compile time and peak memory on stderr.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..", "..");
const NODE_MODULES = path.join(ROOT, "node_modules");
const PKG = "@aave-dao/aave-v3-origin";
const SRC = `${PKG}/src/contracts`;
const OUT = path.resolve(process.argv[2] || path.join(ROOT, "build", "aave36.json"));
const SOLC_MODULE = "solc-0.8.27";
const SOLC_VERSION = "0.8.27";

// source unit (under src/contracts) -> contracts we need; "abi:" prefix = ABI only
const UNITS = {
  "instances/PoolInstance.sol": ["PoolInstance"],
  "instances/PoolConfiguratorInstance.sol": ["PoolConfiguratorInstance"],
  "instances/ATokenInstance.sol": ["ATokenInstance"],
  "instances/VariableDebtTokenInstance.sol": ["VariableDebtTokenInstance"],
  "misc/AaveOracle.sol": ["AaveOracle"],
  "misc/DefaultReserveInterestRateStrategyV2.sol": ["DefaultReserveInterestRateStrategyV2"],
  "helpers/AaveProtocolDataProvider.sol": ["AaveProtocolDataProvider"],
  "helpers/LiquidationDataProvider.sol": ["LiquidationDataProvider"],
  "protocol/configuration/PoolAddressesProvider.sol": ["PoolAddressesProvider"],
  "protocol/configuration/ACLManager.sol": ["ACLManager"],
  "protocol/libraries/logic/BorrowLogic.sol": ["BorrowLogic"],
  "protocol/libraries/logic/ConfiguratorLogic.sol": ["ConfiguratorLogic"],
  "protocol/libraries/logic/FlashLoanLogic.sol": ["FlashLoanLogic"],
  "protocol/libraries/logic/LiquidationLogic.sol": ["LiquidationLogic"],
  "protocol/libraries/logic/PoolLogic.sol": ["PoolLogic"],
  "protocol/libraries/logic/SupplyLogic.sol": ["SupplyLogic"],
  "protocol/libraries/helpers/Errors.sol": ["abi:Errors"],
};
const FULL = ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences", "evm.deployedBytecode.object"];
const REMAPPINGS = [
  "openzeppelin-contracts/contracts/=@openzeppelin/contracts/",
  "openzeppelin-contracts-upgradeable/contracts/=@openzeppelin/contracts-upgradeable/",
  "solidity-utils/=@bgd-labs/solidity-utils/src/",
];

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "shanghai",
  metadata: { bytecodeHash: "none" },
  remappings: REMAPPINGS,
  outputSelection: Object.fromEntries(
    Object.entries(UNITS).map(([unit, names]) => [
      `${SRC}/${unit}`,
      Object.fromEntries(names.map((n) => (n.startsWith("abi:") ? [n.slice(4), ["abi"]] : [n, FULL]))),
    ]),
  ),
};

function read(unit) {
  return fs.readFileSync(path.join(NODE_MODULES, unit), "utf8");
}

function versionOf(pkg) {
  return JSON.parse(fs.readFileSync(path.join(NODE_MODULES, pkg, "package.json"), "utf8")).version;
}

function hashOf(units) {
  const h = crypto.createHash("sha256");
  const pkgs = [PKG, "@openzeppelin/contracts", "@openzeppelin/contracts-upgradeable", "@bgd-labs/solidity-utils"];
  h.update(`${SOLC_VERSION}\n${pkgs.map((p) => `${p}@${versionOf(p)}`).join("\n")}\n${JSON.stringify(SETTINGS)}\n`);
  for (const unit of [...units].sort()) h.update(unit + "\n" + read(unit) + "\n");
  return h.digest("hex");
}

function compile() {
  const solc = require(path.join(NODE_MODULES, SOLC_MODULE));
  const version = solc.version();
  if (!version.startsWith(SOLC_VERSION)) {
    throw new Error(`need solc ${SOLC_VERSION} in node_modules/${SOLC_MODULE}, found ${version}`);
  }
  const roots = Object.keys(UNITS).map((u) => `${SRC}/${u}`);
  const seen = new Set(roots);
  const findImports = (unit) => {
    seen.add(unit);
    try {
      return { contents: read(unit) };
    } catch (e) {
      return { error: `not found under node_modules: ${unit}` };
    }
  };
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(roots.map((u) => [u, { content: read(u) }])),
    settings: SETTINGS,
  };
  const t0 = process.hrtime.bigint();
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
    process.exit(1);
  }
  const contracts = {};
  for (const [unit, names] of Object.entries(UNITS)) {
    for (const entry of names) {
      const name = entry.replace(/^abi:/, "");
      const c = ((output.contracts || {})[`${SRC}/${unit}`] || {})[name];
      if (!c) throw new Error(`${unit}:${name} missing from solc's output`);
      contracts[name] = {
        source: `node_modules/${SRC}/${unit}`,
        abi: c.abi,
        bytecode: c.evm ? "0x" + c.evm.bytecode.object : "0x",
        deployedBytecode: c.evm ? "0x" + c.evm.deployedBytecode.object : "0x",
        linkReferences: c.evm ? c.evm.bytecode.linkReferences || {} : {},
      };
    }
  }
  if (process.env.KEEPER_COMPILE_STATS) {
    const rss = process.resourceUsage().maxRSS / 1024;
    process.stderr.write(`compiled ${seen.size} files in ${seconds.toFixed(1)} s, peak RSS ${rss.toFixed(0)} MB\n`);
  }
  return { solc: version, settings: SETTINGS, contracts, files: [...seen].sort() };
}

function main() {
  if (!fs.existsSync(path.join(NODE_MODULES, PKG))) {
    process.stderr.write(`${PKG} missing in ${NODE_MODULES} (run npm install; make does it)\n`);
    process.exit(1);
  }
  if (fs.existsSync(OUT)) {
    try {
      const cached = JSON.parse(fs.readFileSync(OUT, "utf8"));
      if (cached.sourceHash === hashOf(cached.files)) {
        process.stdout.write(OUT + "\n");
        return;
      }
    } catch (_) {
      // unreadable cache, or a file it lists is gone: rebuild it
    }
  }
  const result = compile();
  const hash = hashOf(result.files);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  const tmp = `${OUT}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ sourceHash: hash, ...result }));
  fs.renameSync(tmp, OUT);
  process.stdout.write(OUT + "\n");
}

main();
