// Validates KEDA custom resources (JSON, one array on stdin) against KEDA's CRD schemas as
// packaged by @kubernetes-models/keda (npm), for scripts/validate-deploy. argv[2] is the folder
// whose node_modules holds the package. Prints one line per resource; exit 1 on any failure.
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";

const root = `${process.argv[2]}/node_modules/@kubernetes-models/keda/keda.sh/v1alpha1/index.js`;
const keda = await import(pathToFileURL(root).href);
let failed = false;
for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = keda[doc.kind];
  const name = `${doc.kind}/${doc.metadata?.name}`;
  if (doc.apiVersion !== "keda.sh/v1alpha1" || !Model) {
    console.log(`FAIL ${name}: ${doc.apiVersion} ${doc.kind} is not a KEDA v1alpha1 kind`);
    failed = true;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok   ${name} (KEDA CRD schema)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
