//! The one mapping from `Error` to an RFC 9457 problem, with its message in
//! en-US, pt-BR or es-ES.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::validate::{Invalid, Problem, MAX_URL};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Pt,
    Es,
}

impl Lang {
    /// Picks the caller's most preferred language we speak from
    /// `Accept-Language`; anything else is en-US.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else { return Lang::En };
        let mut best: Option<(f32, usize, Lang)> = None;
        for (position, part) in header.split(',').enumerate() {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let lang = match primary {
                "pt" => Lang::Pt,
                "es" => Lang::Es,
                "en" => Lang::En,
                _ => continue,
            };
            if q <= 0.0 {
                continue;
            }
            // Highest q wins; on a tie, the one listed first.
            if best.is_none_or(|(bq, bp, _)| q > bq || (q == bq && position < bp)) {
                best = Some((q, position, lang));
            }
        }
        best.map(|(_, _, lang)| lang).unwrap_or(Lang::En)
    }
}

pub struct Code {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
}

pub fn code_of(error: &Error) -> Code {
    let (status, code, title) = match error {
        Error::Validation(_) => (StatusCode::BAD_REQUEST, "validation_error", "Invalid request"),
        Error::UnknownOperation(_) => (StatusCode::BAD_REQUEST, "unknown_operation", "Unknown operation"),
        Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
        Error::InsufficientCredits { .. } => {
            (StatusCode::PAYMENT_REQUIRED, "insufficient_credits", "Insufficient credits")
        }
        Error::Forbidden | Error::ReadOnlyToken => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
        Error::HoldNotFound => (StatusCode::NOT_FOUND, "reservation_not_found", "Reservation not found"),
        Error::RouteNotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
        Error::HoldNotPending(_) => (StatusCode::CONFLICT, "reservation_not_pending", "Reservation not pending"),
        Error::HoldExpired => (StatusCode::CONFLICT, "reservation_expired", "Reservation expired"),
        Error::TaskAlreadyLinked => (StatusCode::CONFLICT, "task_already_linked", "Task already linked"),
        Error::TooManyOpenHolds { .. } => (StatusCode::CONFLICT, "too_many_open_holds", "Too many open holds"),
        Error::TooManyLots { .. } => (StatusCode::CONFLICT, "too_many_lots", "Too many lots"),
        Error::EndpointNotFound => (StatusCode::NOT_FOUND, "endpoint_not_found", "Webhook endpoint not found"),
        Error::TooManyEndpoints { .. } => (StatusCode::CONFLICT, "too_many_endpoints", "Too many webhook endpoints"),
        Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large"),
        Error::IdempotencyKeyReused => {
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", "Idempotency key reused")
        }
        Error::Unavailable(_) | Error::AppliedUnread(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
        }
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
    };
    Code { status, code, title }
}

