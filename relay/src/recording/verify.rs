//! Offline verification of a recording: chunk hashes, the chain, the seal's signature, and
//! that the sealed digests match the recorded bytes.
//!
//! The verdict is one of: valid (complete and signed), truncated (a prefix that verifies,
//! with no seal: what a crash leaves), or tampered (with where). It needs only the
//! recording and the relay's public key, so an auditor can run it away from the relay.

use super::format::{self, Chunk, ChunkKind, ChunkProblem, Direction, EventKind};
use super::recorder::{AgentCountersignature, ChannelDigest, Header, SealBody};
use assist_certs::Fingerprint;
use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Complete, chained, sealed and signed by the expected key. `countersigned` counts
    /// the agent's channel reports that were checked against the recorded bytes.
    Valid { header: Box<Header>, seal: SealBody, chunks: usize, countersigned: usize },
    /// Verifies up to the last complete chunk but was never sealed.
    Truncated { header: Option<Box<Header>>, chunks: usize, offset: usize },
    /// Something was changed: `at` says where.
    Tampered { chunk: usize, offset: usize, reason: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Truncated { .. } => "truncated",
            Verdict::Tampered { .. } => "tampered",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Valid { seal, chunks, countersigned, .. } => {
                write!(
                    f,
                    "valid: {chunks} chunks, sealed and signed by the relay; final hash {}; ended: {}; ",
                    seal.final_hash, seal.end_reason
                )?;
                if *countersigned > 0 {
                    write!(f, "the agent countersigned {countersigned} channel(s) and saw the same bytes")
                } else {
                    write!(f, "no agent countersignature (the agent did not report)")
                }
            }
            Verdict::Truncated { chunks, offset, .. } => write!(
                f,
                "truncated: the first {chunks} chunks (up to byte {offset}) verify, but the recording was never sealed"
            ),
            Verdict::Tampered { chunk, offset, reason } => {
                write!(f, "tampered: chunk {chunk} at byte {offset}: {reason}")
            }
        }
    }
}

/// Verifies a whole recording against the relay's Ed25519 public key.
pub fn verify(bytes: &[u8], relay_key: &[u8]) -> Verdict {
    let (chunks, problem) = format::read_chunks(bytes);
    if let Some(ChunkProblem::Corrupt { offset, index, reason }) = &problem {
        return Verdict::Tampered { chunk: *index, offset: *offset, reason: reason.clone() };
    }
    let tampered =
        |i: usize, reason: String| Verdict::Tampered { chunk: i, offset: chunks[i].offset, reason };
    let Some(first) = chunks.first() else {
        return Verdict::Truncated { header: None, chunks: 0, offset: 0 };
    };
    let header: Header = match serde_json::from_slice(&first.payload) {
        Ok(h) => h,
        Err(e) => return tampered(0, format!("header is not valid: {e}")),
    };
    if header.relay_key != hex::encode(relay_key) {
        return tampered(0, "recorded by another relay key than the one given".into());
    }
    let mut digests: BTreeMap<(u32, Direction), (u64, Context)> = BTreeMap::new();
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        match chunk.kind {
            ChunkKind::Header => return tampered(i, "a second header".into()),
            ChunkKind::Events => {
                let events = match format::decode_events(&chunk.payload) {
                    Ok(e) => e,
                    Err(e) => return tampered(i, e),
                };
                for e in events.iter().filter(|e| e.kind == EventKind::Data) {
                    let d =
                        digests.entry((e.channel, e.direction)).or_insert_with(|| (0, Context::new(&SHA256)));
                    d.0 += e.data.len() as u64;
                    d.1.update(&e.data);
                }
            }
            ChunkKind::Seal => {
                if i + 1 != chunks.len() || problem.is_some() {
                    return tampered(i, "data after the seal".into());
                }
                let seal = match open_seal(&chunk.payload, relay_key) {
                    Ok(s) => s,
                    Err(reason) => return tampered(i, reason),
                };
                if seal.chunks as usize != i || seal.final_hash != hex::encode(chunk.prev_hash) {
                    return tampered(i, "the seal does not cover the chunks before it".into());
                }
                if seal.session != header.session.id.as_str() {
                    return tampered(i, "the seal is for another session".into());
                }
                let recomputed: Vec<ChannelDigest> = digests
                    .into_iter()
                    .map(|((channel, dir), (n, ctx))| ChannelDigest {
                        channel,
                        direction: dir.as_str().to_owned(),
                        bytes: n,
                        sha256: hex::encode(ctx.finish().as_ref()),
                    })
                    .collect();
                if recomputed != seal.channels {
                    return tampered(i, "recorded bytes do not match the sealed digests".into());
                }
                if let Err(reason) = check_agent(&header, &seal, &chunks[1..i]) {
                    return tampered(i, reason);
                }
                let countersigned = seal.agent.len();
                return Verdict::Valid {
                    header: Box::new(header),
                    seal,
                    chunks: chunks.len(),
                    countersigned,
                };
            }
        }
    }
    let offset = chunks
        .last()
        .map(|c| c.offset + format::CHUNK_HEAD + c.payload.len() + format::HASH_LEN)
        .unwrap_or(0);
    Verdict::Truncated { header: Some(Box::new(header)), chunks: chunks.len(), offset }
}

