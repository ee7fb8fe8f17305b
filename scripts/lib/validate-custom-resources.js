// Validates custom resources (HTTPRoute, Gateway, ServiceMonitor, PrometheusRule,
// ExternalSecret, ClusterSecretStore, SecretStore, Application, AppProject) against the JSON
// schemas that the @kubernetes-models packages generate from the upstream CRDs.
//
//   node scripts/lib/validate-custom-resources.js FILE.json...
//
// Each FILE holds a JSON array of objects (scripts/validate converts the rendered YAML).
// Prints one line per object; exits 1 if any is invalid, 2 on usage errors. Kinds it has no
// schema for are printed as "SKIP" so scripts/validate can list them explicitly.
"use strict";

const path = require("path");
const fs = require("fs");

const modules = path.join(__dirname, "..", "..", ".tools", "node", "node_modules");
const load = (p) => require(path.join(modules, p));

// apiVersion/kind -> model class module
const MODELS = {
  "gateway.networking.k8s.io/v1/HTTPRoute": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute",
  "gateway.networking.k8s.io/v1/Gateway": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway",
  "gateway.networking.k8s.io/v1/GatewayClass": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
  "monitoring.coreos.com/v1/PrometheusRule": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
  "external-secrets.io/v1/ExternalSecret": "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret",
  "external-secrets.io/v1/ClusterSecretStore": "@kubernetes-models/external-secrets/external-secrets.io/v1/ClusterSecretStore",
  "external-secrets.io/v1/SecretStore": "@kubernetes-models/external-secrets/external-secrets.io/v1/SecretStore",
  "argoproj.io/v1alpha1/Application": "@kubernetes-models/argo-cd/argoproj.io/v1alpha1/Application",
  "argoproj.io/v1alpha1/AppProject": "@kubernetes-models/argo-cd/argoproj.io/v1alpha1/AppProject",
};

if (process.argv.length < 3) {
  console.error("usage: validate-custom-resources.js FILE.json...");
  process.exit(2);
}
let failed = 0;
for (const file of process.argv.slice(2)) {
  const objects = JSON.parse(fs.readFileSync(file, "utf8"));
  for (const obj of objects) {
    const key = `${obj.apiVersion}/${obj.kind}`;
    const name = `${obj.kind}/${(obj.metadata || {}).name}`;
    const module = MODELS[key];
    if (!module) {
      console.log(`SKIP ${path.basename(file)} ${name} (${obj.apiVersion}): no custom-resource schema here`);
      continue;
    }
    const Model = load(module)[obj.kind];
    try {
      new Model(obj).validate();
      console.log(`PASS ${path.basename(file)} ${name} (${obj.apiVersion})`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${path.basename(file)} ${name} (${obj.apiVersion}): ${e.message}`);
    }
  }
}
process.exit(failed ? 1 : 0);
