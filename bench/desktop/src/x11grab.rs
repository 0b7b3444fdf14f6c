//! The live figures' baseline: `ffmpeg -f x11grab` (MIT-SHM grabs of the whole screen at
//! 30 fps, no pointer) into `libx264 -preset ultrafast -tune zerolatency`, writing H.264
//! to a pipe packet by packet (`-flush_packets 1`), each read stamped as it arrives.
//!
//! It counts what x264 produced within a window (bytes, and pictures: slices that start
//! at macroblock 0) and ffmpeg's CPU over it from `/proc`; it decodes nothing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::procs::Proc;

/// Output read so far: (epoch ms when read, bytes).
type Chunks = Arc<Mutex<Vec<(f64, Vec<u8>)>>>;

/// A running ffmpeg grabbing `display`.
pub struct X11Grab {
    pub proc: Proc,
    chunks: Chunks,
}

impl X11Grab {
    pub fn start(display: &str, (width, height): (u16, u16)) -> Result<Self> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "x11grab", "-framerate", "30", "-draw_mouse", "0"])
            .args(["-video_size", &format!("{width}x{height}"), "-i", display])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
            .args(["-flush_packets", "1", "-f", "h264", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc =
            Proc::spawn("ffmpeg x11grab", &mut cmd).context("install the Debian package ffmpeg")?;
        let mut out = proc.child.stdout.take().context("ffmpeg stdout")?;
        let chunks: Chunks = Arc::default();
        let sink = chunks.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let at = crate::live::epoch_ms();
                sink.lock().unwrap_or_else(|p| p.into_inner()).push((at, buf[..n].to_vec()));
            }
        });
        Ok(X11Grab { proc, chunks })
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// Bytes and pictures read between `from` and `to` (epoch ms).
    pub fn between(&self, from: f64, to: f64) -> (u64, usize) {
        let chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let stream: Vec<u8> = chunks
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        (stream.len() as u64, pictures(&stream))
    }
}

/// Pictures in an H.264 Annex B stream: coded slices (NAL types 1 and 5) whose
/// `first_mb_in_slice` is 0 (its Exp-Golomb code is the single bit 1).
pub fn pictures(stream: &[u8]) -> usize {
    stream
        .windows(5)
        .filter(|w| w[..3] == [0, 0, 1] && matches!(w[3] & 0x1f, 1 | 5) && w[4] & 0x80 != 0)
        .count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pictures_are_slices_that_start_at_the_first_macroblock() {
        let stream = [
            &[0, 0, 0, 1, 0x67, 0x42][..], // SPS
            &[0, 0, 1, 0x65, 0x88, 0x10],  // IDR slice at macroblock 0
            &[0, 0, 1, 0x65, 0x5c, 0x10],  // IDR slice further down: same picture
            &[0, 0, 1, 0x41, 0x9a, 0x00],  // P slice at macroblock 0
        ]
        .concat();
        assert_eq!(super::pictures(&stream), 2);
    }
}
