//! A recorded desktop channel as an MP4 file: the H.264 the agent sent, copied (no
//! decoding, no re-encoding), with the frames' own timestamps.
//!
//! The agent → engineer bytes of the channel are split into desktop messages (proto's
//! `Splitter`); each frame's Annex B NAL units become one length-prefixed sample, the
//! first keyframe's SPS and PPS become the `avcC`, and the `moov` (sample sizes, timing,
//! sync samples) is written before the `mdat`, so a player can start before it has the
//! whole file. Frames before the first keyframe cannot be decoded and are left out.
//!
//! An MP4 track has one picture size. A channel whose size changes is cut into parts, one
//! per size (a stream info with another size starts the next; the agent's next frame is a
//! keyframe); exporting it whole is refused, saying when the size changed and how many
//! parts there are, and each part exports on its own. Cursor and clipboard messages are not
//! video and are not exported.
//!
//! It does not judge the recording (see [`super::verify`]) nor audit the export (the
//! command does).

use super::format::{Direction, Event, EventKind};
use assist_proto::desktop::{AgentToViewer, Kind, Splitter};
use mp4_atom::Encode;

/// The MP4 time unit: 90 kHz, as video usually is.
const TIMESCALE: u32 = 90_000;
/// The duration given to the last frame when there is only one.
const LONE_FRAME_US: u64 = 33_333;

/// Why a channel cannot be exported as MP4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    #[error("channel {0} is not in this recording")]
    NoChannel(u32),
    #[error("channel {channel} is a {kind} channel, not a desktop: only desktop channels export as MP4")]
    NotDesktop { channel: u32, kind: String },
    #[error("channel {0} has no keyframe: there is no picture to start the video from")]
    NoKeyframe(u32),
    #[error("channel {0} sends frames before saying the picture size (corrupt recording)")]
    NoStreamInfo(u32),
    #[error(
        "channel {channel} changes picture size at {at} of the video ({from} to {to}); an MP4 holds one size: export each of its {parts} parts with --part 1 to --part {parts}"
    )]
    SizeChanged { channel: u32, at: String, from: String, to: String, parts: u32 },
    #[error("channel {channel} has {parts} part(s) of one picture size each; there is no part {part}")]
    NoPart { channel: u32, part: u32, parts: u32 },
    #[error("channel {channel} is corrupt at byte {offset} of the agent's stream: {reason}")]
    Corrupt { channel: u32, offset: u64, reason: String },
    #[error("channel {channel}: {reason}")]
    BadVideo { channel: u32, reason: String },
}

/// One sample: where its length-prefixed NAL units are in `mdat`, when, and whether it is
/// a keyframe.
struct Sample {
    size: u32,
    timestamp_us: u64,
    keyframe: bool,
}

/// What the frames of the channel give.
struct Video {
    width: u16,
    height: u16,
    sps: Vec<u8>,
    pps: Vec<u8>,
    samples: Vec<Sample>,
    mdat: Vec<u8>,
}

/// The MP4 of desktop channel `channel` (its agent → engineer bytes), from the recording's
/// events: the whole channel, or, for a channel whose picture size changes, `part` N (from
/// 1: the frames between the Nth size and the next).
pub fn desktop_mp4(events: &[Event], channel: u32, part: Option<u32>) -> Result<Vec<u8>, Mp4Error> {
    check_kind(events, channel)?;
    let video = collect(events, channel, part)?;
    write(&video, channel)
}

fn check_kind(events: &[Event], channel: u32) -> Result<(), Mp4Error> {
    let open = events
        .iter()
        .find(|e| e.kind == EventKind::ChannelOpen && e.channel == channel)
        .ok_or(Mp4Error::NoChannel(channel))?;
    let kind = serde_json::from_slice::<serde_json::Value>(&open.data)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    if kind != "desktop" {
        return Err(Mp4Error::NotDesktop { channel, kind });
    }
    Ok(())
}

/// The picture sizes of a channel seen so far: each change starts a new part.
#[derive(Default)]
struct Parts {
    size: Option<(u16, u16)>,
    /// Parts begun (1 after the first stream info).
    count: u32,
    /// The first change: from, to, and when (frame time since the channel's first frame).
    first_change: Option<(String, String, u64)>,
    first_ts: Option<u64>,
    last_ts: u64,
}