/// The human message. Never includes internal details (those go to logs).
pub fn detail(error: &Error, lang: Lang) -> String {
    use Lang::*;
    let pick = |en: &str, pt: &str, es: &str| match lang {
        En => en.to_owned(),
        Pt => pt.to_owned(),
        Es => es.to_owned(),
    };
    match error {
        Error::Validation(invalid) => validation_detail(invalid, lang),
        Error::UnknownOperation(op) => match lang {
            En => format!("The operation \"{op}\" is not in the price catalog."),
            Pt => format!("A operação \"{op}\" não está no catálogo de preços."),
            Es => format!("La operación \"{op}\" no está en el catálogo de precios."),
        },
        Error::Unauthorized => pick(
            "A valid bearer token is required.",
            "É necessário um token de acesso válido.",
            "Se requiere un token de acceso válido.",
        ),
        Error::Forbidden => pick(
            "You are not allowed to do this.",
            "Você não tem permissão para fazer isso.",
            "No tienes permiso para hacer esto.",
        ),
        Error::ReadOnlyToken => pick(
            "Holds are placed and settled by the app's server; this token can only read.",
            "As reservas são feitas e liquidadas pelo servidor do app; este token só pode ler.",
            "Las reservas las crea y liquida el servidor de la app; este token solo puede leer.",
        ),
        Error::InsufficientCredits { .. } => pick(
            "Insufficient credits for this operation. Watch ads or upgrade.",
            "Créditos insuficientes para esta operação. Assista a anúncios ou faça upgrade.",
            "Créditos insuficientes para esta operación. Mira anuncios o mejora tu plan.",
        ),
        Error::HoldNotFound => pick("No such reservation.", "Reserva não encontrada.", "No existe esa reserva."),
        Error::RouteNotFound => pick("No such route.", "Rota não encontrada.", "No existe esa ruta."),
        Error::HoldNotPending(status) => match lang {
            En => format!("The reservation is already {}.", status.as_str()),
            Pt => format!("A reserva já está no estado {}.", status.as_str()),
            Es => format!("La reserva ya está en estado {}.", status.as_str()),
        },
        Error::HoldExpired => pick(
            "The reservation expired; its credits were returned.",
            "A reserva expirou; os créditos foram devolvidos.",
            "La reserva caducó; sus créditos fueron devueltos.",
        ),
        Error::TaskAlreadyLinked => pick(
            "This provider task is already linked to another reservation.",
            "Esta tarefa do provedor já está vinculada a outra reserva.",
            "Esta tarea del proveedor ya está vinculada a otra reserva.",
        ),
        Error::TooManyOpenHolds { limit, .. } => match lang {
            En => format!("This user already has {limit} open holds; settle some before placing another."),
            Pt => format!("Este usuário já tem {limit} reservas abertas; liquide algumas antes de criar outra."),
            Es => format!("Este usuario ya tiene {limit} reservas abiertas; liquida alguna antes de crear otra."),
        },
        Error::TooManyLots { limit } => match lang {
            En => format!("This user already has {limit} lots of credits; grant into an existing lot (same priority and expiry)."),
            Pt => format!("Este usuário já tem {limit} lotes de créditos; conceda num lote existente (mesma prioridade e validade)."),
            Es => format!("Este usuario ya tiene {limit} lotes de créditos; otorga en un lote existente (misma prioridad y caducidad)."),
        },
        Error::EndpointNotFound => pick(
            "No such webhook endpoint.",
            "Endpoint de webhook não encontrado.",
            "No existe ese endpoint de webhook.",
        ),
        Error::TooManyEndpoints { limit } => match lang {
            En => format!("There are already {limit} webhook endpoints; delete one before adding another."),
            Pt => format!("Já existem {limit} endpoints de webhook; exclua um antes de adicionar outro."),
            Es => format!("Ya hay {limit} endpoints de webhook; elimina uno antes de añadir otro."),
        },
        Error::PayloadTooLarge => pick(
            "The request body is larger than 64 KiB.",
            "O corpo da requisição é maior que 64 KiB.",
            "El cuerpo de la solicitud supera los 64 KiB.",
        ),
        Error::IdempotencyKeyReused => pick(
            "This Idempotency-Key was already used for a different request.",
            "Esta Idempotency-Key já foi usada em outra requisição.",
            "Esta Idempotency-Key ya se usó para otra solicitud.",
        ),
        Error::Unavailable(_) => pick(
            "The service is busy. The change may or may not have been applied: retry with the same Idempotency-Key.",
            "O serviço está ocupado. A alteração pode ou não ter sido aplicada: tente novamente com a mesma Idempotency-Key.",
            "El servicio está ocupado. El cambio puede o no haberse aplicado: reintenta con la misma Idempotency-Key.",
        ),
        Error::AppliedUnread(_) => pick(
            "The change was applied, but its result could not be read: retry with the same Idempotency-Key to read it.",
            "A alteração foi aplicada, mas o resultado não pôde ser lido: repita com a mesma Idempotency-Key para lê-lo.",
            "El cambio se aplicó, pero no se pudo leer el resultado: repite con la misma Idempotency-Key para leerlo.",
        ),
        Error::Internal(_) => pick(
            "Unexpected error. The change may or may not have been applied: retry with the same Idempotency-Key.",
            "Erro inesperado. A alteração pode ou não ter sido aplicada: tente novamente com a mesma Idempotency-Key.",
            "Error inesperado. El cambio puede o no haberse aplicado: reintenta con la misma Idempotency-Key.",
        ),
    }
}

