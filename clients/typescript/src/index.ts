export * from "./types.js";
export { CreditsError, isCreditsError, type ClientErrorCode } from "./errors.js";
export { clientCredentials, type ClientCredentialsConfig, type TokenProvider } from "./auth.js";
export {
  CreditsClient,
  USER_HEADER,
  routes,
  skippedRoutes,
  type CallOptions,
  type CaptureOptions,
  type CreditsClientOptions,
  type DebitOptions,
  type GrantInput,
  type GrantOptions,
  type HttpMethod,
  type JobRan,
  type JobReplayed,
  type JobResult,
  type MonitoringQuery,
  type Outputs,
  type PageQuery,
  type PerOutputJobResult,
  type PlanInput,
  type ReportOptions,
  type ReserveOptions,
  type ResponseMeta,
  type RetryOptions,
  type RouteEntry,
  type WithCreditsOptions,
  type WithCreditsResult,
} from "./client.js";
export { schemaFields, enumValues, problemFields } from "./schema-fields.js";
export {
  DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
  WebhookVerificationError,
  isWebhookVerificationError,
  signWebhook,
  verifyWebhook,
  type VerifyWebhookOptions,
  type WebhookHeaders,
  type WebhookVerificationReason,
} from "./webhooks.js";