fn open_seal(payload: &[u8], relay_key: &[u8]) -> Result<SealBody, String> {
    if payload.len() < 4 + 64 {
        return Err("seal too short".into());
    }
    let len = u32::from_be_bytes(payload[..4].try_into().expect("4")) as usize;
    if payload.len() != 4 + len + 64 {
        return Err("seal length is wrong".into());
    }
    let body = &payload[4..4 + len];
    let sig = &payload[4 + len..];
    UnparsedPublicKey::new(&ED25519, relay_key)
        .verify(body, sig)
        .map_err(|_| "the relay's signature on the seal is not valid".to_string())?;
    serde_json::from_slice(body).map_err(|e| format!("seal is not valid: {e}"))
}

/// Checks the agent's countersignatures: signed by the enrolled agent's key, and each of
/// its digests equal to the recorded bytes. The agent may have received fewer input bytes
/// than the relay forwarded (typing after the shell exited), so its count may be a prefix
/// of the recorded bytes, never more.
fn check_agent(header: &Header, seal: &SealBody, event_chunks: &[Chunk]) -> Result<(), String> {
    if seal.agent.is_empty() {
        return Ok(());
    }
    let mut events = Vec::new();
    for c in event_chunks {
        events.extend(format::decode_events(&c.payload)?);
    }
    // QUIC stream index (as the agent names it) → recorded channel.
    let mut channel_of: BTreeMap<u64, u32> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::ChannelOpen) {
        if let Some(stream) =
            serde_json::from_slice::<serde_json::Value>(&e.data).ok().and_then(|v| v["stream"].as_u64())
        {
            channel_of.insert(stream, e.channel);
        }
    }
    for cs in &seal.agent {
        check_one(header, cs, &channel_of, &events)?;
    }
    Ok(())
}

fn check_one(
    header: &Header,
    cs: &AgentCountersignature,
    channel_of: &BTreeMap<u64, u32>,
    events: &[format::Event],
) -> Result<(), String> {
    let cert = hex::decode(&cs.cert).map_err(|_| "agent certificate is not hex".to_string())?;
    if header.agent_cert_fingerprint.as_deref() != Some(Fingerprint::of_der(&cert).hex().as_str()) {
        return Err("the countersignature is not by the session's agent certificate".into());
    }
    let key = assist_certs::public_key_of(&cert).map_err(|e| e.to_string())?;
    let message =
        assist_proto::msg::countersign_message(&header.session.id, &header.session.agent, &cs.digests);
    let sig = hex::decode(&cs.signature).map_err(|_| "countersignature is not hex".to_string())?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key)
        .verify(&message, &sig)
        .map_err(|_| "the agent's countersignature is not valid".to_string())?;
    for d in &cs.digests {
        let channel = *channel_of.get(&d.stream).ok_or_else(|| {
            format!("the agent reports stream {} that the recording does not have", d.stream)
        })?;
        let dir = match d.direction.as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            other => return Err(format!("unknown direction {other:?} in the countersignature")),
        };
        let mut ctx = Context::new(&SHA256);
        let mut left = d.bytes;
        for e in
            events.iter().filter(|e| e.kind == EventKind::Data && e.channel == channel && e.direction == dir)
        {
            if left == 0 {
                break;
            }
            let take = (left as usize).min(e.data.len());
            ctx.update(&e.data[..take]);
            left -= take as u64;
        }
        if left > 0 || hex::encode(ctx.finish().as_ref()) != d.sha256 {
            return Err(format!(
                "channel {channel} ({}): the agent saw {} bytes that differ from the recording",
                d.direction, d.bytes
            ));
        }
    }
    Ok(())
}
