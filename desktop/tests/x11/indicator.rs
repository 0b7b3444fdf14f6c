//! The customer's indicator on a real X server: mapped at the top centre, saying who,
//! raised above a window mapped over it, its text changed, gone when dropped.

use anyhow::Result;
use assist_desktop::Indicator;
use assist_desktop::indicator::notice;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, ImageFormat, MapState, Window,
};
use x11rb::wrapper::ConnectionExt as _;

use crate::harness::{Client, SCREEN, xvfb};

fn name(client: &Client, window: Window) -> Result<String> {
    let atom = |n: &[u8]| -> Result<u32> { Ok(client.conn.intern_atom(false, n)?.reply()?.atom) };
    let reply =
        client.conn.get_property(false, window, atom(b"_NET_WM_NAME")?, AtomEnum::ANY, 0, 1024)?.reply()?;
    Ok(String::from_utf8(reply.value)?)
}

/// The bar's pixels, and how many are the text's black.
fn pixels(client: &Client, window: Window) -> Result<(Vec<u8>, usize)> {
    let geo = client.conn.get_geometry(window)?.reply()?;
    let image =
        client.conn.get_image(ImageFormat::Z_PIXMAP, window, 0, 0, geo.width, geo.height, !0)?.reply()?;
    let black = image.data.chunks(4).filter(|p| p[..3] == [0, 0, 0]).count();
    Ok((image.data, black))
}

#[test]
fn the_indicator_says_who_stays_on_top_and_goes_when_dropped() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    let watch = ChangeWindowAttributesAux::new().event_mask(EventMask::SUBSTRUCTURE_NOTIFY);
    client.conn.change_window_attributes(client.root, &watch)?;
    client.conn.sync()?;

    // A name with a control sequence is shown escaped, never obeyed.
    let viewing = notice("alice\x1b[8m (vendor)", false);
    let indicator = Indicator::show(&x.display, &viewing)?;
    let bar = indicator.window();
    let attrs = client.conn.get_window_attributes(bar)?.reply()?;
    assert_eq!(attrs.map_state, MapState::VIEWABLE);
    assert!(attrs.override_redirect);
    let geo = client.conn.get_geometry(bar)?.reply()?;
    assert_eq!(geo.y, 0, "at the top");
    let centre = geo.x as i32 + (geo.width as i32 + 2 * geo.border_width as i32) / 2;
    assert!((centre - SCREEN.0 as i32 / 2).abs() <= 2, "centred: {geo:?}");
    assert!(geo.width + 2 * geo.border_width <= SCREEN.0, "fits the screen: {geo:?}");
    let shown = name(&client, bar)?;
    assert!(shown.starts_with("alice\\x1b[8m (vendor) is viewing your screen."), "{shown:?}");
    assert!(shown.contains("press k in the assist agent's window"), "{shown:?}");
    let (before, black) = pixels(&client, bar)?;
    assert!(black > 100, "the text is drawn ({black} black pixels)");

    // A window mapped over the bar: the bar comes back on top.
    let cover = client.rectangle(0, 0, SCREEN.0, 120, 0x30_50_a0)?;
    let on_top = |client: &Client| -> Result<bool> {
        Ok(client.conn.query_tree(client.root)?.reply()?.children.last() == Some(&bar))
    };
    if !on_top(&client)? {
        client.wait_for("the bar raised", |e| matches!(e, Event::ConfigureNotify(c) if c.window == bar))?;
    }
    assert!(on_top(&client)?, "the bar is above the window {cover}");

    // From viewing to controlling.
    indicator.set_text(&notice("alice (vendor)", true))?;
    assert!(name(&client, bar)?.starts_with("alice (vendor) is controlling your screen."));
    let (after, _) = pixels(&client, bar)?;
    assert_ne!(before, after, "the new text is drawn");

    drop(indicator);
    assert!(!client.conn.query_tree(client.root)?.reply()?.children.contains(&bar), "gone");
    Ok(())
}
