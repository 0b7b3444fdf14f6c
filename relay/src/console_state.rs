//! The relay's side of the web console: [`RelayConsole`] implements
//! [`assist_console::ConsoleState`] on the broker and the store.
//!
//! - Passwords are checked by the broker ([`Relay::authenticate`]): the same throttle
//!   (per user name and per address), the same `login.failed`/`login.throttled` events,
//!   the same one message for a wrong user or a wrong password. A success is audited
//!   `login.succeeded` with `"via": "console"`.
//! - Second factor: TOTP and recovery codes checked by [`crate::mfa`] (each step accepted
//!   once per user), through the login throttle like passwords, a refusal audited
//!   `mfa.failed`. Enrolment makes ten recovery codes, shown once, stored hashed.
//! - Console sessions: the cookie value is 32 random bytes (hex); the row is keyed by its
//!   SHA-256. Begin and end are audited (`console.signed_in`, `console.signed_out`).
//! - Answers to requests go to the broker's `answer` exactly as `assist approve`/`deny`
//!   do, after the same free-text checks; it decides who may answer what and audits it.
//!
//! - Live sessions, revocations and ends go to the broker's `list_live`, `revoke` and
//!   `end_by` as `assist revoke`/`end` do; the history is `list_sessions` (the scoping of
//!   `assist sessions`), with each decision's note read from the audit log.
//!
//! It does not decide timeouts or stages (the console crate does, from
//! [`ConsoleAuthConfig`]), and it stores the TOTP secret as it is: the database is the
//! relay's to protect (0600, like its keys).

use crate::audit::AuditFilter;
use crate::broker::policy::Principal;
use crate::broker::{Answerer, Approval, Refusal, Relay};
#[cfg(doc)]
use crate::datadir::DataDir;
use crate::store::Store;
use assist_console::{
    Account, AgentView, ApiError, ApproveForm, Enrolment, RecordingCheck, RequestView, SessionDetail,
    SessionView, ShellLink, Stage, WatchLink, WebSession,
};
use assist_proto::caps::{Capability, Role};
use assist_proto::ids::{OrgName, SessionId, UserName};
use assist_proto::msg::{EngineerToRelay, ErrorCode, SessionInfo};
use assist_proto::session::SessionState;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tracing::warn;

/// The console's sign-in rules (`serve --require-mfa`, idle and absolute lifetimes).
pub type ConsoleAuthConfig = assist_console::AuthConfig;

/// Length of a TOTP secret (RFC 4226 recommends 160 bits).
const SECRET_BYTES: usize = 20;
/// Recovery codes made at each enrolment.
const RECOVERY_CODES: usize = 10;
/// The issuer shown in authenticator apps.
const ISSUER: &str = "assist";

/// The relay as the console sees it.
pub struct RelayConsole {
    pub(crate) relay: Arc<Relay>,
    pub(crate) db: Arc<dyn Store>,
    auth: ConsoleAuthConfig,
    /// Added to the system clock; moved only by tests of timeouts.
    skew_ms: AtomicI64,
    /// Browser sessions whose page went away, waiting for a new one.
    parked: Arc<crate::wire::browser::Parked>,
}

impl RelayConsole {
    /// The console state for `relay`, on `db` (its own connections to the data
    /// directory's database: see [`DataDir::store`]).
    pub fn new(relay: Arc<Relay>, db: Arc<dyn Store>, auth: ConsoleAuthConfig) -> Arc<Self> {
        Arc::new(Self { relay, db, auth, skew_ms: AtomicI64::new(0), parked: Default::default() })
    }