fn collect(events: &[Event], channel: u32, part: Option<u32>) -> Result<Video, Mp4Error> {
    let wanted = part.unwrap_or(1);
    let mut splitter = Splitter::new();
    let mut offset = 0u64;
    let mut parts = Parts::default();
    let mut video = Video { width: 0, height: 0, sps: vec![], pps: vec![], samples: vec![], mdat: vec![] };
    let data = events
        .iter()
        .filter(|e| e.kind == EventKind::Data && e.channel == channel && e.direction == Direction::Out);
    for event in data {
        splitter.push(&event.data);
        loop {
            let corrupt = |reason: String| Mp4Error::Corrupt { channel, offset, reason };
            let Some((header, payload)) = splitter.next_raw().map_err(|e| corrupt(e.to_string()))? else {
                break;
            };
            let len = (assist_proto::desktop::HEADER_LEN + header.len) as u64;
            if matches!(header.kind, Kind::StreamInfo | Kind::Frame) {
                match AgentToViewer::decode(&header, &payload).map_err(|e| corrupt(e.to_string()))? {
                    AgentToViewer::StreamInfo(info) => parts.info(info.width, info.height),
                    AgentToViewer::Frame(frame) => {
                        let Some((w, h)) = parts.size else { return Err(Mp4Error::NoStreamInfo(channel)) };
                        let first = *parts.first_ts.get_or_insert(frame.timestamp_us);
                        parts.last_ts = frame.timestamp_us.saturating_sub(first);
                        let wanted_here = parts.count == wanted;
                        if wanted_here && (frame.keyframe || !video.samples.is_empty()) {
                            (video.width, video.height) = (w, h);
                            if let Some(last) = video.samples.last()
                                && frame.timestamp_us <= last.timestamp_us
                            {
                                return Err(corrupt(format!(
                                    "frame time goes from {} µs back to {} µs",
                                    last.timestamp_us, frame.timestamp_us
                                )));
                            }
                            add_sample(&mut video, &frame.data, frame.timestamp_us, frame.keyframe)
                                .map_err(|reason| Mp4Error::BadVideo { channel, reason })?;
                        }
                    }
                    _ => {}
                }
            }
            offset += len;
        }
    }
    if splitter.buffered() > 0 {
        return Err(Mp4Error::Corrupt {
            channel,
            offset,
            reason: "the channel ends inside a message".into(),
        });
    }
    if let (None, Some((from, to, at_us))) = (part, parts.first_change) {
        let at = format!("{:.1} s", at_us as f64 / 1e6);
        return Err(Mp4Error::SizeChanged { channel, at, from, to, parts: parts.count });
    }
    if wanted == 0 || wanted > parts.count.max(1) {
        return Err(Mp4Error::NoPart { channel, part: wanted, parts: parts.count.max(1) });
    }
    if video.samples.is_empty() {
        return Err(Mp4Error::NoKeyframe(channel));
    }
    Ok(video)
}

impl Parts {
    fn info(&mut self, width: u16, height: u16) {
        match self.size {
            Some(was) if was == (width, height) => return,
            Some((w, h)) if self.first_change.is_none() => {
                self.first_change = Some((format!("{w}x{h}"), format!("{width}x{height}"), self.last_ts));
            }
            _ => {}
        }
        self.size = Some((width, height));
        self.count += 1;
    }
}

/// The NAL units of an Annex B byte stream (without their start codes).
fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        // A four-byte start code's leading zero, and trailing zeros, belong to no unit.
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            units.push(&data[start..end]);
        }
    }
    units
}

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Appends one frame as a sample: its NAL units, each after its 4-byte length. The
/// parameter sets of the `avcC` are taken from the first keyframe and left out of samples
/// that repeat them; different ones later stay in the stream, where decoders find them.
fn add_sample(video: &mut Video, annex_b: &[u8], timestamp_us: u64, keyframe: bool) -> Result<(), String> {
    let units = nal_units(annex_b);
    if units.is_empty() {
        return Err(format!("the frame at {timestamp_us} µs holds no H.264 NAL unit"));
    }
    if video.samples.is_empty() {
        let find = |t: u8| units.iter().find(|u| u[0] & 0x1f == t).map(|u| u.to_vec());
        video.sps = find(NAL_SPS).ok_or("the first keyframe has no sequence parameter set")?;
        video.pps = find(NAL_PPS).ok_or("the first keyframe has no picture parameter set")?;
    }
    let before = video.mdat.len();
    for unit in units {
        let t = unit[0] & 0x1f;
        let repeated = (t == NAL_SPS && unit == video.sps) || (t == NAL_PPS && unit == video.pps);
        if repeated || t == NAL_AUD {
            continue;
        }
        video.mdat.extend_from_slice(&(unit.len() as u32).to_be_bytes());
        video.mdat.extend_from_slice(unit);
    }
    let size = u32::try_from(video.mdat.len() - before).map_err(|_| "a frame over 4 GiB".to_owned())?;
    video.samples.push(Sample { size, timestamp_us, keyframe });
    Ok(())
}

fn ticks(us: u64) -> u64 {
    ((us as u128 * TIMESCALE as u128 + 500_000) / 1_000_000) as u64
}

