#!/usr/bin/env node
// Compile Morpho Blue (npm @morpho-org/morpho-blue 1.0.0, sources only) with npm solc 0.8.19
// and the package's own foundry.toml settings: via-IR, optimizer 999999 runs, evm "paris",
// no metadata hash. Writes one JSON file:
//
//   node keeper/devnet/compile_morpho.js [OUT_FILE]      default: build/morpho.json
//
// Contracts: Morpho, IrmMock, OracleMock (bytecode + ABI). solc-js (0.8.19) leaves the events
// that Morpho emits through EventsLib out of Morpho's ABI (events of libraries only reach a
// contract's ABI from solc 0.8.20), so EventsLib's ABI is compiled too and its events are
// appended to Morpho's. Compiling takes about 8 s, so the output is cached: it holds a sha256 of
// the solc version, the settings and every source file read, and solc only runs when that hash
// changes. Prints the output path on stdout; on a compile error prints solc's messages on
// stderr and exits 1.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..", "..");
const PKG = "@morpho-org/morpho-blue";
const PKG_DIR = path.join(ROOT, "node_modules", PKG);
const OUT = path.resolve(process.argv[2] || path.join(ROOT, "build", "morpho.json"));
const SOLC_VERSION = "0.8.19";

// source unit -> contracts whose bytecode we need (EventsLib: ABI only, for its events)
const UNITS = {
  "src/Morpho.sol": ["Morpho"],
  "src/mocks/IrmMock.sol": ["IrmMock"],
  "src/mocks/OracleMock.sol": ["OracleMock"],
  "src/libraries/EventsLib.sol": [],
};
const FULL = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"];

const SETTINGS = {
  viaIR: true,
  optimizer: { enabled: true, runs: 999999 },
  evmVersion: "paris",
  metadata: { bytecodeHash: "none" },
  outputSelection: Object.fromEntries(
    Object.entries(UNITS).map(([unit, names]) => [
      unit,
      names.length ? Object.fromEntries(names.map((n) => [n, FULL])) : { EventsLib: ["abi"] },
    ]),
  ),
};

function allSources() {
  // Every .sol file of the package's src/ (the imports of the units above are among them).
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".sol")) out.push(full);
    }
  };
  walk(path.join(PKG_DIR, "src"));
  return out.map((full) => ({ unit: path.relative(PKG_DIR, full).split(path.sep).join("/"), content: fs.readFileSync(full, "utf8") }));
}

function hashOf(files) {
  const version = JSON.parse(fs.readFileSync(path.join(PKG_DIR, "package.json"), "utf8")).version;
  const h = crypto.createHash("sha256");
  h.update(`${SOLC_VERSION}\n${PKG}@${version}\n${JSON.stringify(SETTINGS)}\n`);
  for (const f of files) h.update(f.unit + "\n" + f.content + "\n");
  return h.digest("hex");
}

function compile(files) {
  const solc = require(path.join(ROOT, "node_modules", "solc"));
  const version = solc.version();
  if (!version.startsWith(SOLC_VERSION)) {
    throw new Error(`need solc ${SOLC_VERSION}, node_modules has ${version}`);
  }
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(files.map((f) => [f.unit, { content: f.content }])),
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
    process.exit(1);
  }
  const contracts = {};
  for (const [unit, names] of Object.entries(UNITS)) {
    for (const name of names) {
      const c = ((output.contracts || {})[unit] || {})[name];
      if (!c) throw new Error(`${unit}:${name} missing from solc's output`);
      contracts[name] = {
        source: `node_modules/${PKG}/${unit}`,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        linkReferences: {},
      };
    }
  }
  const events = output.contracts["src/libraries/EventsLib.sol"].EventsLib.abi.filter((e) => e.type === "event");
  const have = new Set(contracts.Morpho.abi.filter((e) => e.type === "event").map((e) => e.name));
  contracts.Morpho.abi = contracts.Morpho.abi.concat(events.filter((e) => !have.has(e.name)));
  return { solc: version, settings: SETTINGS, contracts };
}

function main() {
  if (!fs.existsSync(PKG_DIR)) {
    process.stderr.write(`${PKG} missing in ${path.join(ROOT, "node_modules")} (run npm install; make does it)\n`);
    process.exit(1);
  }
  const files = allSources();
  const hash = hashOf(files);
  if (fs.existsSync(OUT)) {
    try {
      if (JSON.parse(fs.readFileSync(OUT, "utf8")).sourceHash === hash) {
        process.stdout.write(OUT + "\n");
        return;
      }
    } catch (_) {
      // unreadable cache: rebuild it
    }
  }
  const result = compile(files);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  const tmp = `${OUT}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ sourceHash: hash, ...result }, null, 1));
  fs.renameSync(tmp, OUT);
  process.stdout.write(OUT + "\n");
}

main();
