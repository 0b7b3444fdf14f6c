//! Capture: what is drawn is grabbed at its place and colour, and an idle screen reports
//! nothing.

use anyhow::Result;
use assist_desktop::{GrabMethod, InputSink, ScreenSource, X11Screen, XTestInput};
use assist_proto::desktop::InputEvent;
use std::time::Duration;

use crate::harness::{Client, SCREEN, xvfb};

#[test]
fn a_drawn_rectangle_is_grabbed_at_its_place_and_colour_by_both_methods() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    client.rectangle(100, 80, 120, 60, 0xd0_20_30)?;
    for method in [GrabMethod::SharedMemory, GrabMethod::GetImage] {
        let mut screen = X11Screen::open_with(Some(&x.display), method)?;
        assert_eq!(screen.size(), SCREEN);
        let picture = screen.grab()?;
        assert_eq!((picture.width, picture.height), SCREEN);
        // Inside, on each edge, and just outside (the root window is black).
        for (px, py) in [(160, 110), (100, 80), (219, 139)] {
            assert_eq!(picture.rgb(px, py), (0xd0, 0x20, 0x30), "{method:?} at ({px}, {py})");
        }
        for (px, py) in [(99, 80), (220, 139), (160, 79), (160, 140)] {
            assert_eq!(picture.rgb(px, py), (0, 0, 0), "{method:?} at ({px}, {py})");
        }
    }
    Ok(())
}

#[test]
fn an_idle_screen_reports_no_change_and_a_drawing_does() -> Result<()> {
    let x = xvfb();
    let mut screen = X11Screen::open(Some(&x.display))?;
    // Opening reports everything once (the first picture, cursor and position).
    assert!(screen.wait_changes(Duration::ZERO)?.any());
    screen.pending_after_sync()?;
    screen.grab()?;
    // Nothing was drawn since the grab: after a round trip, no change is waiting.
    assert!(!screen.pending_after_sync()?.any(), "an idle screen reported a change");
    assert!(!screen.wait_changes(Duration::ZERO)?.any());

    let mut client = Client::connect(&x.display)?;
    let window = client.rectangle(10, 10, 20, 20, 0x00_ff_00)?;
    let changes = screen.wait_changes(crate::harness::WAIT)?;
    assert!(changes.damaged, "{changes:?}");
    screen.pending_after_sync()?;
    assert_eq!(screen.grab()?.rgb(15, 15), (0, 0xff, 0));

    // Drawing inside an existing window (not only mapping one) is damage too.
    use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, Rectangle};
    use x11rb::wrapper::ConnectionExt as _;
    let gc = x11rb::connection::Connection::generate_id(&client.conn)?;
    client.conn.create_gc(gc, window, &CreateGCAux::new().foreground(0xff_00_ff))?;
    client.conn.poly_fill_rectangle(window, gc, &[Rectangle { x: 2, y: 2, width: 4, height: 4 }])?;
    client.conn.sync()?;
    let changes = screen.wait_changes(crate::harness::WAIT)?;
    assert!(changes.damaged, "{changes:?}");
    let picture = screen.grab()?;
    assert_eq!((picture.rgb(13, 13), picture.rgb(20, 20)), ((0xff, 0, 0xff), (0, 0xff, 0)));
    Ok(())
}

#[test]
fn the_cursor_comes_with_its_image_and_position() -> Result<()> {
    let x = xvfb();
    let mut screen = X11Screen::open(Some(&x.display))?;
    screen.wait_changes(Duration::ZERO)?;
    screen.pending_after_sync()?;
    let shape = screen.cursor_shape()?.expect("Xvfb has a default cursor");
    assert!(shape.width > 0 && shape.hot_x < shape.width && shape.hot_y < shape.height);
    assert_eq!(shape.rgba.len(), shape.width as usize * shape.height as usize * 4);

    // A pointer move (by a device: here XTest's) is noticed as an event, and the position
    // follows.
    let mut mouse = XTestInput::open(Some(&x.display))?;
    mouse.inject(&InputEvent::MouseMove { x: 321, y: 123 })?;
    let changes = screen.wait_changes(crate::harness::WAIT)?;
    assert!(changes.cursor_moved, "{changes:?}");
    let p = screen.cursor_position()?;
    assert_eq!((p.x, p.y), (321, 123));

    // Another cursor image (a watch from the cursor font on the root window, which the
    // pointer is over) is noticed, and the new image is sent.
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt as _};
    use x11rb::wrapper::ConnectionExt as _;
    let client = Client::connect(&x.display)?;
    let (font, cursor) = (client.conn.generate_id()?, client.conn.generate_id()?);
    client.conn.open_font(font, b"cursor")?.check()?;
    const XC_WATCH: u16 = 150;
    client
        .conn
        .create_glyph_cursor(cursor, font, font, XC_WATCH, XC_WATCH + 1, 0, 0, 0, 0xffff, 0xffff, 0xffff)?
        .check()?;
    client
        .conn
        .change_window_attributes(client.root, &ChangeWindowAttributesAux::new().cursor(cursor))?
        .check()?;
    client.conn.sync()?;
    let changes = screen.wait_changes(crate::harness::WAIT)?;
    let watch = screen.cursor_shape()?.expect("a cursor");
    client
        .conn
        .change_window_attributes(client.root, &ChangeWindowAttributesAux::new().cursor(x11rb::NONE))?;
    client.conn.sync()?;
    assert!(changes.cursor_shape, "{changes:?}");
    assert_ne!(watch, shape, "the image changed");
    Ok(())
}

#[test]
fn a_screen_size_change_is_noticed_and_grabbed_at_the_new_size() -> Result<()> {
    let x = xvfb();
    let mut screen = X11Screen::open(Some(&x.display))?;
    screen.wait_changes(Duration::ZERO)?;
    let client = Client::connect(&x.display)?;
    client.resize_screen((400, 300))?;
    let outcome = (|| -> Result<()> {
        // A grab before the RANDR event was read finds the new size by itself (the server
        // refuses the old one)...
        let picture = screen.grab()?;
        assert_eq!((picture.width, picture.height), (400, 300));
        // ...and the change is still reported.
        let changes = screen.wait_changes(crate::harness::WAIT)?;
        assert!(changes.resized, "{changes:?}");
        assert_eq!(screen.size(), (400, 300));
        Ok(())
    })();
    client.resize_screen(SCREEN)?;
    outcome?;
    let changes = screen.wait_changes(crate::harness::WAIT)?;
    assert!(changes.resized, "{changes:?}");
    assert_eq!(screen.size(), SCREEN);
    Ok(())
}

#[test]
fn a_display_that_is_not_there_is_refused_with_its_name() {
    use assist_desktop::{Desktop, DesktopConfig, DesktopError};
    let open =
        |name: &str| Desktop::open(DesktopConfig { display: Some(name.into()), ..Default::default() }).err();
    // A display number no server uses here (Xvfb's -displayfd picks low ones).
    let err = open(":4999").expect("no X server on :4999");
    assert!(matches!(err, DesktopError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(":4999"), "{err}");
    // One no server can have (x11rb would overflow its port number).
    let err = open(":64999").expect("refused");
    assert!(matches!(err, DesktopError::BadDisplay(ref d) if d == ":64999"), "{err:?}");
}
