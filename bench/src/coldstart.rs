//! Cold start, binary size and peak memory of the release binaries, each
//! started under the bench's local Runtime API against DynamoDB Local and
//! given a realistic first event; the same for a reference Lambda that only
//! builds the DynamoDB client, and for reserve built with cargo's default
//! release settings (the `perf` profile) to show what the tuned profile buys.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use credits_shared::domain::UserId;
use credits_shared::http::Function;
use credits_shared::Ledger;
use serde_json::{json, Value};

use crate::harness::cargo::cargo_build;
use crate::harness::http::{api_event, server_claims, BENCH_SERVER};
use crate::harness::ledger::{grant, request, user};
use crate::harness::runtime_api::{Answer, RuntimeApi};
use crate::harness::stats::{median, min, percentile};

/// Each binary's first invocation, counted from its exec.
const COLD_RUNS: usize = 7;
const WARM_INVOKES: usize = 1_000;
/// The sweep and the stream batch take 15-30 ms each against DynamoDB
/// Local; fewer of them keep the bench within its time.
const WARM_INVOKES_BACKGROUND: usize = 200;
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
const BFL_SECRET: &str = "bench-bfl-secret";
/// The functions' memory setting in template.yaml.
const MEMORY_MB: &str = "128";
/// Pending holds the bench's one user may have (`CREDITS_MAX_OPEN_HOLDS`):
/// the reserve's warm invokes alone leave a thousand open, and at the
/// default cap of 100 the rest would time the refusal instead.
const OPEN_HOLDS: u32 = 100_000;

/// What a binary is: one of the HTTP functions, the sweep, the stream
/// consumer, or the bench's reference Lambda.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http(Function),
    Cleanup,
    Stats,
    Reference,
}

impl Kind {
    /// Every binary the bench starts, the reference last.
    fn all() -> impl Iterator<Item = Kind> {
        Function::ALL.into_iter().map(Kind::Http).chain([Kind::Cleanup, Kind::Stats, Kind::Reference])
    }

    fn binary(self) -> &'static str {
        match self {
            Kind::Http(function) => function.name(),
            Kind::Cleanup => "cleanup",
            Kind::Stats => "stats",
            Kind::Reference => "reference",
        }
    }

    fn package(self) -> String {
        match self {
            Kind::Reference => "credits-bench-reference".to_owned(),
            _ => format!("credits-{}", self.binary()),
        }
    }

    fn first_event(self) -> &'static str {
        match self {
            Kind::Http(Function::Reserve) => "POST /v1/reservations",
            Kind::Http(Function::Confirm) => "POST /v1/reservations/{id}/confirm (a new hold)",
            Kind::Http(Function::Release) => "POST /v1/reservations/{id}/release (a new hold)",
            Kind::Http(Function::Account) => "GET /v1/balance",
            Kind::Http(Function::Admin) => "GET /v1/admin/users/{userId}/balance",
            Kind::Http(Function::Webhook) => "POST /v1/webhooks/bfl (signed, settles a linked hold)",
            Kind::Cleanup => "the schedule's event (a sweep)",
            Kind::Stats => "a stream batch of one new hold",
            Kind::Reference => "GET /v1/balance (answered without I/O)",
        }
    }

    fn warm_invokes(self) -> usize {
        match self {
            Kind::Cleanup | Kind::Stats => WARM_INVOKES_BACKGROUND,
            _ => WARM_INVOKES,
        }
    }

    fn warm_event(self) -> &'static str {
        match self {
            Kind::Http(Function::Reserve) => "a new hold each",
            Kind::Http(Function::Confirm | Function::Release) => "replays of the first",
            Kind::Http(Function::Webhook) => "redeliveries of the first",
            Kind::Stats => "redeliveries of the first batch",
            Kind::Http(Function::Account | Function::Admin) | Kind::Cleanup | Kind::Reference => "the same event",
        }
    }
}

const RESERVE: Kind = Kind::Http(Function::Reserve);

struct Target {
    label: String,
    kind: Kind,
    path: PathBuf,
}

