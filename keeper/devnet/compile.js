#!/usr/bin/env node
// Compile keeper's own Solidity (contracts/src/*.sol) with npm solc 0.8.19 into one JSON file.
//
//   node keeper/devnet/compile.js [SRC_DIR] [OUT_FILE]
//   defaults: contracts/src  build/contracts.json   (relative to the repository root)
//
// The output is cached: it holds a sha256 of the solc version, the settings and every source
// file, and the compiler only runs when that hash changes. It also lists each source's own
// sha256 (`sources`), so keeper can tell whether shipped bytecode still matches contracts/src. Imports resolve against SRC_DIR and
// then node_modules (e.g. "@aave/core-v3/contracts/..."). Prints the output path on stdout;
// on a compile error prints solc's messages on stderr and exits 1.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..", "..");
const SRC = path.resolve(process.argv[2] || path.join(ROOT, "contracts", "src"));
const OUT = path.resolve(process.argv[3] || path.join(ROOT, "build", "contracts.json"));
const SOLC_VERSION = "0.8.19";

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "paris",
  outputSelection: {
    "*": {
      "*": ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences", "evm.deployedBytecode.object"],
    },
  },
};

function sourceFiles() {
  return fs
    .readdirSync(SRC)
    .filter((name) => name.endsWith(".sol"))
    .sort()
    .map((name) => ({ name, content: fs.readFileSync(path.join(SRC, name), "utf8") }));
}

function hashOf(files) {
  const h = crypto.createHash("sha256");
  h.update(SOLC_VERSION + "\n" + JSON.stringify(SETTINGS) + "\n");
  for (const f of files) h.update(f.name + "\n" + f.content + "\n");
  return h.digest("hex");
}

function findImports(importPath) {
  for (const base of [SRC, path.join(ROOT, "node_modules")]) {
    const candidate = path.join(base, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

function sha256(text) {
  return crypto.createHash("sha256").update(text).digest("hex");
}

function compile(files) {
  const solc = require(path.join(ROOT, "node_modules", "solc"));
  const version = solc.version();
  if (!version.startsWith(SOLC_VERSION)) {
    throw new Error(`need solc ${SOLC_VERSION}, node_modules has ${version}`);
  }
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(files.map((f) => [f.name, { content: f.content }])),
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
    process.exit(1);
  }
  const contracts = {};
  for (const f of files) {
    for (const [name, c] of Object.entries((output.contracts || {})[f.name] || {})) {
      contracts[name] = {
        source: path.relative(ROOT, path.join(SRC, f.name)),
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        linkReferences: c.evm.bytecode.linkReferences,
      };
    }
  }
  const sources = Object.fromEntries(files.map((f) => [f.name, sha256(f.content)]));
  return { solc: version, settings: SETTINGS, sources, contracts };
}

function main() {
  const files = sourceFiles();
  const hash = hashOf(files);
  if (fs.existsSync(OUT)) {
    try {
      const cached = JSON.parse(fs.readFileSync(OUT, "utf8"));
      if (cached.sourceHash === hash && cached.sources) {
        process.stdout.write(OUT + "\n");
        return;
      }
    } catch (_) {
      // unreadable cache: rebuild it
    }
  }
  const result = compile(files);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  const tmp = OUT + ".tmp";
  fs.writeFileSync(tmp, JSON.stringify({ sourceHash: hash, ...result }, null, 1));
  fs.renameSync(tmp, OUT);
  process.stdout.write(OUT + "\n");
}

main();