    /// Moves this console's clock forward (tests of idle and absolute timeouts).
    #[doc(hidden)]
    pub fn advance_clock(&self, ms: i64) {
        self.skew_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    warn!(error = %e, "console: internal error");
    ApiError::Internal
}

pub(crate) fn from_refusal(r: Refusal) -> ApiError {
    match r.code {
        ErrorCode::Unauthenticated if r.message.starts_with("too many attempts") => {
            ApiError::Throttled(r.message)
        }
        ErrorCode::Unauthenticated => ApiError::Unauthenticated(r.message),
        ErrorCode::Forbidden => ApiError::Forbidden(r.message),
        ErrorCode::NotFound => ApiError::NotFound(r.message),
        ErrorCode::BadRequest => ApiError::BadRequest(r.message),
        ErrorCode::Conflict => ApiError::Conflict(r.message),
        _ => ApiError::Internal,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    b
}

fn totp_for(secret: &[u8]) -> Result<totp_rs::Totp, ApiError> {
    crate::mfa::totp(secret).map_err(internal)
}

/// The `otpauth://` URI an authenticator app reads from the QR code.
fn otpauth_uri(user: &str, secret_b32: &str) -> String {
    let label: String = format!("{ISSUER}:{user}")
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "otpauth://totp/{label}?secret={secret_b32}&issuer={ISSUER}&algorithm=SHA1&digits={}&period={}",
        crate::mfa::DIGITS,
        crate::mfa::STEP
    )
}

fn new_recovery_code() -> String {
    let h = hex::encode(random::<5>());
    format!("{}-{}", &h[..5], &h[5..])
}

/// The engineer's own sessions shown on their page, at most.
const MINE: usize = 100;

/// Decided requests shown in the history, at most.
const HISTORY: usize = 200;

fn view(s: SessionInfo, note: Option<String>) -> SessionView {
    SessionView {
        id: s.id.to_string(),
        engineer: s.engineer.to_string(),
        engineer_org: s.engineer_org.to_string(),
        agent: s.agent.to_string(),
        agent_org: s.agent_org.to_string(),
        ticket: s.ticket,
        priority: s.priority.to_string(),
        reason: s.reason,
        state: s.state.as_str().to_owned(),
        capabilities: s.capabilities.iter().map(ToString::to_string).collect(),
        granted: s.granted.unwrap_or_default().iter().map(ToString::to_string).collect(),
        grant_expires_at: s.grant_expires_at,
        approver: s.approver,
        note,
        requested_at: s.requested_at,
        consent_deadline: s.consent_deadline,
        decided_at: s.decided_at,
        started_at: s.started_at,
        ended_at: s.ended_at,
        end_reason: s.end_reason,
        waiting_for: None,
    }
}

pub(crate) fn principal(a: &Account) -> Result<Principal, ApiError> {
    Ok(Principal {
        user: UserName::new(&a.user),
        org: OrgName::new(&a.org),
        role: Role::from_str(&a.role).map_err(internal)?,
    })
}

impl RelayConsole {
    fn relay_store(&self) -> &dyn Store {
        self.db.as_ref()
    }

    fn secs(&self) -> u64 {
        u64::try_from(assist_console::ConsoleState::now_ms(self) / 1000).unwrap_or(0)
    }

    /// Runs a second-factor check as a login attempt under the broker's throttle.
    async fn throttled_code(
        &self,
        user: &str,
        source: IpAddr,
        check: impl std::future::Future<Output = Result<Option<&'static str>, ApiError>>,
    ) -> Result<(), ApiError> {
        let key = crate::audit::clip(user, 64).to_lowercase();
        let counted = crate::listen::source_key(source);
        let throttle = self.relay.login_throttle();
        let admitted = match throttle.admit(&key, counted, std::time::Instant::now()) {
            Ok(a) => a,
            Err(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(ApiError::Throttled(format!(
                    "too many attempts, try again in {}",
                    crate::fmt_secs(secs)
                )));
            }
        };
        match check.await? {
            None => {
                let still = throttle.succeeded(&key, counted, admitted);
                self.relay.audit_throttled(&key, still).await;
                Ok(())
            }
            Some(why) => {
                let org = self.db.user(&UserName::new(user)).await.ok().flatten().map(|r| r.org);
                let mut event =
                    crate::audit::AuditEvent::new(user, crate::audit::Action::MfaFailed).target(user).detail(
                        serde_json::json!({ "reason": why, "source": source.to_canonical().to_string() }),
                    );
                if let Some(org) = &org {
                    event = event.org(org);
                }
                let _ = self.relay.audit(event).await;
                self.relay.audit_throttled(&key, admitted.throttled).await;
                Err(ApiError::Unauthenticated(
                    "that code is not right; wait for the next one and try again".into(),
                ))
            }
        }
    }
}

#[async_trait::async_trait]
impl assist_console::ConsoleState for RelayConsole {
    fn online_agents(&self) -> usize {
        self.relay.online_agent_count()
    }

