export * from "./types.js";
export { CreditsError, isCreditsError, type ClientErrorCode } from "./errors.js";
export { clientCredentials, type ClientCredentialsConfig, type TokenProvider } from "./auth.js";
export {
  CreditsClient,
  type CallOptions,
  type CaptureOptions,
  type CreditsClientOptions,
  type DebitOptions,
  type GrantInput,
  type GrantOptions,
  type MonitoringQuery,
  type PageQuery,
  type PlanInput,
  type ReserveOptions,
} from "./client.js";
export { routes, skippedRoutes, type RouteEntry } from "./routes.js";
export { USER_HEADER, type HttpMethod, type ResponseMeta, type RetryOptions } from "./transport.js";
export {
  type JobRan,
  type JobReplayed,
  type JobResult,
  type Outputs,
  type PerOutputJobResult,
  type ReportOptions,
  type WithCreditsOptions,
  type WithCreditsResult,
} from "./with-credits.js";
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
