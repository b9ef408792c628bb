// node tests/validate_gltf.cjs FILE.glb: the Khronos glTF validator's report on FILE, as JSON.
// The validator is an npm package outside the repository; MIDAS_GLTF_VALIDATOR names its
// folder (scripts/test.sh installs it, keyed by version, under ~/.cache/midas-service).
"use strict";
const fs = require("fs");
const validator = require(process.env.MIDAS_GLTF_VALIDATOR);

const file = process.argv[2];
const bytes = new Uint8Array(fs.readFileSync(file));
validator
  .validateBytes(bytes, { uri: file, maxIssues: 100 })
  .then((report) => process.stdout.write(JSON.stringify(report)))
  .catch((error) => {
    process.stderr.write(`validator failed: ${error}\n`);
    process.exit(1);
  });