    fn live_sessions(&self) -> usize {
        self.relay.live_session_count()
    }

    fn now_ms(&self) -> i64 {
        crate::now_ms() + self.skew_ms.load(Ordering::Relaxed)
    }

    fn auth(&self) -> &ConsoleAuthConfig {
        &self.auth
    }

    async fn check_password(&self, user: &str, password: &str, source: IpAddr) -> Result<Account, ApiError> {
        let row = self.relay.authenticate(user, password, source).await.map_err(from_refusal)?;
        let event = crate::audit::AuditEvent::new(row.name.as_str(), crate::audit::Action::LoginSucceeded)
            .org(&row.org)
            .target(row.name.as_str())
            .detail(serde_json::json!({ "role": row.role, "via": "console", "source": source.to_canonical().to_string() }));
        self.relay.audit(event).await.map_err(internal)?;
        let totp = self.db.totp(row.name.as_str()).await.map_err(internal)?.secret.is_some();
        Ok(Account { user: row.name.to_string(), org: row.org.to_string(), role: row.role.to_string(), totp })
    }

    async fn account(&self, user: &str) -> Result<Option<Account>, ApiError> {
        let Some(row) = self.db.user(&UserName::new(user)).await.map_err(internal)? else {
            return Ok(None);
        };
        if self.db.is_disabled(user).await.map_err(internal)? {
            return Ok(None);
        }
        let totp = self.db.totp(user).await.map_err(internal)?.secret.is_some();
        Ok(Some(Account {
            user: row.name.to_string(),
            org: row.org.to_string(),
            role: row.role.to_string(),
            totp,
        }))
    }

    async fn open_session(&self, user: &str, stage: Stage, source: IpAddr) -> Result<String, ApiError> {
        let cookie = hex::encode(random::<32>());
        let source = source.to_canonical().to_string();
        self.db
            .console_open_session(
                &sha256_hex(cookie.as_bytes()),
                user,
                stage.as_str(),
                &source,
                self.now_ms(),
            )
            .await
            .map_err(internal)?;
        Ok(cookie)
    }

    async fn session(&self, cookie: &str) -> Result<Option<WebSession>, ApiError> {
        if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let row = self.db.console_session(&sha256_hex(cookie.as_bytes())).await.map_err(internal)?;
        Ok(row.and_then(|r| {
            Some(WebSession {
                user: r.user,
                stage: Stage::parse(&r.stage)?,
                created_at: r.created_at,
                last_seen: r.last_seen,
            })
        }))
    }

    async fn touch_session(&self, cookie: &str) -> Result<(), ApiError> {
        self.db.console_touch(&sha256_hex(cookie.as_bytes()), self.now_ms()).await.map_err(internal)
    }

    async fn end_session(&self, cookie: &str, why: &str) -> Result<(), ApiError> {
        self.db
            .console_end_session(&sha256_hex(cookie.as_bytes()), why, self.now_ms())
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn begin_enrolment(&self, user: &str) -> Result<Enrolment, ApiError> {
        let secret = random::<SECRET_BYTES>();
        self.db.totp_set_pending(user, &secret).await.map_err(internal)?;
        let b32 = totp_rs::Secret::from(secret.to_vec()).to_base32();
        Ok(Enrolment { uri: otpauth_uri(user, &b32), secret: b32 })
    }

    async fn pending_enrolment(&self, user: &str) -> Result<Option<Enrolment>, ApiError> {
        let row = self.db.totp(user).await.map_err(internal)?;
        Ok(row.pending.map(|p| {
            let b32 = totp_rs::Secret::from(p).to_base32();
            Enrolment { uri: otpauth_uri(user, &b32), secret: b32 }
        }))
    }

    async fn confirm_enrolment(
        &self,
        user: &str,
        code: &str,
        source: IpAddr,
    ) -> Result<Vec<String>, ApiError> {
        let row = self.db.totp(user).await.map_err(internal)?;
        let pending =
            row.pending.ok_or_else(|| ApiError::Conflict("no authenticator is being set up".into()))?;
        let now = self.secs();
        let mut step = None;
        self.throttled_code(user, source, async {
            step = totp_for(&pending)?.check(code, now);
            Ok(if step.is_some() { None } else { Some("wrong enrolment code") })
        })
        .await?;
        let step = i64::try_from(step.unwrap_or_default()).map_err(internal)?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| crate::mfa::recovery_hash(c)).collect();
        if !self.db.totp_confirm(user, &pending, step, &hashes, self.now_ms()).await.map_err(internal)? {
            return Err(ApiError::Conflict("the authenticator changed meanwhile; start again".into()));
        }
        Ok(codes)
    }

