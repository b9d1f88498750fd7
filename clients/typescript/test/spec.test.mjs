// The client against the spec: every route and every schema property of
// openapi.yaml must be known to the client (and nothing the spec dropped).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

import { enumValues, routes, schemaFields, skippedRoutes } from "../dist/index.js";

const specPath = process.env.CREDITS_OPENAPI || resolve(dirname(fileURLToPath(import.meta.url)), "../../../openapi.yaml");
const spec = parse(readFileSync(specPath, "utf8"));
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** `METHOD path` → operationId of every operation of the spec. */
function specRoutes(doc) {
  const found = new Map();
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      if (item?.[method]) found.set(`${method.toUpperCase()} ${path}`, item[method].operationId);
    }
  }
  return found;
}

function resolveRef(doc, ref) {
  assert.match(ref, /^#\//, `only local $refs are supported: ${ref}`);
  return ref
    .slice(2)
    .split("/")
    .reduce((node, part) => node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
}

/** The property names of a schema, through $ref and allOf. */
function propertiesOf(doc, schema, seen = new Set()) {
  if (!schema || typeof schema !== "object") return new Set();
  if (schema.$ref) {
    if (seen.has(schema.$ref)) return new Set();
    seen.add(schema.$ref);
    return propertiesOf(doc, resolveRef(doc, schema.$ref), seen);
  }
  const names = new Set(Object.keys(schema.properties ?? {}));
  for (const part of schema.allOf ?? []) for (const name of propertiesOf(doc, part, seen)) names.add(name);
  return names;
}

/** What the spec has that the client lacks, and what the client has that the spec dropped. */
function compare(doc) {
  const problems = [];
  const declared = specRoutes(doc);
  const client = new Map(
    [...routes, ...skippedRoutes].map((r) => [`${r.method} ${r.path}`, r.operationId]),
  );
  for (const [route, operationId] of declared) {
    if (!client.has(route)) problems.push(`route missing in the client: ${route} (${operationId})`);
    else if (client.get(route) !== operationId)
      problems.push(`route ${route}: spec operationId ${operationId}, client ${client.get(route)}`);
  }
  for (const route of client.keys()) {
    if (!declared.has(route)) problems.push(`route in the client but not in the spec: ${route}`);
  }

  const schemas = doc.components?.schemas ?? {};
  for (const [name, schema] of Object.entries(schemas)) {
    const fields = schemaFields[name];
    if (!fields) {
      problems.push(`schema missing in the client: ${name}`);
      continue;
    }
    const specProps = propertiesOf(doc, schema);
    for (const prop of specProps) {
      if (!fields.includes(prop)) problems.push(`property missing in the client: ${name}.${prop}`);
    }
    for (const field of fields) {
      if (!specProps.has(field)) problems.push(`property in the client but not in the spec: ${name}.${field}`);
    }
  }
  for (const name of Object.keys(schemaFields)) {
    if (!(name in schemas)) problems.push(`schema in the client but not in the spec: ${name}`);
  }

  for (const [where, values] of Object.entries(enumValues)) {
    const [schemaName, prop] = where.split(".");
    let node = schemas[schemaName];
    if (prop) node = node?.properties?.[prop];
    if (node?.$ref) node = resolveRef(doc, node.$ref);
    const specValues = (node?.enum ?? []).filter((v) => v !== null);
    if (specValues.length === 0) {
      problems.push(`enum ${where} not found in the spec`);
      continue;
    }
    for (const v of specValues) if (!values.includes(v)) problems.push(`enum value missing in the client: ${where} ${v}`);
    for (const v of values) if (!specValues.includes(v)) problems.push(`enum value in the client but not in the spec: ${where} ${v}`);
  }
  return problems;
}

test("every route of openapi.yaml has a client method (or is deliberately skipped)", () => {
  const problems = compare(spec).filter((p) => p.includes("route"));
  assert.deepEqual(problems, []);
  assert.equal(specRoutes(spec).size, routes.length + skippedRoutes.length);
  assert.deepEqual(
    skippedRoutes.map((r) => `${r.method} ${r.path}`).sort(),
    ["GET /v1/admin/dashboard", "POST /v1/webhooks/{provider}"],
  );
});

test("every route entry names a real client method", async () => {
  const { CreditsClient } = await import("../dist/index.js");
  for (const route of routes) {
    assert.equal(typeof CreditsClient.prototype[route.clientMethod], "function", route.clientMethod);
  }
});

test("every schema property of openapi.yaml is declared by the client's types", () => {
  assert.deepEqual(
    compare(spec).filter((p) => !p.includes("route")),
    [],
  );
});

test("the comparison catches a new route, a new property and a new enum value", () => {
  const changed = structuredClone(spec);
  changed.paths["/v1/reservations/{id}/split"] = { post: { operationId: "splitReservation" } };
  changed.paths["/v1/balance"].delete = { operationId: "deleteBalance" };
  changed.components.schemas.Balance.properties.currency = { type: "string" };
  changed.components.schemas.ReservationNotPendingProblem.allOf[1].properties.since = { type: "string" };
  changed.components.schemas.Widget = { type: "object", properties: { id: { type: "string" } } };
  changed.components.schemas.Problem.properties.code.enum.push("rate_limited");
  const before = new Set(compare(spec));
  const problems = compare(changed).filter((p) => !before.has(p));
  assert.deepEqual(problems.sort(), [
    "enum value missing in the client: Problem.code rate_limited",
    "property missing in the client: Balance.currency",
    "property missing in the client: ReservationNotPendingProblem.since",
    "route missing in the client: DELETE /v1/balance (deleteBalance)",
    "route missing in the client: POST /v1/reservations/{id}/split (splitReservation)",
    "schema missing in the client: Widget",
  ].sort());
});
