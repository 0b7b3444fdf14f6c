//! H.264 with OpenH264 (built from its bundled source; with nasm present the build uses
//! its SIMD assembly): BGRA → I420 with the `yuv` crate's SIMD paths, then one encoder
//! thread with low-latency settings, a keyframe on request, on a size change and at a
//! fixed interval.
//!
//! Frames are Annex B byte streams; keyframes are IDR frames carrying SPS and PPS, so a
//! viewer (WebCodecs, ffmpeg) can start at any of them. Colours are BT.601 limited range,
//! and the stream says so (VUI), because that is what decoders assume when told nothing.
//!
//! It does not pace frames or decide when a keyframe is due beyond its interval.

use std::time::Duration;

use assist_proto::desktop::Frame;
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, EncoderConfig, FrameRate, FrameType, RateControlMode, SpsPpsStrategy, UsageType,
    VuiConfig,
};
use openh264::formats::YUVSlices;
use yuv::{BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

use crate::error::DesktopError;
use crate::source::{Encoder, Picture};

/// Encoder settings.
#[derive(Clone, Copy, Debug)]
pub struct H264Settings {
    /// Target bit rate in bits per second (the rate control aims at it; fast changes go
    /// over it rather than skip pictures). Default 4 Mbit/s: enough for a crisp 1080p
    /// desktop; quiet screens (typing) use a small fraction of it.
    pub bitrate: u32,
    /// Highest frame rate the rate control plans for. Default 30.
    pub max_fps: f32,
    /// A keyframe at least this often, so a recording can seek and a viewer that lost data
    /// recovers. Default 10 s.
    pub keyframe_interval: Duration,
    /// OpenH264's screen-content mode (scroll detection, about half the bit rate of
    /// scrolling text for about twice the CPU, as `bench/run desktop` measures) instead of
    /// its real-time camera mode. Default false.
    pub screen_content: bool,
}

impl Default for H264Settings {
    fn default() -> Self {
        H264Settings {
            bitrate: 4_000_000,
            max_fps: 30.0,
            keyframe_interval: Duration::from_secs(10),
            screen_content: false,
        }
    }
}

/// An OpenH264 encoder for screen pictures.
pub struct H264Encoder {
    encoder: openh264::encoder::Encoder,
    settings: H264Settings,
    size: (usize, usize),
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    last_keyframe_us: Option<u64>,
}

impl H264Encoder {
    pub fn new(settings: H264Settings) -> Result<Self, DesktopError> {
        let config = EncoderConfig::new()
            .usage_type(if settings.screen_content {
                UsageType::ScreenContentRealTime
            } else {
                UsageType::CameraVideoRealTime
            })
            .rate_control_mode(RateControlMode::Bitrate)
            // A scene change would start an IDR frame: large, and useless on a desktop
            // whose viewers ask for keyframes when they need them.
            .scene_change_detect(false)
            .bitrate(BitRate::from_bps(settings.bitrate))
            .max_frame_rate(FrameRate::from_hz(settings.max_fps))
            // Never skip a picture to keep to the bit rate: under a fast change (scrolling
            // text at 1080p) OpenH264 then skips nearly all of them (measured: 143 of 150)
            // instead of raising the quantiser. Without skipping the rate control raises
            // the quantiser and overshoots instead (OpenH264 warns so once at start); a
            // slow link is handled by latest-frame-wins, which sends fewer frames.
            .skip_frames(false)
            .complexity(Complexity::Low)
            .num_threads(1)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .vui(VuiConfig::bt601());
        let encoder = openh264::encoder::Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| DesktopError::Encoder(e.to_string()))?;
        Ok(H264Encoder {
            encoder,
            settings,
            size: (0, 0),
            y: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
            last_keyframe_us: None,
        })
    }

    /// Converts the picture into the I420 planes (cut to even width and height: 4:2:0
    /// needs pairs of pixels).
    fn convert(&mut self, picture: &Picture<'_>) -> Result<(), DesktopError> {
        let (w, h) = (picture.width as usize & !1, picture.height as usize & !1);
        if (w, h) != self.size {
            self.size = (w, h);
            self.y = vec![0; w * h];
            self.u = vec![0; w / 2 * h / 2];
            self.v = vec![0; w / 2 * h / 2];
        }
        let mut planes = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(&mut self.y),
            y_stride: w as u32,
            u_plane: BufferStoreMut::Borrowed(&mut self.u),
            u_stride: (w / 2) as u32,
            v_plane: BufferStoreMut::Borrowed(&mut self.v),
            v_stride: (w / 2) as u32,
            width: w as u32,
            height: h as u32,
        };
        yuv::bgra_to_yuv420(
            &mut planes,
            picture.bgra,
            picture.stride as u32,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| DesktopError::Convert(e.to_string()))
    }
}

