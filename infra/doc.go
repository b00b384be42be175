// Package infra holds the Bicep templates that `azd up` deploys (main.bicep,
// its modules and main.parameters.json), not Go code.
//
// Its tests read the templates, the parameters file and the repository's
// azure.yaml as text, with no Bicep compiler and no network, and fail when
// the infrastructure drifts from the code: a key appears, key access is left
// on, a role is missing, the container app lacks a variable the app reads,
// an output the keyless package reads is missing, the ingress port is not the
// app's port, or azure.yaml points at files that do not exist. Each check is
// also run against deliberately broken copies to prove it can fail.
package infra
