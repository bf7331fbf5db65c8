//! `herald listen`: a webhook receiver for developers testing their
//! integration. It answers every POST on any path, verifies its signature with
//! the endpoint's secret or public key (`herald-signature`, the same code
//! Herald signs with), prints each delivery to stdout, and lists the last ones
//! as JSON at `GET /`.
//!
//! It answers with a fixed status whatever the verification says, so a
//! developer sees every delivery, retries included; `--fail-first` fails the
//! first deliveries on purpose to exercise Herald's retries.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use herald_signature::{
    Algorithm, Encoding, HmacScheme, SignatureError, SignatureScheme, VerifyingKey,
};

use crate::http::{serve, ConnectionLimits};

/// The largest delivery body accepted: well above Herald's own limit on payloads.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The header Herald names the event type in.
const EVENT_TYPE_HEADER: &str = herald_worker::send::EVENT_TYPE_HEADER;

/// A local listener needs no tight limits, but an idle timeout above reqwest's
/// 90 s pool timeout means Herald's worker, not this side, closes kept-alive
/// connections (so no attempt is sent on a connection being closed).
const LIMITS: ConnectionLimits = ConnectionLimits {
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(120),
    max_connections: 1024,
};

/// The flags of `herald listen`.
#[derive(clap::Args)]
pub struct ListenArgs {
    /// Address to listen on. With port 0 a free port is picked; the first line
    /// printed names the address either way ("listening on http://IP:PORT").
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,
    /// The endpoint's key, as Herald's API shows it at
    /// GET /api/v1/app/{app}/endpoint/{endpoint}/secret: a whsec_ secret, or a
    /// whpk_ public key for --scheme ed25519. Without it deliveries are
    /// printed as "not verified (no secret given)".
    #[arg(long, value_name = "KEY", value_parser = secret_text)]
    pub secret: Option<SecretString>,
    /// The endpoint's signature scheme (its signatureScheme).
    #[arg(long, value_enum, default_value_t = SchemeName::Standard)]
    pub scheme: SchemeName,
    /// With --scheme hmac: the header carrying the signature (required).
    #[arg(long, value_name = "NAME", required_if_eq("scheme", "hmac"))]
    pub hmac_header: Option<String>,
    /// With --scheme hmac: the hash under the HMAC.
    #[arg(long, value_name = "ALGORITHM", value_enum, default_value_t = HmacAlgorithm::Sha256)]
    pub hmac_algorithm: HmacAlgorithm,
    /// With --scheme hmac: how the signature is written in the header.
    #[arg(long, value_name = "ENCODING", value_enum, default_value_t = HmacEncoding::Hex)]
    pub hmac_encoding: HmacEncoding,
    /// How far a signed timestamp may be from this machine's clock, in
    /// seconds, either way (standard, ed25519, stripe and slack sign one).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub tolerance: u64,
    /// The status every delivery is answered with (200-599), verified or not.
    #[arg(long, value_name = "CODE", default_value = "204", value_parser = parse_status)]
    pub status: StatusCode,
    /// The status the first --fail-first deliveries are answered with (200-599).
    #[arg(long, value_name = "CODE", default_value = "500", value_parser = parse_status)]
    pub fail_status: StatusCode,
    /// Answer the first N deliveries with --fail-status, to see Herald retry.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_first: u64,
    /// How many of the last deliveries GET / lists.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub keep: usize,
}

/// The values of `--scheme`: an endpoint's `signatureScheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeName {
    /// Standard Webhooks with the whsec_ secret (v1), Herald's default.
    Standard,
    /// Standard Webhooks with an Ed25519 key (v1a): give the whpk_ public key.
    Ed25519,
    /// Stripe-Signature.
    Stripe,
    /// X-Hub-Signature-256.
    Github,
    /// X-Shopify-Hmac-SHA256.
    Shopify,
    /// X-Slack-Signature and X-Slack-Request-Timestamp.
    Slack,
    /// A custom header: see --hmac-header, --hmac-algorithm, --hmac-encoding.
    Hmac,
}

/// The values of `--hmac-algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HmacAlgorithm {
    Sha256,
    Sha384,
    Sha512,
    Sha1,
}

