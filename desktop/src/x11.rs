//! The X11 screen: DAMAGE tells when something was drawn, MIT-SHM grabs the picture (plain
//! GetImage where shared memory is not available), XFIXES gives the pointer's image,
//! XInput 2 raw motion tells when the pointer moved, RANDR when the screen's size changed.
//!
//! Every change arrives as an event, so an idle screen costs one sleeping thread. This
//! module grabs whole screens only when asked; it does not pace, encode or send anything.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use assist_proto::desktop::{CursorPosition, CursorShape, MAX_CURSOR_SIDE};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::ReplyError;
use x11rb::protocol::ErrorKind;
use x11rb::protocol::Event;
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::shm;
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xinput::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder, Window};
use x11rb::rust_connection::RustConnection;

use crate::error::DesktopError;
use crate::shm::ShmSegment;
use crate::source::{Changes, Picture, ScreenSource};

/// How pictures are taken from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrabMethod {
    /// MIT-SHM into memory shared with the server (the default).
    SharedMemory,
    /// Plain GetImage through the socket (about 30× slower: remote displays, benchmarks).
    GetImage,
}

/// Opens an X display by name (`:0`), or `$DISPLAY` when `None`.
pub(crate) fn connect(display: Option<&str>) -> Result<(RustConnection, usize), DesktopError> {
    // x11rb 0.14 adds 6000 to the display number as a u16 port, which overflows (a panic in
    // debug builds) from :59536 on: refuse those names before it parses them.
    let named = display.map(str::to_owned).or_else(|| std::env::var("DISPLAY").ok());
    if let Some(name) = named
        && let Some((_, rest)) = name.rsplit_once(':')
        && let Ok(n) = rest.split('.').next().unwrap_or("").parse::<u32>()
        && n > u32::from(u16::MAX) - 6000
    {
        return Err(DesktopError::BadDisplay(name));
    }
    x11rb::connect(display).map_err(|source| DesktopError::Connect {
        display: display.map(str::to_owned).unwrap_or_else(|| std::env::var("DISPLAY").unwrap_or_default()),
        source,
    })
}

fn require(conn: &RustConnection, name: &'static str) -> Result<(), DesktopError> {
    match conn.extension_information(name)? {
        Some(_) => Ok(()),
        None => Err(DesktopError::MissingExtension(name)),
    }
}

/// One X screen, watched for changes.
pub struct X11Screen {
    conn: RustConnection,
    root: Window,
    width: u16,
    height: u16,
    damage: damage::Damage,
    method: GrabMethod,
    shm: Option<ShmSegment>,
    pixels: Vec<u8>,
    changes: Changes,
}

impl X11Screen {
    /// Opens `display` (or `$DISPLAY`) with MIT-SHM grabs.
    pub fn open(display: Option<&str>) -> Result<Self, DesktopError> {
        Self::open_with(display, GrabMethod::SharedMemory)
    }

