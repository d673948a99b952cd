//! Screen capture from a private Xvfb: a window with known colours is drawn, captured,
//! converted, encoded and decoded. Needs `Xvfb` (apt xvfb); `.ci/run` installs it and sets
//! EXTRASAFE_REQUIRE_XVFB so that a missing Xvfb fails there instead of skipping.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use extrasafe_video::{EncoderSettings, H264Decoder, H264Encoder, Screen, VideoSource};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt, CreateGCAux, CreateWindowAux, Rectangle, WindowClass,
};
use x11rb::wrapper::ConnectionExt as _;
use x11rb::COPY_DEPTH_FROM_PARENT;

struct Xvfb(Child);
impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a free display; returns it and the display name.
fn xvfb() -> Option<(Xvfb, String)> {
    let child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "640x480x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("EXTRASAFE_REQUIRE_XVFB").is_none(),
                "Xvfb is required here but could not start: {e}"
            );
            eprintln!("skipped: no Xvfb ({e}); apt install xvfb");
            return None;
        }
    };
    let mut out = child.stdout.take().unwrap();
    let mut num = String::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).ok()? == 1 && b[0] != b'\n' {
        num.push(b[0] as char);
    }
    Some((Xvfb(child), format!(":{}", num.trim())))
}

#[test]
fn a_window_on_the_screen_is_captured_in_its_colours_and_survives_h264() {
    let Some((_x, display)) = xvfb() else { return };
    std::env::set_var("DISPLAY", &display);
    // Draw: a white window 200×100 at (40, 60) with a black 50×50 square inside.
    let (conn, n) = x11rb::connect(Some(&display)).unwrap();
    let root = conn.setup().roots[n].clone();
    let win = conn.generate_id().unwrap();
    conn.create_window(
        COPY_DEPTH_FROM_PARENT,
        win,
        root.root,
        40,
        60,
        200,
        100,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(root.white_pixel)
            .override_redirect(1),
    )
    .unwrap();
    conn.map_window(win).unwrap();
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, win, &CreateGCAux::new().foreground(root.black_pixel))
        .unwrap();
    conn.sync().unwrap();
    conn.poly_fill_rectangle(
        win,
        gc,
        &[Rectangle {
            x: 10,
            y: 10,
            width: 50,
            height: 50,
        }],
    )
    .unwrap();
    conn.sync().unwrap();

    let mut screen = Screen::open(None, 10).unwrap();
    assert_eq!(screen.size(), (640, 480));
    let f = screen.next_frame(0).unwrap().unwrap();
    let y = |x: usize, row: usize| f.y()[row * 640 + x];
    assert!(y(40 + 150, 60 + 50) >= 230, "white window: {}", y(190, 110));
    assert!(y(40 + 30, 60 + 30) <= 20, "black square: {}", y(70, 90));

    // One window only.
    let mut one = Screen::open(Some(win), 10).unwrap();
    assert_eq!(one.size(), (200, 100));
    let w = one.next_frame(0).unwrap().unwrap();
    assert!(w.y()[50 * 200 + 150] >= 230 && w.y()[30 * 200 + 30] <= 20);

    let mut enc = H264Encoder::new(EncoderSettings {
        screen: true,
        ..Default::default()
    })
    .unwrap();
    let mut dec = H264Decoder::new().unwrap();
    let e = enc.encode(&f).unwrap().unwrap();
    let back = dec.decode(&e.data).unwrap().unwrap();
    let psnr = extrasafe_video::psnr_y(&f, &back);
    assert!(psnr > 35.0, "screen PSNR {psnr:.1}");

    // No display: a sentence, not a panic.
    std::env::set_var("DISPLAY", ":9999");
    let err = Screen::open(None, 10).unwrap_err().to_string();
    assert!(err.contains("DISPLAY"), "{err}");
}