/// The values of `--hmac-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HmacEncoding {
    Hex,
    Base64,
}

/// Any text: the key is parsed once the scheme is known.
fn secret_text(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// A final HTTP status (RFC 9110 §15): 1xx is not an answer and above 599 is
/// not a status.
fn parse_status(text: &str) -> Result<StatusCode, String> {
    let code: u16 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a status code"))?;
    if !(200..=599).contains(&code) {
        return Err(format!("{code} is not a status code from 200 to 599"));
    }
    StatusCode::from_u16(code).map_err(|e| e.to_string())
}

impl ListenArgs {
    /// The scheme the flags name, with its HMAC parts for `hmac`.
    fn signature_scheme(&self) -> anyhow::Result<SignatureScheme> {
        if self.scheme != SchemeName::Hmac && self.hmac_header.is_some() {
            bail!("--hmac-header only applies to --scheme hmac");
        }
        Ok(match self.scheme {
            SchemeName::Standard => SignatureScheme::Standard,
            SchemeName::Ed25519 => SignatureScheme::Ed25519,
            SchemeName::Stripe => SignatureScheme::Stripe,
            SchemeName::Github => SignatureScheme::Github,
            SchemeName::Shopify => SignatureScheme::Shopify,
            SchemeName::Slack => SignatureScheme::Slack,
            SchemeName::Hmac => {
                let header = self
                    .hmac_header
                    .clone()
                    .context("--scheme hmac needs --hmac-header")?;
                let algorithm = match self.hmac_algorithm {
                    HmacAlgorithm::Sha256 => Algorithm::Sha256,
                    HmacAlgorithm::Sha384 => Algorithm::Sha384,
                    HmacAlgorithm::Sha512 => Algorithm::Sha512,
                    HmacAlgorithm::Sha1 => Algorithm::Sha1,
                };
                let encoding = match self.hmac_encoding {
                    HmacEncoding::Hex => Encoding::Hex,
                    HmacEncoding::Base64 => Encoding::Base64,
                };
                let scheme = HmacScheme::new(header, algorithm, encoding)
                    .context("invalid --hmac-header")?;
                SignatureScheme::Hmac(scheme)
            }
        })
    }
}

/// What `herald listen` does, checked once at start.
#[derive(Debug)]
pub struct Listen {
    /// Where to listen.
    pub addr: SocketAddr,
    verifier: Option<Verifier>,
    answers: Answers,
    keep: usize,
}

impl Listen {
    /// Checks the flags: a key that parses and suits the scheme, an HMAC
    /// header that is a header name.
    pub fn from_args(args: ListenArgs) -> anyhow::Result<Self> {
        let scheme = args.signature_scheme()?;
        let tolerance = Duration::from_secs(args.tolerance);
        let verifier = match &args.secret {
            Some(secret) => Some(Verifier::new(scheme, secret.expose_secret(), tolerance)?),
            None => None,
        };
        Ok(Self {
            addr: args.addr,
            verifier,
            answers: Answers {
                status: args.status,
                fail_status: args.fail_status,
                fail_first: args.fail_first,
            },
            keep: args.keep,
        })
    }

    /// What the listener will do, for the lines printed after the address.
    fn describe(&self) -> String {
        let verifying = match &self.verifier {
            Some(verifier) => format!(
                "verifying {} signatures (tolerance {} s)",
                verifier.scheme.name(),
                verifier.tolerance.as_secs()
            ),
            None => "not verifying signatures: no --secret given".to_owned(),
        };
        let answers = &self.answers;
        let answering = match answers.fail_first {
            0 => format!("answering {}", answers.status.as_u16()),
            n => format!(
                "answering {} to the first {n}, then {}",
                answers.fail_status.as_u16(),
                answers.status.as_u16()
            ),
        };
        format!(
            "{verifying}\n{answering}\nGET / lists the last {} deliveries as JSON\n",
            self.keep
        )
    }
}

/// A key and the scheme it verifies.
#[derive(Debug)]
struct Verifier {
    scheme: SignatureScheme,
    key: VerifyingKey,
    tolerance: Duration,
}

impl Verifier {
    fn new(scheme: SignatureScheme, text: &str, tolerance: Duration) -> anyhow::Result<Self> {
        let key = match VerifyingKey::parse(text) {
            Ok(key) => key,
            Err(SignatureError::UnsuitableKey) => bail!(
                "--secret is a whsk_ secret key, which only the sender holds: give the whpk_ public key Herald shows at GET …/endpoint/{{id}}/secret"
            ),
            Err(error) => bail!("invalid --secret: {error}"),
        };
        if !scheme.accepts(&key) {
            match key {
                VerifyingKey::Symmetric(_) => bail!(
                    "--scheme {} verifies with the endpoint's whpk_ public key, not a whsec_ secret",
                    scheme.name()
                ),
                VerifyingKey::Asymmetric(_) => bail!(
                    "--scheme {} verifies with the endpoint's whsec_ secret; a whpk_ public key verifies --scheme ed25519 or standard",
                    scheme.name()
                ),
            }
        }
        Ok(Self {
            scheme,
            key,
            tolerance,
        })
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Verification {
        // `HeaderMap` looks names up case-insensitively, as the scheme expects.
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        match self.scheme.verify(&self.key, header, body, self.tolerance) {
            Ok(()) => Verification::Verified,
            Err(error) => Verification::Failed(error),
        }
    }
}

/// What the signature check said about one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verification {
    Verified,
    Failed(SignatureError),
    NoSecret,
}

impl Verification {
    /// `(verified, error)` as `GET /` shows them.
    fn outcome(&self) -> (bool, Option<String>) {
        match self {
            Self::Verified => (true, None),
            Self::Failed(error) => (false, Some(error.to_string())),
            Self::NoSecret => (false, Some("no secret given".to_owned())),
        }
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified => f.write_str("verified"),
            Self::Failed(error) => write!(f, "NOT VERIFIED: {error}"),
            Self::NoSecret => f.write_str("not verified (no secret given)"),
        }
    }
}