fn validation_detail(invalid: &Invalid, lang: Lang) -> String {
    let f = &invalid.field;
    match (&invalid.problem, lang) {
        (Problem::Malformed, Lang::En) => "The request body must be one complete JSON object, in UTF-8.".into(),
        (Problem::Malformed, Lang::Pt) => {
            "O corpo da requisição deve ser um único objeto JSON completo, em UTF-8.".into()
        }
        (Problem::Malformed, Lang::Es) => {
            "El cuerpo de la solicitud debe ser un único objeto JSON completo, en UTF-8.".into()
        }
        (Problem::UnknownField, Lang::En) => format!("Unknown field \"{f}\"."),
        (Problem::UnknownField, Lang::Pt) => format!("Campo desconhecido \"{f}\"."),
        (Problem::UnknownField, Lang::Es) => format!("Campo desconocido \"{f}\"."),
        (Problem::Duplicate, Lang::En) => format!("Field \"{f}\" appears more than once."),
        (Problem::Duplicate, Lang::Pt) => format!("O campo \"{f}\" aparece mais de uma vez."),
        (Problem::Duplicate, Lang::Es) => format!("El campo \"{f}\" aparece más de una vez."),
        (Problem::Missing, Lang::En) => format!("Field \"{f}\" is required."),
        (Problem::Missing, Lang::Pt) => format!("O campo \"{f}\" é obrigatório."),
        (Problem::Missing, Lang::Es) => format!("El campo \"{f}\" es obligatorio."),
        (Problem::WrongType, Lang::En) => format!("Field \"{f}\" has an invalid value."),
        (Problem::WrongType, Lang::Pt) => format!("O campo \"{f}\" tem um valor inválido."),
        (Problem::WrongType, Lang::Es) => format!("El campo \"{f}\" tiene un valor no válido."),
        // Nothing fits (a hold with no units left to capture, a hold at
        // the end of its longest life).
        (Problem::OutOfRange { min, max }, Lang::En) if max < min => format!("Field \"{f}\" has no valid value left."),
        (Problem::OutOfRange { min, max }, Lang::Pt) if max < min => {
            format!("O campo \"{f}\" não tem mais nenhum valor válido.")
        }
        (Problem::OutOfRange { min, max }, Lang::Es) if max < min => {
            format!("El campo \"{f}\" ya no tiene ningún valor válido.")
        }
        (Problem::OutOfRange { min, max }, Lang::En) => format!("Field \"{f}\" must be between {min} and {max}."),
        (Problem::OutOfRange { min, max }, Lang::Pt) => format!("O campo \"{f}\" deve estar entre {min} e {max}."),
        (Problem::OutOfRange { min, max }, Lang::Es) => format!("El campo \"{f}\" debe estar entre {min} y {max}."),
        (Problem::Length { min, max }, Lang::En) => {
            format!("Field \"{f}\" must have {min} to {max} characters, without control characters.")
        }
        (Problem::Length { min, max }, Lang::Pt) => {
            format!("O campo \"{f}\" deve ter de {min} a {max} caracteres, sem caracteres de controle.")
        }
        (Problem::Length { min, max }, Lang::Es) => {
            format!("El campo \"{f}\" debe tener de {min} a {max} caracteres, sin caracteres de control.")
        }
        (Problem::NotUuid, Lang::En) => format!("Field \"{f}\" must be a lower-case UUID."),
        (Problem::NotUuid, Lang::Pt) => format!("O campo \"{f}\" deve ser um UUID em minúsculas."),
        (Problem::NotUuid, Lang::Es) => format!("El campo \"{f}\" debe ser un UUID en minúsculas."),
        (Problem::NotOneOf(allowed), Lang::En) => format!("Field \"{f}\" must be one of: {}.", allowed.join(", ")),
        (Problem::NotOneOf(allowed), Lang::Pt) => format!("O campo \"{f}\" deve ser um de: {}.", allowed.join(", ")),
        (Problem::NotOneOf(allowed), Lang::Es) => format!("El campo \"{f}\" debe ser uno de: {}.", allowed.join(", ")),
        (Problem::NotDateTime, Lang::En) => format!("Field \"{f}\" must be an RFC 3339 date-time with a time zone."),
        (Problem::NotDateTime, Lang::Pt) => {
            format!("O campo \"{f}\" deve ser uma data-hora RFC 3339 com fuso horário.")
        }
        (Problem::NotDateTime, Lang::Es) => {
            format!("El campo \"{f}\" debe ser una fecha-hora RFC 3339 con zona horaria.")
        }
        (Problem::NotAPack, Lang::En) => {
            format!("Field \"{f}\" must be a pack of the catalog with a price (GET /v1/prices).")
        }
        (Problem::NotAPack, Lang::Pt) => {
            format!("O campo \"{f}\" deve ser um pacote do catálogo com preço (GET /v1/prices).")
        }
        (Problem::NotAPack, Lang::Es) => {
            format!("El campo \"{f}\" debe ser un paquete del catálogo con precio (GET /v1/prices).")
        }
        (Problem::NotInFuture, Lang::En) => format!("Field \"{f}\" must be in the future."),
        (Problem::NotInFuture, Lang::Pt) => format!("O campo \"{f}\" deve estar no futuro."),
        (Problem::NotInFuture, Lang::Es) => format!("El campo \"{f}\" debe estar en el futuro."),
        (Problem::TooMany { max }, Lang::En) => format!("Field \"{f}\" may list at most {max} items."),
        (Problem::TooMany { max }, Lang::Pt) => format!("O campo \"{f}\" pode listar no máximo {max} itens."),
        (Problem::TooMany { max }, Lang::Es) => format!("El campo \"{f}\" puede listar como máximo {max} elementos."),
        (Problem::NotWebhookUrl { local_http }, Lang::En) => format!(
            "Field \"{f}\" must be an absolute https:// URL to a public host, without a user name or password, of at most {MAX_URL} characters{}.",
            if *local_http { " (or http:// to localhost, 127.0.0.1 or [::1])" } else { "" }
        ),
        (Problem::NotWebhookUrl { local_http }, Lang::Pt) => format!(
            "O campo \"{f}\" deve ser uma URL https:// absoluta para um host público, sem usuário nem senha, de no máximo {MAX_URL} caracteres{}.",
            if *local_http { " (ou http:// para localhost, 127.0.0.1 ou [::1])" } else { "" }
        ),
        (Problem::NotWebhookUrl { local_http }, Lang::Es) => format!(
            "El campo \"{f}\" debe ser una URL https:// absoluta a un host público, sin usuario ni contraseña, de como máximo {MAX_URL} caracteres{}.",
            if *local_http { " (o http:// a localhost, 127.0.0.1 o [::1])" } else { "" }
        ),
    }
}