    /// Opens `display` grabbing with `method`.
    pub fn open_with(display: Option<&str>, method: GrabMethod) -> Result<Self, DesktopError> {
        let (conn, screen_num) = connect(display)?;
        let setup = conn.setup();
        let screen = &setup.roots[screen_num];
        let root = screen.root;
        // Only the common 24/32-bit TrueColor layout: B, G, R, X in memory.
        let bpp =
            setup.pixmap_formats.iter().find(|f| f.depth == screen.root_depth).map(|f| f.bits_per_pixel);
        if bpp != Some(32)
            || !matches!(screen.root_depth, 24 | 32)
            || setup.image_byte_order != ImageOrder::LSB_FIRST
        {
            return Err(DesktopError::Unsupported("screen is not 24-bit colour at 32 bits per pixel"));
        }
        for name in [
            damage::X11_EXTENSION_NAME,
            xfixes::X11_EXTENSION_NAME,
            randr::X11_EXTENSION_NAME,
            xinput::X11_EXTENSION_NAME,
        ] {
            require(&conn, name)?;
        }
        conn.damage_query_version(1, 1)?.reply()?;
        conn.xfixes_query_version(5, 0)?.reply()?;
        conn.randr_query_version(1, 2)?.reply()?;
        // 2.2: raw motion is then delivered even while another client grabs the pointer.
        conn.xinput_xi_query_version(2, 2)?.reply()?;

        let damage = conn.generate_id()?;
        conn.damage_create(damage, root, damage::ReportLevel::NON_EMPTY)?.check()?;
        conn.xfixes_select_cursor_input(root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)?.check()?;
        conn.randr_select_input(root, randr::NotifyMask::SCREEN_CHANGE)?.check()?;
        let motion = xinput::EventMask {
            deviceid: u16::from(xinput::Device::ALL_MASTER),
            mask: vec![xinput::XIEventMask::RAW_MOTION],
        };
        conn.xinput_xi_select_events(root, &[motion])?.check()?;

        let geometry = conn.get_geometry(root)?.reply()?;
        let mut screen = X11Screen {
            conn,
            root,
            width: geometry.width,
            height: geometry.height,
            damage,
            method,
            shm: None,
            pixels: Vec::new(),
            changes: Changes { damaged: true, cursor_shape: true, cursor_moved: true, resized: false },
        };
        if method == GrabMethod::SharedMemory {
            if screen.conn.extension_information(shm::X11_EXTENSION_NAME)?.is_none() {
                return Err(DesktopError::MissingExtension(shm::X11_EXTENSION_NAME));
            }
            screen.shm = Some(ShmSegment::new(&screen.conn, screen.frame_bytes())?);
        }
        Ok(screen)
    }

    fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 4
    }

    /// Takes note of one event (others, like errors of unchecked requests, are dropped).
    fn note(&mut self, event: Event) {
        match event {
            Event::DamageNotify(_) => self.changes.damaged = true,
            Event::XfixesCursorNotify(_) => self.changes.cursor_shape = true,
            Event::XinputRawMotion(_) => self.changes.cursor_moved = true,
            Event::RandrScreenChangeNotify(_) => self.changes.resized = true,
            _ => {}
        }
    }

    fn drain_events(&mut self) -> Result<(), DesktopError> {
        while let Some(event) = self.conn.poll_for_event()? {
            self.note(event);
        }
        Ok(())
    }

    /// Re-reads the screen's size after a RANDR change and resizes the shared segment.
    fn refresh_size(&mut self) -> Result<(), DesktopError> {
        let geometry = self.conn.get_geometry(self.root)?.reply()?;
        if (geometry.width, geometry.height) != (self.width, self.height) {
            self.width = geometry.width;
            self.height = geometry.height;
            if let Some(old) = self.shm.take() {
                old.detach(&self.conn);
                self.shm = Some(ShmSegment::new(&self.conn, self.frame_bytes())?);
            }
        }
        Ok(())
    }

    /// Has the server write the whole screen into the segment (or `pixels`); returns the
    /// picture's size in bytes.
    fn fetch(&mut self) -> Result<usize, DesktopError> {
        let (width, height) = (self.width, self.height);
        match &mut self.shm {
            Some(seg) => seg.fill(&self.conn, self.root, 0, 0, width, height),
            None => {
                let reply = self
                    .conn
                    .get_image(ImageFormat::Z_PIXMAP, self.root, 0, 0, width, height, !0)?
                    .reply()?;
                self.pixels = reply.data;
                Ok(self.pixels.len())
            }
        }
    }

    /// Whether a change is waiting, after a round trip: every request sent before this call
    /// (by any client) has been handled by the server by then, and its events are in. Lets
    /// a caller tell "nothing changed" without waiting for a timeout.
    pub fn pending_after_sync(&mut self) -> Result<Changes, DesktopError> {
        self.conn.get_input_focus()?.reply()?;
        self.drain_events()?;
        Ok(self.changes)
    }

    /// The grab method in use.
    pub fn method(&self) -> GrabMethod {
        self.method
    }
}