/// The table and the user the functions' events act on.
pub struct Fixture {
    pub ledger: Ledger,
    pub endpoint: String,
    pub user: UserId,
}

impl Fixture {
    pub async fn new(ledger: Ledger, endpoint: String) -> Result<Fixture, String> {
        let ledger = ledger.with_max_open_holds(OPEN_HOLDS);
        let user = user("cold");
        grant(&ledger, &user, 1_000_000_000).await?;
        Ok(Fixture { ledger, endpoint, user })
    }

    /// The app's back end: a client-credentials token's claims.
    fn claims(&self) -> Value {
        server_claims()
    }

    /// An event for `kind`; writes what it needs first (a hold to confirm).
    async fn event(&self, kind: Kind) -> Result<Value, String> {
        let hold = |task: Option<String>| async move {
            let mut r = request("design_generate_image", 1);
            r.task_id = task;
            self.ledger.reserve(&self.user, r).await.map(|h| h.into_inner().reservation_id).map_err(|e| e.to_string())
        };
        let headers = json!({"content-type": "application/json", "credits-user": self.user.as_str()});
        Ok(match kind {
            RESERVE => api_event(
                "POST",
                "/v1/reservations",
                Some(self.claims()),
                headers,
                r#"{"operation":"design_generate_image"}"#,
            ),
            Kind::Http(Function::Confirm | Function::Release) => {
                let id = hold(None).await?;
                let verb = kind.binary();
                api_event("POST", &format!("/v1/reservations/{id}/{verb}"), Some(self.claims()), headers, "")
            }
            Kind::Http(Function::Account) | Kind::Reference => {
                api_event("GET", "/v1/balance", Some(self.claims()), headers, "")
            }
            Kind::Http(Function::Admin) => {
                let claims = json!({"sub": "bench-admin", "cognito:groups": "[credits-admin]"});
                api_event("GET", &format!("/v1/admin/users/{}/balance", self.user), Some(claims), headers, "")
            }
            Kind::Http(Function::Webhook) => {
                let task = format!("cold-{}", uuid::Uuid::new_v4().simple());
                hold(Some(task.clone())).await?;
                let body = json!({"id": task, "status": "Ready", "result": {"sample": "https://x/y.png"}}).to_string();
                let signature = credits_shared::inbound::bfl::sign(BFL_SECRET, body.as_bytes());
                let headers = json!({"content-type": "application/json", "x-bfl-signature": signature});
                api_event("POST", "/v1/webhooks/bfl", None, headers, &body)
            }
            // template.yaml's ScheduleV2 input.
            Kind::Cleanup => json!({"source": "credits.schedule", "action": "sweep"}),
            Kind::Stats => stream_event(&self.user, self.ledger.now().millis()),
        })
    }
}