    async fn verify_code(&self, user: &str, code: &str, source: IpAddr) -> Result<(), ApiError> {
        let row = self.db.totp(user).await.map_err(internal)?;
        let secret = row.secret.ok_or_else(|| ApiError::Conflict("no authenticator is set up".into()))?;
        let source_text = source.to_canonical().to_string();
        let now_ms = self.now_ms();
        self.throttled_code(user, source, async {
            crate::mfa::check_code(self.relay_store(), user, &secret, code, now_ms, &source_text)
                .await
                .map_err(internal)
        })
        .await
    }

    async fn requests(&self, user: &Account) -> Result<Vec<RequestView>, ApiError> {
        let who = principal(user)?;
        Ok(self
            .relay
            .list_requests(&who)
            .await
            .into_iter()
            .map(|s| {
                let (capabilities, secs, deadline, reason, escalation) = match &s.escalation {
                    Some(e) => {
                        (e.add.clone(), e.duration_secs.unwrap_or(0), e.deadline, e.reason.clone(), true)
                    }
                    None => {
                        (s.capabilities.clone(), s.duration_secs, s.consent_deadline, s.reason.clone(), false)
                    }
                };
                RequestView {
                    id: s.id.to_string(),
                    engineer: s.engineer.to_string(),
                    engineer_org: s.engineer_org.to_string(),
                    agent: s.agent.to_string(),
                    ticket: s.ticket,
                    priority: s.priority.to_string(),
                    reason,
                    capabilities: capabilities.iter().map(ToString::to_string).collect(),
                    duration_ms: secs.saturating_mul(1000),
                    deadline,
                    escalation,
                }
            })
            .collect())
    }