/// Which status each delivery gets.
#[derive(Debug, Clone, Copy)]
struct Answers {
    status: StatusCode,
    fail_status: StatusCode,
    fail_first: u64,
}

impl Answers {
    /// The status of the delivery that arrived after `earlier` others.
    fn status_for(&self, earlier: u64) -> StatusCode {
        if earlier < self.fail_first {
            self.fail_status
        } else {
            self.status
        }
    }
}

/// One delivery as `GET /` lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    received_at: DateTime<Utc>,
    method: String,
    path: String,
    msg_id: Option<String>,
    event_type: Option<String>,
    verified: bool,
    error: Option<String>,
    #[serde(serialize_with = "status_code")]
    status: StatusCode,
    headers: BTreeMap<String, String>,
    body: Body,
}

/// A status as its number.
fn status_code<S: serde::Serializer>(
    status: &StatusCode,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

/// A delivery's body: the JSON exactly as sent, or the text of anything else.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Body {
    Json(Box<RawValue>),
    Text(String),
}

impl Body {
    fn new(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Box<RawValue>>(bytes) {
            Ok(json) => Self::Json(json),
            Err(_) => Self::Text(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    /// The body for a terminal: JSON re-indented, text as it is.
    fn pretty(&self) -> String {
        match self {
            Self::Json(json) => reindent_json(json.get()),
            Self::Text(text) => text.clone(),
        }
    }
}

/// The request as it arrived, before it is numbered and answered.
struct Arrival<'a> {
    received_at: DateTime<Utc>,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Delivery {
    fn new(arrival: Arrival<'_>, verification: &Verification, status: StatusCode) -> Self {
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in arrival.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let (verified, error) = verification.outcome();
        let path = arrival.uri.path_and_query().map_or("/", |p| p.as_str());
        Self {
            received_at: arrival.received_at,
            method: arrival.method.to_string(),
            path: path.to_owned(),
            msg_id: headers.get(herald_signature::standard::WEBHOOK_ID).cloned(),
            event_type: headers.get(EVENT_TYPE_HEADER).cloned(),
            verified,
            error,
            status,
            headers,
            body: Body::new(arrival.body),
        }
    }

    /// The block printed for the delivery.
    fn report(&self, verification: &Verification) -> String {
        format!(
            "{separator}\n{time}  {method} {path}\nevent type  {event_type}\nmessage id  {msg_id}\nsignature   {verification}\nanswered    {status}\n{body}\n",
            separator = "-".repeat(72),
            time = self.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            method = self.method,
            path = self.path,
            event_type = self.event_type.as_deref().unwrap_or("-"),
            msg_id = self.msg_id.as_deref().unwrap_or("-"),
            status = self.status,
            body = self.body.pretty(),
        )
    }
}

/// The last `keep` deliveries, oldest first.
#[derive(Debug)]
struct History {
    keep: usize,
    deliveries: VecDeque<Delivery>,
}

impl History {
    fn new(keep: usize) -> Self {
        Self {
            keep,
            deliveries: VecDeque::with_capacity(keep.min(1024)),
        }
    }

    /// Adds a delivery, forgetting the oldest when `keep` are held.
    fn push(&mut self, delivery: Delivery) {
        if self.keep == 0 {
            return;
        }
        if self.deliveries.len() == self.keep {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(delivery);
    }
}

/// What the handlers share.
struct ListenState {
    verifier: Option<Verifier>,
    answers: Answers,
    recorded: Mutex<Recorded>,
}

/// Under one lock so deliveries are numbered, printed and listed in one order.
struct Recorded {
    count: u64,
    history: History,
}

impl ListenState {
    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `GET /` listing.
#[derive(Serialize)]
struct Listing<'a> {
    deliveries: &'a VecDeque<Delivery>,
}

/// Binds `--addr` and serves until `shutdown`.
pub async fn listen(args: ListenArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = Listen::from_args(args)?;
    let listener = TcpListener::bind(listen.addr)
        .await
        .with_context(|| format!("cannot listen on {}", listen.addr))?;
    run(listen, listener, shutdown).await
}

/// Prints the address (the first line of stdout), then records deliveries on
/// `listener` until `shutdown` is cancelled and connections have finished.
pub async fn run(
    listen: Listen,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    print(&format!(
        "listening on http://{address}\n{}",
        listen.describe()
    ));
    let state = Arc::new(ListenState {
        verifier: listen.verifier,
        answers: listen.answers,
        recorded: Mutex::new(Recorded {
            count: 0,
            history: History::new(listen.keep),
        }),
    });
    serve(listener, router(state), LIMITS, shutdown).await;
    Ok(())
}

fn router(state: Arc<ListenState>) -> Router {
    Router::new()
        .route("/", get(list_deliveries).post(receive))
        .route("/{*path}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Lists the last deliveries, oldest first.
async fn list_deliveries(State(state): State<Arc<ListenState>>) -> Response {
    let recorded = state.lock();
    Json(Listing {
        deliveries: &recorded.history.deliveries,
    })
    .into_response()
}

/// Verifies, prints and records one delivery, and answers it.
async fn receive(
    State(state): State<Arc<ListenState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let received_at = Utc::now();
    let verification = match &state.verifier {
        Some(verifier) => verifier.verify(&headers, &body),
        None => Verification::NoSecret,
    };
    let arrival = Arrival {
        received_at,
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let mut recorded = state.lock();
    let status = state.answers.status_for(recorded.count);
    recorded.count += 1;
    let delivery = Delivery::new(arrival, &verification, status);
    print(&delivery.report(&verification));
    recorded.history.push(delivery);
    status
}

/// Writes to stdout and flushes: it is often a pipe, which would hold the
/// text back. A closed stdout is ignored; the listing still has everything.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Indents valid JSON text two spaces a level, keeping every token as sent
/// (key order, number spelling, escapes), which a parse and re-print would not.
fn reindent_json(json: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', 2 * depth));
    }
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                match chars.next_if(|c| matches!(c, '}' | ']')) {
                    Some(close) => out.push(close),
                    None => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ListenArgs,
    }

    fn args(flags: &[&str]) -> Result<ListenArgs, clap::Error> {
        let argv = std::iter::once("listen").chain(flags.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    fn listen(flags: &[&str]) -> anyhow::Result<Listen> {
        Listen::from_args(args(flags).expect("flags parse"))
    }

    fn public_key() -> String {
        herald_signature::SigningKey::Asymmetric(herald_signature::ed25519::SecretKey::generate())
            .verifying_key()
            .to_text()
    }

    fn delivery(n: u64) -> Delivery {
        let headers = HeaderMap::new();
        let uri: Uri = format!("/hook/{n}").parse().expect("uri");
        let arrival = Arrival {
            received_at: Utc::now(),
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body: b"{}",
        };
        Delivery::new(arrival, &Verification::NoSecret, StatusCode::NO_CONTENT)
    }

    #[test]
    fn defaults_listen_on_port_9000_answer_204_and_keep_100() {
        let listen = listen(&[]).expect("defaults are valid");
        assert_eq!(listen.addr, "127.0.0.1:9000".parse().expect("addr"));
        assert!(listen.verifier.is_none());
        assert_eq!(listen.answers.status_for(0), StatusCode::NO_CONTENT);
        assert_eq!(listen.keep, 100);
    }

    #[test]
    fn the_first_deliveries_get_the_fail_status() {
        let listen = listen(&[
            "--fail-first",
            "2",
            "--fail-status",
            "503",
            "--status",
            "200",
        ])
        .expect("valid");
        let statuses: Vec<u16> = (0..4)
            .map(|n| listen.answers.status_for(n).as_u16())
            .collect();
        assert_eq!(statuses, [503, 503, 200, 200]);
    }

    #[test]
    fn status_codes_outside_200_to_599_are_refused() {
        for code in ["99", "100", "199", "600", "1000", "abc", "-1"] {
            assert!(args(&["--status", code]).is_err(), "--status {code}");
            assert!(
                args(&["--fail-status", code]).is_err(),
                "--fail-status {code}"
            );
        }
        assert!(args(&["--status", "599", "--fail-status", "200"]).is_ok());
    }

    #[test]
    fn every_scheme_takes_the_key_kind_it_verifies_with() {
        for scheme in ["standard", "stripe", "github", "shopify", "slack"] {
            listen(&["--scheme", scheme, "--secret", SECRET]).expect(scheme);
        }
        let public = public_key();
        listen(&["--scheme", "ed25519", "--secret", &public]).expect("ed25519 with whpk_");
        listen(&["--scheme", "standard", "--secret", &public]).expect("standard with whpk_");
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_refused_with_what_to_give_instead() {
        let error = listen(&["--scheme", "ed25519", "--secret", SECRET]).unwrap_err();
        assert!(error.to_string().contains("whpk_ public key"), "{error}");
        let error = listen(&["--scheme", "github", "--secret", &public_key()]).unwrap_err();
        assert!(error.to_string().contains("whsec_ secret"), "{error}");
        let secret_key = herald_signature::ed25519::SecretKey::generate().to_text();
        let error = listen(&["--secret", &secret_key]).unwrap_err();
        assert!(error.to_string().contains("whsk_"), "{error}");
        let error = listen(&["--secret", "whsec_!!not base64"]).unwrap_err();
        assert!(error.to_string().starts_with("invalid --secret"), "{error}");
    }

    #[test]
    fn hmac_needs_a_header_name_and_only_hmac_takes_one() {
        assert!(args(&["--scheme", "hmac", "--secret", SECRET]).is_err());
        let listen = listen(&[
            "--scheme",
            "hmac",
            "--hmac-header",
            "X-Signature",
            "--hmac-algorithm",
            "sha512",
            "--hmac-encoding",
            "base64",
            "--secret",
            SECRET,
        ])
        .expect("valid hmac");
        let expected =
            HmacScheme::new("X-Signature", Algorithm::Sha512, Encoding::Base64).expect("scheme");
        assert_eq!(
            listen.verifier.expect("verifier").scheme,
            SignatureScheme::Hmac(expected)
        );
        let error = super::Listen::from_args(
            args(&["--scheme", "hmac", "--hmac-header", "not a token"]).expect("parses"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("--hmac-header"), "{error}");
        let error = super::Listen::from_args(
            args(&["--scheme", "github", "--hmac-header", "X-Signature"]).expect("parses"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("only applies"), "{error}");
    }

    #[test]
    fn history_keeps_the_last_deliveries_oldest_first() {
        let mut history = History::new(3);
        for n in 0..5 {
            history.push(delivery(n));
        }
        let paths: Vec<&str> = history.deliveries.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/hook/2", "/hook/3", "/hook/4"]);
        let mut none = History::new(0);
        none.push(delivery(0));
        assert!(none.deliveries.is_empty());
    }

    #[test]
    fn a_signed_delivery_verifies_and_a_changed_byte_does_not() {
        let listen = listen(&["--secret", SECRET]).expect("valid");
        let verifier = listen.verifier.expect("verifier");
        let key = herald_signature::SigningKey::parse(SECRET).expect("key");
        let body = br#"{"invoice": 42}"#;
        let timestamp = herald_signature::unix_now();
        let signed = SignatureScheme::Standard
            .headers(&[key], "msg_1", timestamp, body)
            .expect("sign");
        let mut headers = HeaderMap::new();
        for (name, value) in signed {
            let name: axum::http::HeaderName = name.parse().expect("name");
            headers.insert(name, value.parse().expect("value"));
        }
        assert_eq!(verifier.verify(&headers, body), Verification::Verified);
        let tampered = verifier.verify(&headers, br#"{"invoice": 43}"#);
        assert_eq!(
            tampered,
            Verification::Failed(SignatureError::NoMatchingSignature)
        );
        assert_eq!(tampered.to_string(), "NOT VERIFIED: no matching signature");
    }

    #[test]
    fn the_listing_shows_headers_and_the_body_as_sent() {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().expect("value"));
        headers.insert(
            "x-herald-event-type",
            "invoice.paid".parse().expect("value"),
        );
        headers.append("x-twice", "a".parse().expect("value"));
        headers.append("x-twice", "b".parse().expect("value"));
        let uri: Uri = "/hooks?x=1".parse().expect("uri");
        let body = br#"{"b": 1.50, "a": [1]}"#;
        let arrival = Arrival {
            received_at: Utc::now(),
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body,
        };
        let failed =
            Verification::Failed(SignatureError::MissingHeader("webhook-signature".into()));
        let delivery = Delivery::new(arrival, &failed, StatusCode::INTERNAL_SERVER_ERROR);
        let json = serde_json::to_value(&delivery).expect("serialize");
        assert_eq!(json["path"], "/hooks?x=1");
        assert_eq!(json["msgId"], "msg_1");
        assert_eq!(json["eventType"], "invoice.paid");
        assert_eq!(json["verified"], false);
        assert_eq!(json["error"], "missing header webhook-signature");
        assert_eq!(json["status"], 500);
        assert_eq!(json["headers"]["x-twice"], "a, b");
        assert_eq!(json["body"]["b"], 1.5);
        let raw = serde_json::to_string(&delivery).expect("serialize");
        assert!(raw.contains(r#""body":{"b": 1.50, "a": [1]}"#), "{raw}");
        let report = delivery.report(&failed);
        assert!(report.contains("POST /hooks?x=1\n"), "{report}");
        assert!(
            report.contains("signature   NOT VERIFIED: missing header webhook-signature\n"),
            "{report}"
        );
        assert!(
            report.contains("answered    500 Internal Server Error\n"),
            "{report}"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_as_text() {
        let Body::Text(text) = Body::new(b"a=1&b=2") else {
            panic!("not JSON")
        };
        assert_eq!(text, "a=1&b=2");
        assert!(matches!(Body::new(b""), Body::Text(text) if text.is_empty()));
    }

    #[test]
    fn json_is_reindented_with_every_token_kept() {
        let json = r#"{"b": 2,"a" :[1.50, "x, \"y\": {z}"],"e":{ },"f":[]}"#;
        let expected = "{\n  \"b\": 2,\n  \"a\": [\n    1.50,\n    \"x, \\\"y\\\": {z}\"\n  ],\n  \"e\": {},\n  \"f\": []\n}";
        assert_eq!(reindent_json(json), expected);
        assert_eq!(reindent_json("42"), "42");
    }
}
