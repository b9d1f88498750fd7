export * from "./types.js";
export { CreditsError, isCreditsError, type ClientErrorCode } from "./errors.js";
export {
  CreditsClient,
  routes,
  skippedRoutes,
  type CallOptions,
  type CreditsClientOptions,
  type GrantOptions,
  type HttpMethod,
  type JobResult,
  type MonitoringQuery,
  type PageQuery,
  type ReserveOptions,
  type ResponseMeta,
  type RetryOptions,
  type RouteEntry,
  type WithCreditsOptions,
  type WithCreditsResult,
} from "./client.js";
export { schemaFields, enumValues, problemFields } from "./schema-fields.js";
