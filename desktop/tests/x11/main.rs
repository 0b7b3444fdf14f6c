//! The desktop crate against a real X server: one Xvfb for this test binary, started on a
//! free display (`-displayfd`), stopped when the binary exits. Tests take the server in
//! turn ([`harness::xvfb`]), since what one draws the others would see.

mod harness;

mod capture;
mod clipboard;
mod encode;
mod indicator;
mod input;