fn write(video: &Video, channel: u32) -> Result<Vec<u8>, Mp4Error> {
    let bad = |e: mp4_atom::Error| Mp4Error::BadVideo { channel, reason: e.to_string() };
    let first = video.samples[0].timestamp_us;
    // Each sample lasts until the next; the last as long as the one before it.
    let mut deltas: Vec<u32> = video
        .samples
        .windows(2)
        .map(|w| (ticks(w[1].timestamp_us - first) - ticks(w[0].timestamp_us - first)) as u32)
        .collect();
    deltas.push(deltas.last().copied().unwrap_or(ticks(LONE_FRAME_US) as u32));
    let duration: u64 = deltas.iter().map(|&d| u64::from(d)).sum();
    let mut stts: Vec<mp4_atom::SttsEntry> = Vec::new();
    for d in deltas {
        match stts.last_mut() {
            Some(e) if e.sample_delta == d => e.sample_count += 1,
            _ => stts.push(mp4_atom::SttsEntry { sample_count: 1, sample_delta: d }),
        }
    }
    let sync: Vec<u32> =
        video.samples.iter().enumerate().filter(|(_, s)| s.keyframe).map(|(i, _)| i as u32 + 1).collect();
    let sizes: Vec<u32> = video.samples.iter().map(|s| s.size).collect();
    let count = sizes.len() as u32;

    let ftyp = mp4_atom::Ftyp {
        major_brand: b"isom".into(),
        minor_version: 512,
        compatible_brands: vec![b"isom".into(), b"iso2".into(), b"avc1".into(), b"mp41".into()],
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out).map_err(bad)?;
    let mdat_head = if video.mdat.len() as u64 + 8 <= u64::from(u32::MAX) { 8 } else { 16 };
    // The sample offset depends on the moov's size, which does not depend on the offset's
    // value: encode once with a placeholder to measure it.
    let mut avcc = mp4_atom::Avcc::new(&video.sps, &video.pps).map_err(bad)?;
    avcc.length_size = 4;
    // 32-bit chunk offsets unless the file may pass 4 GiB (the moov is far below 64 MiB).
    let co64_needed = video.mdat.len() as u64 + (64 << 20) > u64::from(u32::MAX);
    let moov = |chunk_offset: u64| -> mp4_atom::Moov {
        let (stco, co64) = if !co64_needed {
            (Some(mp4_atom::Stco { entries: vec![chunk_offset as u32] }), None)
        } else {
            (None, Some(mp4_atom::Co64 { entries: vec![chunk_offset] }))
        };
        mp4_atom::Moov {
            mvhd: mp4_atom::Mvhd {
                timescale: TIMESCALE,
                duration,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: 2,
                ..Default::default()
            },
            trak: vec![mp4_atom::Trak {
                tkhd: mp4_atom::Tkhd {
                    track_id: 1,
                    duration,
                    enabled: true,
                    in_movie: true,
                    width: video.width.into(),
                    height: video.height.into(),
                    ..Default::default()
                },
                mdia: mp4_atom::Mdia {
                    mdhd: mp4_atom::Mdhd {
                        timescale: TIMESCALE,
                        duration,
                        language: "und".into(),
                        ..Default::default()
                    },
                    hdlr: mp4_atom::Hdlr { handler: b"vide".into(), name: "assist desktop".into() },
                    minf: mp4_atom::Minf {
                        vmhd: Some(mp4_atom::Vmhd::default()),
                        dinf: mp4_atom::Dinf {
                            dref: mp4_atom::Dref { entries: vec![mp4_atom::Url::default().into()] },
                        },
                        stbl: mp4_atom::Stbl {
                            stsd: mp4_atom::Stsd {
                                codecs: vec![
                                    mp4_atom::Avc1 {
                                        visual: mp4_atom::Visual {
                                            data_reference_index: 1,
                                            width: video.width,
                                            height: video.height,
                                            horizresolution: 72.into(),
                                            vertresolution: 72.into(),
                                            frame_count: 1,
                                            compressor: "".into(),
                                            depth: 24,
                                        },
                                        avcc: avcc.clone(),
                                        btrt: None,
                                        colr: None,
                                        pasp: None,
                                        taic: None,
                                        fiel: None,
                                        spatial: None,
                                    }
                                    .into(),
                                ],
                            },
                            stts: mp4_atom::Stts { entries: stts.clone() },
                            stss: Some(mp4_atom::Stss { entries: sync.clone() }),
                            stsc: mp4_atom::Stsc {
                                entries: vec![mp4_atom::StscEntry {
                                    first_chunk: 1,
                                    samples_per_chunk: count,
                                    sample_description_index: 1,
                                }],
                            },
                            stsz: mp4_atom::Stsz {
                                samples: mp4_atom::StszSamples::Different { sizes: sizes.clone() },
                            },
                            stco,
                            co64,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                ..Default::default()
            }],
            ..Default::default()
        }
    };
    let mut measured = Vec::new();
    moov(0).encode(&mut measured).map_err(bad)?;
    let data_at = out.len() as u64 + measured.len() as u64 + mdat_head;
    let moov = moov(data_at);
    moov.encode(&mut out).map_err(bad)?;
    debug_assert_eq!(out.len() as u64 + mdat_head, data_at);
    if mdat_head == 8 {
        out.extend_from_slice(&(video.mdat.len() as u32 + 8).to_be_bytes());
        out.extend_from_slice(b"mdat");
    } else {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(video.mdat.len() as u64 + 16).to_be_bytes());
    }
    out.extend_from_slice(&video.mdat);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nal_units_after_three_and_four_byte_start_codes() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0];
        let units = nal_units(&stream);
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
    }

    #[test]
    fn timing_rounds_without_drift() {
        assert_eq!(ticks(1_000_000), 90_000);
        assert_eq!(ticks(33_333 * 3), 9_000);
    }
}
