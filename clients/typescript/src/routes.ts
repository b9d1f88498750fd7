import type { CreditsClient } from "./client.js";
import type { HttpMethod } from "./transport.js";

/** One route of openapi.yaml and the client method that calls it. */
export interface RouteEntry {
  method: HttpMethod;
  path: string;
  operationId: string;
  clientMethod: keyof CreditsClient;
}

/** Every route the client calls (test/spec.test.mjs compares it with openapi.yaml). */
export const routes: readonly RouteEntry[] = [
  { method: "GET", path: "/v1/balance", operationId: "getBalance", clientMethod: "getBalance" },
  { method: "GET", path: "/v1/prices", operationId: "getPrices", clientMethod: "getPrices" },
  { method: "POST", path: "/v1/reservations", operationId: "createReservation", clientMethod: "reserve" },
  { method: "GET", path: "/v1/reservations/{id}", operationId: "getReservation", clientMethod: "getReservation" },
  { method: "POST", path: "/v1/reservations/{id}/confirm", operationId: "confirmReservation", clientMethod: "confirm" },
  { method: "POST", path: "/v1/reservations/{id}/extend", operationId: "extendReservation", clientMethod: "extend" },
  { method: "POST", path: "/v1/reservations/{id}/release", operationId: "releaseReservation", clientMethod: "release" },
  { method: "POST", path: "/v1/reservations/{id}/task", operationId: "linkReservationTask", clientMethod: "linkTask" },
  { method: "GET", path: "/v1/transactions", operationId: "listTransactions", clientMethod: "listTransactions" },
  { method: "GET", path: "/v1/auto-recharge", operationId: "getAutoRecharge", clientMethod: "getAutoRecharge" },
  { method: "PUT", path: "/v1/auto-recharge", operationId: "setAutoRecharge", clientMethod: "setAutoRecharge" },
  { method: "DELETE", path: "/v1/auto-recharge", operationId: "endAutoRecharge", clientMethod: "endAutoRecharge" },
  { method: "POST", path: "/v1/admin/users/{userId}/grants", operationId: "adminGrantCredits", clientMethod: "adminGrant" },
  { method: "POST", path: "/v1/admin/users/{userId}/debits", operationId: "adminDebitCredits", clientMethod: "adminDebit" },
  { method: "PUT", path: "/v1/admin/users/{userId}/plan", operationId: "adminSetPlan", clientMethod: "adminSetPlan" },
  { method: "DELETE", path: "/v1/admin/users/{userId}/plan", operationId: "adminEndPlan", clientMethod: "adminEndPlan" },
  {
    method: "PUT",
    path: "/v1/admin/users/{userId}/settings",
    operationId: "adminSetSettings",
    clientMethod: "adminSetSettings",
  },
  { method: "GET", path: "/v1/admin/users/{userId}/balance", operationId: "adminGetBalance", clientMethod: "adminBalance" },
  {
    method: "GET",
    path: "/v1/admin/users/{userId}/transactions",
    operationId: "adminListTransactions",
    clientMethod: "adminTransactions",
  },
  {
    method: "POST",
    path: "/v1/admin/reservations/{id}/refund",
    operationId: "adminRefundReservation",
    clientMethod: "adminRefund",
  },
  { method: "POST", path: "/v1/admin/cleanup", operationId: "adminCleanup", clientMethod: "adminCleanup" },
  { method: "GET", path: "/v1/admin/monitoring", operationId: "adminMonitoring", clientMethod: "adminMonitoring" },
  {
    method: "POST",
    path: "/v1/admin/webhook-endpoints",
    operationId: "adminCreateWebhookEndpoint",
    clientMethod: "adminCreateWebhookEndpoint",
  },
  {
    method: "GET",
    path: "/v1/admin/webhook-endpoints",
    operationId: "adminListWebhookEndpoints",
    clientMethod: "adminListWebhookEndpoints",
  },
  {
    method: "GET",
    path: "/v1/admin/webhook-endpoints/{id}",
    operationId: "adminGetWebhookEndpoint",
    clientMethod: "adminGetWebhookEndpoint",
  },
  {
    method: "DELETE",
    path: "/v1/admin/webhook-endpoints/{id}",
    operationId: "adminDeleteWebhookEndpoint",
    clientMethod: "adminDeleteWebhookEndpoint",
  },
  {
    method: "GET",
    path: "/v1/admin/webhook-endpoints/{id}/deliveries",
    operationId: "adminListWebhookDeliveries",
    clientMethod: "adminListWebhookDeliveries",
  },
];

/** Routes of openapi.yaml the client deliberately does not wrap, and why. */
export const skippedRoutes: readonly { method: HttpMethod; path: string; operationId: string; why: string }[] = [
  {
    method: "GET",
    path: "/v1/admin/dashboard",
    operationId: "adminDashboardPage",
    why: "an HTML page for browsers; its data comes from adminMonitoring({ type: 'dashboard' })",
  },
  {
    method: "POST",
    path: "/v1/webhooks/{provider}",
    operationId: "providerWebhook",
    why: "called by the image provider with its own signature, never with a bearer token",
  },
];
