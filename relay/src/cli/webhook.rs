//! The `assist-relay webhook` subcommands: arguments, reading a secret from stdin, and
//! printing (tables for people, `--json` for programs; notes on stderr). The work is done
//! by [`assist_relay::webhook::admin`].

use super::table::print_rows;
use anyhow::Context;
use assist_relay::fmt_time;
use assist_relay::store::Store;
use assist_relay::webhook::admin::{self, NewWebhook};
use assist_relay::webhook::rows::{DeliveryState, PayloadFormat};
use clap::Subcommand;
use std::io::{BufRead, Write};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Adds a webhook for an organisation and prints its id and secret (shown only once).
    Add {
        /// The organisation whose sessions it reports: as the agents' owner or as the
        /// engineers' vendor. Hooks of `operator` get every organisation's events.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// Where to POST: http:// or https://.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Comma-separated audit actions (default: the session lifecycle:
        /// session.requested,session.approved,session.denied,session.expired,
        /// session.started,session.ended).
        #[arg(long, value_name = "LIST")]
        events: Option<String>,
        /// `json` (the whole event, for ticketing systems) or `chat` (`{"text": ...}`, for
        /// chat incoming webhooks).
        #[arg(long, default_value = "json", value_parser = |s: &str| s.parse::<PayloadFormat>())]
        format: PayloadFormat,
        /// Reads the signing secret from the first line of stdin instead of generating one.
        #[arg(long)]
        secret_stdin: bool,
        /// Prints the new webhook (with its secret) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists webhooks (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Removes a webhook; its undelivered deliveries are cancelled.
    Remove { id: String },
    /// Lists deliveries, newest event first: state, attempts, last status or error.
    Deliveries {
        /// Only this webhook's.
        #[arg(long, value_name = "ID")]
        webhook: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `webhook` subcommand against the data directory's store.
pub async fn run(store: &dyn Store, command: WebhookCommand, actor: &str, now: i64) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Add { org, url, events, format, secret_stdin, json } => {
            let secret = secret_stdin.then(secret_from_stdin).transpose()?;
            let generated = secret.is_none();
            let new = NewWebhook { org: &org, url: &url, events: events.as_deref(), format, secret };
            let added = admin::add(store, new, actor, now).await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &added)?;
                writeln!(out)?;
            } else {
                writeln!(out, "id: {}", added.webhook.id)?;
                if generated {
                    writeln!(out, "secret: {}", added.secret)?;
                }
            }
            out.flush()?;
            eprintln!("added webhook {} for {org} ({})", added.webhook.id, added.webhook.events.join(","));
            if generated {
                eprintln!("the secret is shown only this once: give it to the receiver");
            }
        }
        WebhookCommand::List { json } => {
            let hooks = admin::list(store).await?;
            print_rows(json, &hooks, &["ID", "ORG", "FORMAT", "EVENTS", "URL", "CREATED"], |h| {
                vec![
                    h.id.clone(),
                    h.org.to_string(),
                    h.format.to_string(),
                    h.events.join(","),
                    h.url.clone(),
                    fmt_time(h.created_at),
                ]
            })?;
        }
        WebhookCommand::Remove { id } => {
            let cancelled = admin::remove(store, &id, actor, now).await?;
            eprintln!("removed webhook {id}; {cancelled} undelivered deliveries cancelled");
        }
        WebhookCommand::Deliveries { webhook, limit, json } => {
            let rows = admin::deliveries(store, webhook.as_deref(), limit).await?;
            let headers =
                ["DELIVERY", "WEBHOOK", "SEQ", "EVENT", "STATE", "ATTEMPTS", "LAST", "NEXT", "SESSION"];
            print_rows(json, &rows, &headers, |d| {
                let last = match (d.last_status, &d.last_error) {
                    (_, Some(e)) => e.clone(),
                    (Some(s), None) => s.to_string(),
                    (None, None) => "-".to_owned(),
                };
                let next = match d.state {
                    DeliveryState::Pending => fmt_time(d.next_attempt_at),
                    _ => "-".to_owned(),
                };
                vec![
                    d.id.clone(),
                    d.webhook.clone(),
                    d.event_seq.to_string(),
                    d.event.clone(),
                    d.state.to_string(),
                    d.attempts.to_string(),
                    last,
                    next,
                    d.session.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })?;
        }
    }
    Ok(())
}

fn secret_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the secret from stdin")?;
    let secret = line.strip_suffix('\n').unwrap_or(&line);
    Ok(secret.strip_suffix('\r').unwrap_or(secret).to_owned())
}