impl Encoder for H264Encoder {
    fn encode(
        &mut self,
        picture: &Picture<'_>,
        timestamp_us: u64,
        keyframe: bool,
    ) -> Result<Option<Frame>, DesktopError> {
        if picture.width < 16 || picture.height < 16 {
            return Err(DesktopError::Unsupported("screen smaller than 16x16"));
        }
        let resized = (picture.width as usize & !1, picture.height as usize & !1) != self.size;
        self.convert(picture)?;
        let due = self.last_keyframe_us.is_none_or(|last| {
            timestamp_us.saturating_sub(last) >= self.settings.keyframe_interval.as_micros() as u64
        });
        // The first picture and a size change start with an IDR by themselves; forcing one
        // before the encoder exists would be lost.
        if (keyframe || due) && !resized && self.last_keyframe_us.is_some() {
            self.encoder.force_intra_frame();
        }
        let (w, h) = self.size;
        let yuv = YUVSlices::new((&self.y, &self.u, &self.v), (w, h), (w, w / 2, w / 2));
        let stream = self
            .encoder
            .encode_at(&yuv, openh264::Timestamp::from_millis(timestamp_us / 1000))
            .map_err(|e| DesktopError::Encoder(e.to_string()))?;
        let is_key = match stream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            FrameType::IDR => true,
            _ => false,
        };
        let data = stream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        if is_key {
            self.last_keyframe_us = Some(timestamp_us);
        }
        Ok(Some(Frame { timestamp_us, keyframe: is_key, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(bgra: &[u8], width: u16, height: u16) -> Picture<'_> {
        Picture { width, height, stride: width as usize * 4, bgra }
    }

    #[test]
    fn keyframes_come_first_on_request_and_at_the_interval() {
        let settings = H264Settings { keyframe_interval: Duration::from_secs(10), ..H264Settings::default() };
        let mut enc = H264Encoder::new(settings).unwrap();
        let (w, h) = (64u16, 48u16);
        let mut bgra = vec![0u8; w as usize * h as usize * 4];
        let encode = |enc: &mut H264Encoder, bgra: &mut Vec<u8>, t_ms: u64, key: bool| {
            // A different picture each time, so the encoder has something to send.
            bgra.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u64 + t_ms) as u8);
            enc.encode(&picture(bgra, w, h), t_ms * 1000, key).unwrap().expect("a frame")
        };
        let first = encode(&mut enc, &mut bgra, 0, false);
        assert!(first.keyframe && first.data.starts_with(&[0, 0, 0, 1]), "Annex B, IDR first");
        assert!(!encode(&mut enc, &mut bgra, 33, false).keyframe);
        assert!(encode(&mut enc, &mut bgra, 66, true).keyframe, "on request");
        assert!(!encode(&mut enc, &mut bgra, 5_000, false).keyframe);
        assert!(encode(&mut enc, &mut bgra, 10_066, false).keyframe, "10 s after the last keyframe");
        assert!(!encode(&mut enc, &mut bgra, 10_100, false).keyframe);
    }

    #[test]
    fn odd_sizes_are_cut_to_even_and_a_new_size_starts_with_a_keyframe() {
        let mut enc = H264Encoder::new(H264Settings::default()).unwrap();
        let bgra = vec![128u8; 65 * 49 * 4];
        assert!(enc.encode(&picture(&bgra, 65, 49), 0, false).unwrap().unwrap().keyframe);
        assert_eq!(enc.size, (64, 48));
        let bgra2 = vec![7u8; 32 * 32 * 4];
        assert!(enc.encode(&picture(&bgra2, 32, 32), 33_000, false).unwrap().unwrap().keyframe);
        assert!(enc.encode(&picture(&bgra, 8, 8), 66_000, false).is_err(), "too small for H.264");
    }
}