/// The problem+json response for an error.
pub fn problem(error: &Error, lang: Lang, request_id: &str) -> Response<Body> {
    let code = code_of(error);
    let mut body = Map::new();
    body.insert("type".into(), json!(format!("urn:credits:error:{}", code.code)));
    body.insert("title".into(), json!(code.title));
    body.insert("status".into(), json!(code.status.as_u16()));
    body.insert("code".into(), json!(code.code));
    body.insert("detail".into(), json!(detail(error, lang)));
    body.insert("requestId".into(), json!(request_id));
    match error {
        Error::InsufficientCredits { available, required } => {
            body.insert("available".into(), json!(available.get()));
            body.insert("required".into(), json!(required.get()));
            body.insert("shortfall".into(), json!(required.get().saturating_sub(available.get())));
        }
        Error::Validation(invalid) => {
            body.insert("field".into(), json!(invalid.field));
        }
        // `status` is the HTTP status in RFC 9457, so the hold's state
        // travels as `reservationStatus`.
        Error::HoldNotPending(status) => {
            body.insert("reservationStatus".into(), json!(status.as_str()));
        }
        Error::TooManyOpenHolds { open, limit } => {
            body.insert("openHolds".into(), json!(open));
            body.insert("limit".into(), json!(limit));
        }
        Error::TooManyLots { limit } | Error::TooManyEndpoints { limit } => {
            body.insert("limit".into(), json!(limit));
        }
        Error::AppliedUnread(_) => {
            body.insert("applied".into(), json!(true));
        }
        _ => {}
    }
    let mut response = Response::new(Body::from(Value::Object(body).to_string()));
    *response.status_mut() = code.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if let Error::Unavailable(_) | Error::AppliedUnread(_) = error {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Credits, HoldStatus};

    fn every_error() -> Vec<Error> {
        vec![
            Error::Validation(Invalid::new("units", Problem::OutOfRange { min: 1, max: 1000 })),
            Error::UnknownOperation("x".into()),
            Error::Unauthorized,
            Error::Forbidden,
            Error::ReadOnlyToken,
            Error::InsufficientCredits { available: Credits(3), required: Credits(5) },
            Error::HoldNotFound,
            Error::HoldNotPending(HoldStatus::Released),
            Error::HoldExpired,
            Error::TaskAlreadyLinked,
            Error::TooManyOpenHolds { open: 100, limit: 100 },
            Error::TooManyLots { limit: 100 },
            Error::EndpointNotFound,
            Error::TooManyEndpoints { limit: 20 },
            Error::PayloadTooLarge,
            Error::IdempotencyKeyReused,
            Error::RouteNotFound,
            Error::Unavailable("throttled".into()),
            Error::AppliedUnread("read failed".into()),
            Error::Internal("boom".into()),
        ]
    }

    /// Each variant's place: a new variant does not compile until it has
    /// one, and `every_error_is_listed` then asks for it in `every_error`.
    fn variant(error: &Error) -> usize {
        match error {
            Error::Validation(_) => 0,
            Error::UnknownOperation(_) => 1,
            Error::Unauthorized => 2,
            Error::Forbidden => 3,
            Error::ReadOnlyToken => 4,
            Error::InsufficientCredits { .. } => 5,
            Error::HoldNotFound => 6,
            Error::HoldNotPending(_) => 7,
            Error::HoldExpired => 8,
            Error::TaskAlreadyLinked => 9,
            Error::TooManyOpenHolds { .. } => 10,
            Error::TooManyLots { .. } => 11,
            Error::EndpointNotFound => 12,
            Error::TooManyEndpoints { .. } => 13,
            Error::PayloadTooLarge => 14,
            Error::IdempotencyKeyReused => 15,
            Error::RouteNotFound => 16,
            Error::Unavailable(_) => 17,
            Error::AppliedUnread(_) => 18,
            Error::Internal(_) => 19,
        }
    }

    #[test]
    fn every_error_is_listed() {
        let listed: std::collections::BTreeSet<usize> = every_error().iter().map(variant).collect();
        assert_eq!(listed, (0..20).collect());
    }

    /// docs/ERRORS.md is the callers' table: every (status, code) the
    /// service answers, and nothing it does not.
    #[test]
    fn the_error_table_in_the_docs_is_the_codes() {
        let doc = include_str!("../../../docs/ERRORS.md");
        let documented: std::collections::BTreeSet<(u16, String)> = doc
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let status = cells.next()?.parse().ok()?;
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status, code.to_owned()))
            })
            .collect();
        let answered = every_error()
            .iter()
            .map(|error| {
                let Code { status, code, .. } = code_of(error);
                (status.as_u16(), code.to_owned())
            })
            .collect();
        assert_eq!(documented, answered, "docs/ERRORS.md and code_of disagree");
    }

    #[test]
    fn every_code_speaks_three_different_languages() {
        for error in every_error() {
            let en = detail(&error, Lang::En);
            let pt = detail(&error, Lang::Pt);
            let es = detail(&error, Lang::Es);
            assert!(!en.is_empty() && en != pt && en != es && pt != es, "{error:?}");
        }
    }

    #[test]
    fn internal_details_never_reach_the_message() {
        for lang in [Lang::En, Lang::Pt, Lang::Es] {
            assert!(!detail(&Error::Internal("secret stack".into()), lang).contains("secret"));
            assert!(!detail(&Error::Unavailable("throttled".into()), lang).contains("throttled"));
        }
    }

    #[test]
    fn failures_say_the_change_may_have_been_applied() {
        for lang in [Lang::En, Lang::Pt, Lang::Es] {
            for error in [Error::Unavailable("x".into()), Error::Internal("x".into()), Error::AppliedUnread("x".into())]
            {
                let text = detail(&error, lang);
                assert!(text.contains("Idempotency-Key"), "{text}");
                for never in ["Nothing was changed", "Nada foi alterado", "No se cambió nada"] {
                    assert!(!text.contains(never), "{text}");
                }
            }
        }
        let body: Value = serde_json::from_slice(
            problem(&Error::TooManyOpenHolds { open: 100, limit: 100 }, Lang::En, "r").body().as_ref(),
        )
        .expect("json body");
        assert_eq!(
            (body["status"].as_u64(), body["openHolds"].as_u64(), body["limit"].as_u64()),
            (Some(409), Some(100), Some(100))
        );
    }

    #[test]
    fn accept_language_picks_by_quality() {
        assert_eq!(Lang::from_accept_language(Some("pt-BR,pt;q=0.9,en;q=0.8")), Lang::Pt);
        assert_eq!(Lang::from_accept_language(Some("pt")), Lang::Pt);
        assert_eq!(Lang::from_accept_language(Some("es-MX")), Lang::Es);
        assert_eq!(Lang::from_accept_language(Some("fr-FR, es;q=0.5")), Lang::Es);
        assert_eq!(Lang::from_accept_language(Some("en;q=0.4, pt-PT;q=0.9")), Lang::Pt);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
    }

    #[test]
    fn insufficient_credits_carries_the_figures() {
        let error = Error::InsufficientCredits { available: Credits(3), required: Credits(5) };
        let response = problem(&error, Lang::En, "req-1");
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json body");
        assert_eq!(body["available"], 3);
        assert_eq!(body["required"], 5);
        assert_eq!(body["shortfall"], 2);
        assert_eq!(body["type"], "urn:credits:error:insufficient_credits");
    }

    #[test]
    fn unavailable_sets_retry_after() {
        let response = problem(&Error::Unavailable("x".into()), Lang::En, "r");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
