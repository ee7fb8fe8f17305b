// Validates Flux objects (deploy/flux) against the JSON schemas that @kubernetes-models/flux-cd
// generates from the Flux APIs, and rejects keys those APIs do not have.
//
//   node scripts/lib/validate-flux.js FILE.json...
//
// Each FILE holds a JSON array of objects (scripts/validate converts the rendered YAML). Only
// the API versions Flux v2.9 serves as GA are accepted: source.toolkit.fluxcd.io/v1,
// kustomize.toolkit.fluxcd.io/v1, helm.toolkit.fluxcd.io/v2; any other *.toolkit.fluxcd.io
// version fails (deprecated betas are removed in later releases). Objects of other groups are
// printed as SKIP (scripts/validate validates built-in ones with kubernetes-validate).
//
// Why the unknown-key check: the Flux CRDs do not set additionalProperties: false, so the
// schema alone accepts `valuesFile:` for `valuesFiles:`, and the API server would drop the
// field without a word. The known keys come from the package's TypeScript declarations (one
// interface per API type, generated from the same Go types as the schemas).
//
// Prints one line per object; exits 1 if any is invalid, 2 on usage errors.
"use strict";

const path = require("path");
const fs = require("fs");

const modules = path.join(__dirname, "..", "..", ".tools", "node", "node_modules");
const FLUX = path.join(modules, "@kubernetes-models", "flux-cd");

// apiVersion/kind -> module of the model, relative to the package
const MODELS = {
  "source.toolkit.fluxcd.io/v1/GitRepository": "source.toolkit.fluxcd.io/v1/GitRepository",
  "source.toolkit.fluxcd.io/v1/HelmRepository": "source.toolkit.fluxcd.io/v1/HelmRepository",
  "source.toolkit.fluxcd.io/v1/HelmChart": "source.toolkit.fluxcd.io/v1/HelmChart",
  "source.toolkit.fluxcd.io/v1/OCIRepository": "source.toolkit.fluxcd.io/v1/OCIRepository",
  "source.toolkit.fluxcd.io/v1/Bucket": "source.toolkit.fluxcd.io/v1/Bucket",
  "kustomize.toolkit.fluxcd.io/v1/Kustomization": "kustomize.toolkit.fluxcd.io/v1/Kustomization",
  "helm.toolkit.fluxcd.io/v2/HelmRelease": "helm.toolkit.fluxcd.io/v2/HelmRelease",
};

// --- known keys from the .d.ts declarations ---------------------------------------------------

const interfaces = new Map(); // .d.ts file -> {props: Map(name -> type), imports: Map(ident -> file)}

function declarationFile(fromFile, spec) {
  if (spec.startsWith(".")) return path.resolve(path.dirname(fromFile), spec.replace(/\.js$/, ".d.ts"));
  return path.join(modules, spec + ".d.ts");
}

// The first `export interface` of a declaration file: its properties and their type texts.
// Files that declare a type alias (a string enum) have none: anything goes.
function readInterface(file) {
  if (interfaces.has(file)) return interfaces.get(file);
  let result = null;
  if (fs.existsSync(file)) {
    const text = fs.readFileSync(file, "utf8");
    const imports = new Map();
    for (const m of text.matchAll(/import \{ (\w+) \} from "([^"]+)";/g)) imports.set(m[1], declarationFile(file, m[2]));
    const start = text.search(/export interface \w+(?: extends [\w, ]+)? \{/);
    if (start >= 0) {
      const body = text.slice(start, text.indexOf("\n}", start));
      const props = new Map();
      // Properties sit at four spaces; nested inline object types are deeper and skipped.
      for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.+?);?$/gm)) props.set(m[1], m[2]);
      if (/extends TypeMeta/.test(body)) props.set("apiVersion", "string").set("kind", "string");
      // An empty interface is free-form JSON (a HelmRelease's `values`).
      if (props.size > 0) result = { props, imports };
    }
  }
  interfaces.set(file, result);
  return result;
}

// Collects "path: unknown key" errors for `value` checked against the interface in `file`.
function unknownKeys(value, file, where, errors) {
  const iface = readInterface(file);
  if (!iface || value === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [key, child] of Object.entries(value)) {
    const type = iface.props.get(key);
    if (type === undefined) {
      errors.push(`${where}/${key}: unknown key (known: ${[...iface.props.keys()].sort().join(", ")})`);
      continue;
    }
    const element = /^Array<(\w+)>$/.exec(type);
    const named = element ? element[1] : /^(\w+)$/.exec(type)?.[1];
    const target = named && iface.imports.get(named);
    if (!target) continue; // a scalar, a map or free-form JSON
    if (element && Array.isArray(child)) child.forEach((c, i) => unknownKeys(c, target, `${where}/${key}/${i}`, errors));
    else unknownKeys(child, target, `${where}/${key}`, errors);
  }
}

// --- main ---------------------------------------------------------------------------------------

if (process.argv.length < 3) {
  console.error("usage: validate-flux.js FILE.json...");
  process.exit(2);
}
if (!fs.existsSync(FLUX)) {
  console.error(`validate-flux: ${FLUX} is missing; run: bash scripts/install-tools`);
  process.exit(2);
}
let failed = 0;
let validated = 0;
for (const file of process.argv.slice(2)) {
  for (const obj of JSON.parse(fs.readFileSync(file, "utf8"))) {
    const key = `${obj.apiVersion}/${obj.kind}`;
    const name = `${obj.kind}/${(obj.metadata || {}).name}`;
    const module = MODELS[key];
    if (!module) {
      if (/\.toolkit\.fluxcd\.io\//.test(obj.apiVersion || "")) {
        failed++;
        console.log(`FAIL ${path.basename(file)} ${name} (${obj.apiVersion}): not a GA Flux API; use one of ${Object.keys(MODELS).join(", ")}`);
      } else {
        console.log(`SKIP ${path.basename(file)} ${name} (${obj.apiVersion}): not a Flux object`);
      }
      continue;
    }
    const modelFile = path.join(FLUX, module);
    const Model = require(modelFile)[obj.kind];
    const errors = [];
    try {
      new Model(obj).validate();
    } catch (e) {
      errors.push(e.message);
    }
    unknownKeys(obj, modelFile + ".d.ts", "", errors);
    if (errors.length) {
      failed++;
      console.log(`FAIL ${path.basename(file)} ${name} (${obj.apiVersion}): ${errors.join("; ")}`);
    } else {
      validated++;
      console.log(`PASS ${path.basename(file)} ${name} (${obj.apiVersion})`);
    }
  }
}
if (validated === 0 && failed === 0) {
  console.log("FAIL no Flux object found in the input");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