impl ScreenSource for X11Screen {
    fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    fn wait_changes(&mut self, timeout: Duration) -> Result<Changes, DesktopError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_events()?;
            if self.changes.any() {
                if self.changes.resized {
                    self.refresh_size()?;
                }
                return Ok(std::mem::take(&mut self.changes));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Changes::default());
            }
            self.conn.flush()?;
            let mut fds = [PollFd::new(self.conn.stream(), PollFlags::IN)];
            let ts = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(DesktopError::Shm(e)),
            }
        }
    }

    fn grab(&mut self) -> Result<Picture<'_>, DesktopError> {
        // Re-arm DAMAGE before grabbing: whatever is drawn from here on is reported again.
        self.conn.damage_subtract(self.damage, x11rb::NONE, x11rb::NONE)?;
        self.changes.damaged = false;
        // The screen may have shrunk before its RANDR event reached us: the server then
        // refuses the old size (BadMatch). Re-read the size once and grab again; the
        // resize is still reported by the next `wait_changes`.
        let len = match self.fetch() {
            Err(DesktopError::Reply(ReplyError::X11Error(e))) if e.error_kind == ErrorKind::Match => {
                self.refresh_size()?;
                self.changes.resized = true;
                self.fetch()?
            }
            other => other?,
        };
        let (width, height) = (self.width, self.height);
        if len < width as usize * height as usize * 4 {
            return Err(DesktopError::Unsupported("the server returned a short picture"));
        }
        let bgra = match &self.shm {
            Some(seg) => seg.bytes(len),
            None => &self.pixels[..len],
        };
        Ok(Picture { width, height, stride: width as usize * 4, bgra })
    }

    fn cursor_shape(&mut self) -> Result<Option<CursorShape>, DesktopError> {
        let image = self.conn.xfixes_get_cursor_image()?.reply()?;
        Ok(cursor_to_rgba(image.width, image.height, image.xhot, image.yhot, &image.cursor_image))
    }

    fn cursor_position(&mut self) -> Result<CursorPosition, DesktopError> {
        let p = self.conn.query_pointer(self.root)?.reply()?;
        Ok(CursorPosition { x: p.root_x.into(), y: p.root_y.into() })
    }
}

impl Drop for X11Screen {
    fn drop(&mut self) {
        if let Some(seg) = &self.shm {
            seg.detach(&self.conn);
        }
        let _ = self.conn.damage_destroy(self.damage);
        let _ = self.conn.flush();
    }
}

impl AsFd for X11Screen {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.conn.stream().as_fd()
    }
}

/// XFIXES cursor pixels (premultiplied ARGB, one u32 each) to straight RGBA, cut to
/// [`MAX_CURSOR_SIDE`]. `None` for an empty (hidden) cursor.
pub(crate) fn cursor_to_rgba(
    width: u16,
    height: u16,
    hot_x: u16,
    hot_y: u16,
    argb: &[u32],
) -> Option<CursorShape> {
    if width == 0 || height == 0 || argb.len() < width as usize * height as usize {
        return None;
    }
    let (w, h) = (width.min(MAX_CURSOR_SIDE), height.min(MAX_CURSOR_SIDE));
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for row in argb.chunks_exact(width as usize).take(h as usize) {
        for &p in &row[..w as usize] {
            let [b, g, r, a] = p.to_le_bytes();
            let straight =
                |c: u8| if a == 0 { 0 } else { ((c as u16 * 255 + a as u16 / 2) / a as u16).min(255) as u8 };
            rgba.extend_from_slice(&[straight(r), straight(g), straight(b), a]);
        }
    }
    Some(CursorShape { width: w, height: h, hot_x: hot_x.min(w - 1), hot_y: hot_y.min(h - 1), rgba })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_pixels_are_unpremultiplied_and_cut_to_the_limit() {
        // Half-transparent pure red, premultiplied: A=0x80, R=0x80.
        let shape = cursor_to_rgba(1, 1, 0, 0, &[0x8080_0000]).unwrap();
        assert_eq!(shape.rgba, vec![255, 0, 0, 0x80]);
        let big = vec![0xff00_ff00; 300 * 2];
        let shape = cursor_to_rgba(300, 2, 299, 1, &big).unwrap();
        assert_eq!((shape.width, shape.height, shape.hot_x, shape.hot_y), (256, 2, 255, 1));
        assert_eq!(&shape.rgba[..4], &[0, 255, 0, 255]);
        assert!(cursor_to_rgba(0, 0, 0, 0, &[]).is_none());
    }
}
