//! Turning pictures into what the GPU draws: decoded video (I420) and the ticket's QR code.

use eframe::egui::{Color32, ColorImage};
use extrasafe_net::video_media::Frame;

/// An I420 picture as colours (BT.601 limited range, as openh264 decodes), reduced by
/// whole steps until it is at most `max_width` wide: the window never shows more.
pub fn frame_to_image(frame: &Frame, max_width: u32) -> ColorImage {
    let div = frame.width.div_ceil(max_width.max(2)).max(1);
    let small;
    let f = if div > 1 {
        small = frame.downscale(div);
        &small
    } else {
        frame
    };
    let (w, h) = (f.width as usize, f.height as usize);
    let (y, u, v) = (f.y(), f.u(), f.v());
    let cw = w / 2;
    let mut px = Vec::with_capacity(w * h);
    for row in 0..h {
        for col in 0..w {
            let yy = i32::from(y[row * w + col]) - 16;
            let ci = (row / 2) * cw + col / 2;
            let uu = i32::from(u[ci]) - 128;
            let vv = i32::from(v[ci]) - 128;
            let c = 298 * yy;
            let r = (c + 409 * vv + 128) >> 8;
            let g = (c - 100 * uu - 208 * vv + 128) >> 8;
            let b = (c + 516 * uu + 128) >> 8;
            px.push(Color32::from_rgb(clamp(r), clamp(g), clamp(b)));
        }
    }
    ColorImage::new([w, h], px)
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// The QR code of `text`, one pixel per module with the standard four-module quiet zone;
/// `None` if the text is too long for a QR code.
pub fn qr_image(text: &str) -> Option<ColorImage> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let n = code.width();
    let quiet = 4;
    let size = n + 2 * quiet;
    let colors = code.to_colors();
    let mut px = vec![Color32::WHITE; size * size];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % n + quiet, i / n + quiet);
            px[y * size + x] = Color32::BLACK;
        }
    }
    Some(ColorImage::new([size, size], px))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_stays_grey_and_large_pictures_are_reduced() {
        let mut f = Frame::black(1280, 720);
        f.data.iter_mut().for_each(|b| *b = 128);
        let img = frame_to_image(&f, 640);
        assert_eq!(img.size, [640, 360]);
        let p = img.pixels[1000];
        assert_eq!((p.r(), p.g(), p.b()), (130, 130, 130));
        // Pure red in BT.601 limited range.
        let mut red = Frame::black(2, 2);
        let (y, rest) = red.data.split_at_mut(4);
        y.iter_mut().for_each(|b| *b = 81);
        rest[0] = 90;
        rest[1] = 240;
        let p = frame_to_image(&red, 640).pixels[0];
        assert!(p.r() > 250 && p.g() < 5 && p.b() < 5, "{p:?}");
    }

    #[test]
    fn a_ticket_fits_in_a_qr_code_with_its_quiet_zone() {
        let img = qr_image(&"EST1".repeat(40)).expect("fits");
        assert!(img.size[0] > 21 + 8);
        assert_eq!(img.pixels[0], Color32::WHITE);
        assert!(img.pixels.contains(&Color32::BLACK));
    }
}