/// A DynamoDB stream batch as Lambda delivers it: one hold placed.
fn stream_event(user: &UserId, now: i64) -> Value {
    let id = uuid::Uuid::new_v4();
    let (s, n) = (|v: &str| json!({"S": v}), |v: i64| json!({"N": v.to_string()}));
    json!({"Records": [{
        "eventID": uuid::Uuid::new_v4().simple().to_string(),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/credits/stream/2026-11-23T00:00:00.000",
        "dynamodb": {
            "ApproximateCreationDateTime": now / 1000,
            "Keys": {"pk": s(&format!("HOLD#{id}")), "sk": s("HOLD")},
            "NewImage": {
                "pk": s(&format!("HOLD#{id}")), "sk": s("HOLD"), "entity": s("hold"),
                "reservationId": s(&id.to_string()), "userId": s(user.as_str()),
                "operation": s("design_generate_image"), "status": s("pending"), "provider": s("bfl"),
                "units": n(1), "unitCost": n(5), "amount": n(5), "createdAt": n(now), "expiresAt": n(now + 900_000),
                "capturedUnits": n(0), "capturedAmount": n(0), "releasedAmount": n(0),
            },
            "SequenceNumber": "100000000000000000001",
            "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }]})
}

/// Starts `target` under a fresh Runtime API with `first` queued.
async fn start(
    target: &Target,
    fixture: &Fixture,
    first: Value,
) -> Result<(RuntimeApi, tokio::process::Child, String, Instant), String> {
    let api = RuntimeApi::start().await?;
    let id = api.queue(first)?;
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let function = target.kind.binary();
    let mut command = tokio::process::Command::new(&target.path);
    // Only what Lambda's environment holds, so nothing from the bench's
    // shell (a profile, a proxy) changes what the function does.
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("credits-{function}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", &region)
        .env("AWS_DEFAULT_REGION", &region)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_SESSION_TOKEN", "bench")
        // The SDK's own endpoint setting, not the functions' DYNAMODB_ENDPOINT:
        // that one also swaps in fixed credentials, and the production path
        // (the default credential chain) is the one to time.
        .env("AWS_ENDPOINT_URL_DYNAMODB", &fixture.endpoint)
        .env("CREDITS_TABLE", fixture.ledger.store().table())
        .env("CREDITS_SERVER_CLIENT_IDS", BENCH_SERVER)
        .env("CREDITS_WEBHOOK_SECRET_BFL", BFL_SECRET)
        .env("CREDITS_MAX_OPEN_HOLDS", OPEN_HOLDS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = command.spawn().map_err(|e| format!("starting {}: {e}", target.path.display()))?;
    Ok((api, child, id, started))
}

/// What an answer says: an HTTP status, or ok / error for the others.
fn outcome(answer: &Answer) -> String {
    if !answer.ok {
        return format!("error: {}", String::from_utf8_lossy(&answer.body).chars().take(120).collect::<String>());
    }
    match serde_json::from_slice::<Value>(&answer.body).ok().and_then(|v| v["statusCode"].as_u64()) {
        Some(status) => status.to_string(),
        None => "ok".into(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The answer to the first event, or why there is none (a function that
/// exits at init is not waited for).
async fn first_answer(api: &mut RuntimeApi, child: &mut tokio::process::Child, id: &str) -> Result<Answer, String> {
    tokio::select! {
        answer = api.answer(id, ANSWER_WITHIN) => answer,
        status = child.wait() => Err(format!("exited before answering ({})", status.map_err(|e| e.to_string())?)),
    }
}

#[derive(Default)]
struct Cold {
    next: Vec<f64>,
    first: Vec<f64>,
    outcomes: Vec<String>,
}

/// One cold start of `target`, added to `cold`.
async fn cold_once(target: &Target, fixture: &Fixture, cold: &mut Cold) -> Result<(), String> {
    let event = fixture.event(target.kind).await?;
    let (mut api, mut child, id, started) = start(target, fixture, event).await?;
    let answer = first_answer(&mut api, &mut child, &id).await;
    let _ = child.kill().await;
    let answer = answer.map_err(|e| format!("{}: {e}", target.label))?;
    let next = api.first_next().ok_or_else(|| format!("{}: answered without asking", target.label))?;
    cold.next.push(ms(next - started));
    cold.first.push(ms(answer.at - started));
    cold.outcomes.push(outcome(&answer));
    Ok(())
}

/// `COLD_RUNS` cold starts of every target, taken in rounds (each round
/// starts every target once) so that DynamoDB Local speeding up or the
/// machine getting busier during the section falls on all of them alike,
/// not on whichever binary comes last.
async fn cold_rounds(targets: &[Target], fixture: &Fixture) -> Vec<Result<Cold, String>> {
    let mut colds: Vec<Result<Cold, String>> = targets.iter().map(|_| Ok(Cold::default())).collect();
    for round in 0..COLD_RUNS {
        eprintln!("bench: cold starts, round {} of {COLD_RUNS}", round + 1);
        for (target, cold) in targets.iter().zip(colds.iter_mut()) {
            if let Ok(samples) = cold {
                if let Err(e) = cold_once(target, fixture, samples).await {
                    *cold = Err(e);
                }
            }
        }
    }
    colds
}

struct Memory {
    /// VmHWM after the first answer and after the warm invokes, KiB.
    first_kib: u64,
    warm_kib: u64,
    warm_p50_ms: f64,
    errors: usize,
}

/// The process's peak resident set (`VmHWM`), KiB. Reading procfs does no
/// disk I/O, so the blocking read is harmless here.
fn peak_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM".to_owned())
}

async fn memory(target: &Target, fixture: &Fixture) -> Result<Memory, String> {
    let first = fixture.event(target.kind).await?;
    let (mut api, mut child, id, _) = start(target, fixture, first.clone()).await?;
    let pid = child.id().ok_or("no pid")?;
    first_answer(&mut api, &mut child, &id).await?;
    let first_kib = peak_kib(pid)?;
    let (mut times, mut errors) = (Vec::with_capacity(WARM_INVOKES), 0);
    for _ in 0..target.kind.warm_invokes() {
        let event = match target.kind {
            // A reserve is new each time; the others repeat the first.
            RESERVE => fixture.event(RESERVE).await?,
            _ => first.clone(),
        };
        let t = Instant::now();
        let answer = api.invoke(event, ANSWER_WITHIN).await?;
        times.push(ms(t.elapsed()));
        let status = outcome(&answer);
        // A refusal (4xx) is not the work being timed either.
        if status.starts_with("error") || status.starts_with('4') || status.starts_with('5') {
            errors += 1;
        }
    }
    let warm_kib = peak_kib(pid)?;
    let _ = child.kill().await;
    Ok(Memory { first_kib, warm_kib, warm_p50_ms: percentile(&mut times, 0.5), errors })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The tuned reserve's row, for the headline table: init and first answer
/// (medians, ms), size and peak memory after the warm invokes (MiB).
pub struct Figures {
    pub init_ms: f64,
    pub first_answer_ms: f64,
    pub size_mib: f64,
    pub memory_mib: f64,
}

/// The section; the tuned reserve's figures when it ran.
pub async fn coldstart(fixture: &Fixture, out: &mut String) -> Result<Option<Figures>, String> {
    let packages: Vec<String> = Kind::all().map(Kind::package).collect();
    let mut release_args = vec!["--release"];
    for package in &packages {
        release_args.extend(["-p", package.as_str()]);
    }
    eprintln!("bench: building the release binaries (minutes on a fresh checkout)");
    let (release, release_took) = cargo_build(&release_args).await?;
    // With the bench itself in the same invocation, reserve's dependencies
    // resolve to the bench's features and are already compiled.
    let (perf, perf_took) = cargo_build(&["--profile", "perf", "-p", "credits-bench", "-p", "credits-reserve"]).await?;

    let mut targets = Vec::new();
    for kind in Kind::all() {
        let binary = kind.binary();
        let path = release.get(binary).ok_or_else(|| format!("cargo built no {binary}"))?;
        targets.push(Target { label: binary.to_owned(), kind, path: path.clone() });
    }
    let untuned = perf.get("reserve").ok_or("cargo built no perf reserve")?;
    targets.push(Target { label: "reserve, cargo's default release".into(), kind: RESERVE, path: untuned.clone() });
    // Other builds of reserve to compare by hand (another profile's binary,
    // copied aside): BENCH_EXTRA_RESERVE=path,path.
    for path in std::env::var("BENCH_EXTRA_RESERVE").unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        targets.push(Target { label: format!("reserve, {path}"), kind: RESERVE, path: PathBuf::from(path) });
    }

    // DynamoDB Local's JIT warms up on its first requests: spend those
    // before the first binary is timed, not on it.
    // (Fifty reserves were not enough: the first binary timed still paid.)
    for _ in 0..300 {
        let hold = fixture.ledger.reserve(&fixture.user, request("design_generate_image", 1)).await;
        let id = hold.map_err(|e| e.to_string())?.into_inner().reservation_id;
        let actor = credits_shared::domain::Actor::Server;
        fixture.ledger.confirm(Some(&fixture.user), id, None, actor).await.map_err(|e| e.to_string())?;
        fixture.ledger.balance(&fixture.user).await.map_err(|e| e.to_string())?;
    }

    let _ = writeln!(out, "## Cold start, size and memory\n");
    let _ = writeln!(
        out,
        "Each binary started {COLD_RUNS} times (in rounds: each round starts every binary once) under the bench's local Lambda Runtime API (`bench/src/harness/runtime_api.rs`) with\n\
         Lambda's environment ({MEMORY_MB} MB, fake credentials, a fresh DynamoDB Local as the endpoint, {OPEN_HOLDS} open holds allowed\n\
         per user: the reserve's warm invokes leave {WARM_INVOKES} open) and one event queued; times\n\
         from exec to its first `GET …/invocation/next` (init: config, client) and to its first answer (init + the\n\
         first request, whose DynamoDB connection is new). Then one process per binary took {WARM_INVOKES} warm invokes\n\
         in a row ({WARM_INVOKES_BACKGROUND} for cleanup and stats; a warm error is a 4xx or 5xx answer or a failed invoke); peak memory is the kernel's `VmHWM` for the process. `reference` (`bench/reference`) only\n\
         loads the AWS config and builds the DynamoDB client. The functions take their endpoint from\n\
         `AWS_ENDPOINT_URL_DYNAMODB` and their credentials from the default chain, as on Lambda. No network, no TLS\n\
         and no Firecracker here: on Lambda, add the sandbox's own start, a TLS handshake and real round trips.\n"
    );
    let _ = writeln!(
        out,
        "| binary | size (MiB) | init: exec → first next, median / min (ms) | exec → first answer, median / min (ms) | first answer | peak memory after first / after the warm invokes (MiB) | warm invoke p50 (ms) | warm errors |\n\
         |---|---:|---:|---:|---|---:|---:|---:|"
    );
    let colds = cold_rounds(&targets, fixture).await;
    let mut figures = None;
    for (target, cold) in targets.iter().zip(colds) {
        eprintln!("bench: warm invokes of {}", target.label);
        let size = std::fs::metadata(&target.path).map(|m| m.len()).map_err(|e| e.to_string())?;
        let (c, m) = match (cold, memory(target, fixture).await) {
            (Ok(c), Ok(m)) => (c, m),
            (Err(e), _) | (_, Err(e)) => {
                let _ =
                    writeln!(out, "| {} | {:.1} | failed: {e} | | | | | |", target.label, size as f64 / 1_048_576.0);
                continue;
            }
        };
        let mut outcomes = c.outcomes.clone();
        outcomes.dedup();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {:.1} / {:.1} | {:.2} | {} |",
            target.label,
            size as f64 / 1_048_576.0,
            median(&c.next),
            min(&c.next),
            median(&c.first),
            min(&c.first),
            outcomes.join(", "),
            mib(m.first_kib),
            mib(m.warm_kib),
            m.warm_p50_ms,
            m.errors
        );
        if target.kind == RESERVE && target.label == RESERVE.binary() {
            figures = Some(Figures {
                init_ms: median(&c.next),
                first_answer_ms: median(&c.first),
                size_mib: size as f64 / 1_048_576.0,
                memory_mib: mib(m.warm_kib),
            });
        }
    }
    let _ = writeln!(out, "\nFirst events:\n");
    for kind in Kind::all() {
        let binary = kind.binary();
        let _ =
            writeln!(out, "- {binary}: {}; {} warm: {}.", kind.first_event(), kind.warm_invokes(), kind.warm_event());
    }
    let _ = writeln!(
        out,
        "\nThe release profile (`[profile.release]` in Cargo.toml: opt-level \"s\", one codegen unit, stripped, panic = abort,\n\
         no cross-crate LTO; the comment there gives the LTO figures behind that choice) against cargo's default release\n\
         settings (the `perf` profile: opt-level 3, thin local LTO, 16 codegen units, unwinding, symbols kept) is the first\n\
         row against the `reserve, cargo's default release` row. Build times in this run: {:.0} s for the release binaries\n\
         (one cargo invocation, dependencies compiled once), {:.0} s for the untuned reserve (it shares the bench's compiled\n\
         dependencies); both are near 0 when nothing changed.\n",
        release_took.as_secs_f64(),
        perf_took.as_secs_f64()
    );
    Ok(figures)
}