    async fn approve(&self, user: &Account, id: &str, form: ApproveForm) -> Result<String, ApiError> {
        let who = principal(user)?;
        let capabilities = match form.capabilities {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|c| Capability::from_str(c).map_err(|e| ApiError::BadRequest(format!("{c}: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let note = form.note.filter(|n| !n.trim().is_empty());
        let duration_secs = form.minutes.map(|m| m.saturating_mul(60));
        let session = SessionId::new(id);
        let msg = EngineerToRelay::Approve { session: session.clone(), capabilities, duration_secs, note };
        msg.check_text().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let EngineerToRelay::Approve { capabilities, duration_secs, note, .. } = msg else { unreachable!() };
        let approval = Approval { capabilities, duration_secs, note };
        self.relay.answer(&session, Answerer::User(&who), true, approval).await.map_err(from_refusal)
    }

    async fn deny(&self, user: &Account, id: &str, reason: &str) -> Result<String, ApiError> {
        let who = principal(user)?;
        let session = SessionId::new(id);
        let msg = EngineerToRelay::Deny { session: session.clone(), reason: reason.to_owned() };
        msg.check_text().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let approval = Approval { note: Some(reason.to_owned()), ..Default::default() };
        self.relay.answer(&session, Answerer::User(&who), false, approval).await.map_err(from_refusal)
    }

    async fn live(&self, user: &Account) -> Result<Vec<SessionView>, ApiError> {
        let who = principal(user)?;
        Ok(self.relay.list_live(&who).await.into_iter().map(|s| view(s, None)).collect())
    }

    async fn history(&self, user: &Account) -> Result<Vec<SessionView>, ApiError> {
        let who = principal(user)?;
        let decided = self.relay.list_sessions(&who).await.map_err(from_refusal)?.into_iter().filter(|s| {
            s.decided_at.is_some() || matches!(s.state, SessionState::Denied | SessionState::Expired)
        });
        let mut out = Vec::new();
        for s in decided.take(HISTORY) {
            let note = self.decision_note(&s.id).await?;
            out.push(view(s, note));
        }
        Ok(out)
    }

    async fn revoke(
        &self,
        user: &Account,
        id: &str,
        capabilities: Vec<String>,
        reason: Option<String>,
    ) -> Result<String, ApiError> {
        let who = principal(user)?;
        let session = SessionId::new(id);
        let msg = EngineerToRelay::Revoke { session: session.clone(), capabilities, reason };
        msg.check_text().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let EngineerToRelay::Revoke { capabilities, reason, .. } = msg else { unreachable!() };
        self.relay.revoke(&who, &session, capabilities, reason).await.map_err(from_refusal)
    }

    async fn end(&self, user: &Account, id: &str, reason: &str) -> Result<String, ApiError> {
        let who = principal(user)?;
        let session = SessionId::new(id);
        let msg = EngineerToRelay::End { session: session.clone(), reason: Some(reason.to_owned()) };
        msg.check_text().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.relay.end_by(&who, &session, Some(reason.to_owned())).await.map_err(from_refusal)
    }

    async fn my_sessions(&self, user: &Account) -> Result<Vec<SessionView>, ApiError> {
        let who = principal(user)?;
        let all = self.relay.list_sessions(&who).await.map_err(from_refusal)?;
        let mut out = Vec::new();
        for s in all.into_iter().filter(|s| s.engineer == who.user).take(MINE) {
            let decided = s.decided_at.is_some() || s.state == SessionState::Denied;
            let note = if decided { self.decision_note(&s.id).await? } else { None };
            let waiting_for = self.relay.waiting_for(&s.id).await;
            out.push(SessionView { waiting_for, ..view(s, note) });
        }
        Ok(out)
    }

    async fn agents(&self, user: &Account) -> Result<Vec<AgentView>, ApiError> {
        let who = principal(user)?;
        let mut agents: Vec<AgentView> = self
            .relay
            .list_agents(&who)
            .await
            .map_err(from_refusal)?
            .into_iter()
            .filter(|a| !a.revoked)
            .map(|a| AgentView {
                name: a.name.to_string(),
                org: a.org.to_string(),
                online: a.online,
                consent: a.consent.map(|c| c.to_string()),
            })
            .collect();
        agents.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.name.cmp(&b.name)));
        Ok(agents)
    }

    async fn open_shell(&self, user: &Account, source: IpAddr) -> Result<ShellLink, ApiError> {
        let who = principal(user)?;
        if who.role != Role::Engineer {
            return Err(ApiError::Forbidden(format!("only engineers open shells; you are {}", who.role)));
        }
        Ok(crate::wire::browser::open_shell(self.relay.clone(), self.parked.clone(), who, source))
    }

    async fn watch(&self, user: &Account, id: &str) -> Result<WatchLink, ApiError> {
        let who = principal(user)?;
        crate::wire::watcher::open_watch(self.relay.clone(), who, SessionId::new(id)).await.map_err(|r| {
            match &r.held_by {
                // Its screen is in the other relay's memory: no streaming between relays.
                Some(h) => ApiError::Conflict(format!(
                    "Session {id} runs on relay {} of the cluster, not on this one: open that relay's console to watch it live.",
                    h.relay
                )),
                None => from_refusal(r),
            }
        })
    }

    async fn sessions(&self, user: &Account) -> Result<Vec<SessionView>, ApiError> {
        let who = principal(user)?;
        let all = self.relay.list_sessions(&who).await.map_err(from_refusal)?;
        Ok(all.into_iter().map(|s| view(s, None)).collect())
    }

    async fn session_detail(&self, user: &Account, id: &str) -> Result<SessionDetail, ApiError> {
        let who = principal(user)?;
        let info = self.relay.session_for(&who, &SessionId::new(id)).await.map_err(from_refusal)?;
        let filter = AuditFilter { session: Some(info.id.clone()), ..Default::default() };
        let records = self.db.list_audit(&filter).await.map_err(internal)?;
        let recording = self.check_recording(&info.id).await;
        let note = self.decision_note(&info.id).await?;
        Ok(crate::console_review::detail(view(info, note), records, recording))
    }

    async fn evidence_bundle(&self, user: &Account, id: &str) -> Result<Vec<u8>, ApiError> {
        let who = principal(user)?;
        let info = self.relay.session_for(&who, &SessionId::new(id)).await.map_err(from_refusal)?;
        let recording = match &self.relay.recordings {
            None => None,
            Some(store) => match store.read(&info.id).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(internal(e)),
            },
        };
        let filter = AuditFilter { session: Some(info.id.clone()), ..Default::default() };
        // One JSON object per line, serialised as `audit export --format jsonl` does.
        let mut audit_jsonl = Vec::new();
        for record in self.db.list_audit(&filter).await.map_err(internal)? {
            serde_json::to_writer(&mut audit_jsonl, &record).map_err(internal)?;
            audit_jsonl.push(b'\n');
        }
        let keys = crate::recording::cli::PublicKeys {
            relay_signing_key: hex::encode(self.relay.grant_public_key()),
            ca_fingerprint: self.relay.ca.fingerprint().to_string(),
            ca_pem: self.relay.ca.cert_pem().to_owned(),
        };
        let evidence = crate::console_bundle::Evidence {
            session: info.id.as_str(),
            recording,
            keys: &keys,
            audit_jsonl: &audit_jsonl,
            made_at: u64::try_from(self.now_ms() / 1000).unwrap_or(0),
        };
        let tar = crate::console_bundle::tar(&evidence).map_err(internal)?;
        self.audit_export(user, &info, serde_json::json!({"format": "bundle"}), &tar).await?;
        Ok(tar)
    }

    async fn asciicast(&self, user: &Account, id: &str) -> Result<String, ApiError> {
        let who = principal(user)?;
        let info = self.relay.session_for(&who, &SessionId::new(id)).await.map_err(from_refusal)?;
        let not_recorded = || ApiError::NotFound(format!("no recording is stored for session {}", info.id));
        let store = self.relay.recordings.as_ref().ok_or_else(not_recorded)?;
        let bytes = match store.read(&info.id).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_recorded()),
            Err(e) => return Err(internal(e)),
        };
        let (header, events) = crate::recording::export::read_events(&bytes)
            .map_err(|e| ApiError::Conflict(format!("the recording cannot be played: {e}")))?;
        let cast = crate::recording::export::asciicast(&header, &events);
        self.audit_export(user, &info, serde_json::json!({"format": "asciicast"}), cast.as_bytes()).await?;
        Ok(cast)
    }
}

impl RelayConsole {
    /// Audits what the console gives out of a session's recording (`recording.exported`,
    /// as `recording export` does, with the SHA-256 of the bytes) before it is given: an
    /// export that cannot be audited is not given.
    pub(crate) async fn audit_export(
        &self,
        user: &Account,
        info: &SessionInfo,
        mut detail: serde_json::Value,
        bytes: &[u8],
    ) -> Result<(), ApiError> {
        detail["via"] = "console".into();
        let mut event = crate::recording::cli::export_event(&info.agent_org, &info.id, detail, bytes);
        event.actor = user.user.clone();
        let now = assist_console::ConsoleState::now_ms(self);
        self.db.append_audit(&event, now).await.map_err(internal)?;
        Ok(())
    }

    /// The recording's verdict from the relay's own verifier, with its public key.
    async fn check_recording(&self, id: &SessionId) -> RecordingCheck {
        let Some(store) = &self.relay.recordings else {
            return RecordingCheck { result: "off".into(), detail: "this relay records no sessions".into() };
        };
        let key = self.relay.grant_public_key();
        match crate::recording::verify::verify_stored(store.as_ref(), id, &key).await {
            Ok(v) => RecordingCheck { result: v.label().into(), detail: v.to_string() },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RecordingCheck {
                result: "missing".into(),
                detail: "no recording is stored for this session".into(),
            },
            Err(e) => {
                warn!(error = %e, session = %id, "console: cannot read a recording");
                RecordingCheck {
                    result: "unreadable".into(),
                    detail: format!("the recording cannot be read: {e}"),
                }
            }
        }
    }

    /// The approver's note on the session's approval, or their reason for its denial, from
    /// the audit log (the session row keeps neither).
    async fn decision_note(&self, id: &SessionId) -> Result<Option<String>, ApiError> {
        let filter = AuditFilter { session: Some(id.clone()), ..Default::default() };
        let events = self.db.list_audit(&filter).await.map_err(internal)?;
        let decision = events.iter().find(|e| e.action == "session.approved" || e.action == "session.denied");
        Ok(decision.and_then(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).ok()?;
            let key = if e.action == "session.denied" { "reason" } else { "note" };
            detail.get(key)?.as_str().map(str::to_owned)
        }))
    }
}

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;
